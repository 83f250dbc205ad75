#!/usr/bin/env bash
# The project's one test command (README and .ci/run call it): set up, then every suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
mkdir -p artifacts
status=0
npm test --silent || status=1
# pytest exits 5 when it collected nothing: treat that as a failure, never as a pass.
.venv/bin/python -m pytest -p no:cacheprovider "$@" || status=$?
exit $status
