# Two commands do everything on a fresh machine (each sets up what is missing first):
#   make demo   - open the quickstart notebook in JupyterLab (live widget)
#   make test   - the whole test suite: Python (unit, notebooks, browser) and front-end (vitest)
.PHONY: demo demo-headless test setup bench

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/jupyter lab $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) notebooks/quickstart.ipynb

demo-headless: setup
	.venv/bin/python -m monitorch_widget.demo

test:
	bash scripts/test.sh

bench: setup
	.venv/bin/python -m benchmarks
