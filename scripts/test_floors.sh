#!/usr/bin/env bash
# Floors: install the LOWEST version of every runtime dependency that pyproject.toml allows into a separate
# venv (.venv-floors), then run the unit tests there (not the browser tests, not the notebooks, not
# tests/integrations: those test the Lightning / Hugging Face extras and expect their frameworks). Other
# extras (monitorch, bqplot, ...) are not installed either: their tests skip.
#
# torch is the exception: its floor's only Linux x86_64 wheel on PyPI is a CUDA build (torch 2.3.1:
# 779 MB plus ~2.5 GB of nvidia-* wheels); the CPU builds live on download.pytorch.org, which this machine
# kind cannot reach. So torch is the build on this machine's disk (MONITORCH_WIDGET_FLOOR_TORCH, default
# torch==2.13.0) and every other dependency sits at its floor. On a machine that can fetch it, run
#   MONITORCH_WIDGET_FLOOR_TORCH="torch==2.3.1 --index-url https://download.pytorch.org/whl/cpu" scripts/test_floors.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv-floors
TORCH=${MONITORCH_WIDGET_FLOOR_TORCH:-torch==2.13.0}
export PIP_DISABLE_PIP_VERSION_CHECK=1

# "name>=X" -> "name==X" for every runtime dependency except torch (tomllib: Python >= 3.11)
mapfile -t FLOORS < <("$PY" - <<'PY'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
for d in deps:
    m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)\s*(,.*)?", d)
    if not m:
        raise SystemExit(f"test_floors: no '>=' floor in dependency {d!r}: give every runtime dependency one")
    if m.group(1).lower() != "torch":
        print(f"{m.group(1)}=={m.group(2)}")
PY
)
if [ ! -x "$VENV/bin/python" ]; then
  echo "[floors] creating $VENV"
  "$PY" -m venv "$VENV"
fi
pip_q() { "$VENV/bin/python" -m pip install -q "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
# torch first, alone, pinned: pip never resolves an unpinned (CUDA) torch
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "[floors] installing $TORCH"
  # shellcheck disable=SC2086  # the variable may carry pip options (--index-url ...)
  pip_q $TORCH
fi
echo "[floors] installing ${FLOORS[*]} + pytest"
pip_q "${FLOORS[@]}" "pytest>=8"
"$VENV/bin/python" -m pip list 2>/dev/null | grep -i -E "^(torch|numpy|anywidget|traitlets|ipywidgets|ipython) " || true
# The package from source (the front-end bundle was built by scripts/setup.sh), not installed: the venv
# holds only the floors.
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} \
  "$VENV/bin/python" -m pytest -p no:cacheprovider tests --ignore=tests/browser \
  --ignore=tests/test_notebooks_smoke.py --ignore=tests/integrations -q "$@"
