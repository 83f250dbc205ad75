#!/usr/bin/env bash
# The project's one test command (README and .ci/run call it): set up, then every suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
mkdir -p artifacts
status=0
# Static gates: types (TypeScript, mypy) and lint (ruff) before any test runs.
npm run --silent typecheck || status=1
.venv/bin/ruff check . || status=1
.venv/bin/mypy monitorch_widget || status=1
npm test --silent || status=1
# pytest exits 5 when it collected nothing: treat that as a failure, never as a pass.
# One run: unit, browser (tests/) and the demo notebooks under nbval (asserting cells; see notebooks/).
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} .venv/bin/python -m pytest -p no:cacheprovider tests notebooks \
  --nbval-lax --nbval-sanitize-with scripts/nbval_sanitize.cfg "$@" || status=$?
# The lowest allowed version of every runtime dependency, in its own venv: unit tests only.
bash scripts/test_floors.sh || status=1
exit $status
