#!/usr/bin/env bash
# Set up whatever is missing, idempotently: the venv (torch pinned to the CPU build that lies on disk on
# this machine kind, installed first so pip never resolves a multi-GB CUDA build), the front-end bundle,
# the package itself (editable) with its test extras, and, with --browser, Debian's chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
TORCH_PIN=${MONITORCH_WIDGET_TORCH:-torch==2.13.0}
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
pip_q() { "$VENV/bin/python" -m pip install -q "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "[setup] installing $TORCH_PIN"
  pip_q "$TORCH_PIN"
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "[setup] npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
if [ ! -f monitorch_widget/static/widget.js ] || [ ! -f monitorch_widget/static/export_page.js ] || [ -n "$(find js -newer monitorch_widget/static/widget.js -type f 2>/dev/null | head -1)" ]; then
  echo "[setup] building the front-end bundle"
  npm run --silent build
fi

stamp="$VENV/.monitorch-widget-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[setup] installing monitorch-widget (editable) with test extras"
  pip_q -e ".[test,tensorboard]" "$TORCH_PIN"
  touch "$stamp"
fi

# The kernel matrix (tests/test_kernel_matrix.py): older ipykernel releases layered over the venv through
# PYTHONPATH (their dependencies, torch included, are the venv's); the venv's own ipykernel is the newest 7.x.
# "colab": Colab's pinned stack (ipykernel 5.5.6 needs IPython 7.x, whose own dependencies come along, and
# Colab's ipywidgets 7.7.1).
for spec in "6.29:ipykernel==6.29.5" "7.0:ipykernel==7.0.1" \
    "colab:ipykernel==5.5.6 ipython==7.34.0 ipywidgets==7.7.1 decorator backcall pickleshare ipython_genutils"; do
  dir=".kernels/ipykernel-${spec%%:*}"
  if [ ! -f "$dir/.installed" ] || [ "$(cat "$dir/.installed")" != "${spec#*:}" ]; then
    echo "[setup] installing ${spec#*:} into $dir"
    rm -rf "$dir"
    # shellcheck disable=SC2086 - the spec is a list of requirements
    pip_q --no-deps --target "$dir" ${spec#*:}
    echo "${spec#*:}" > "$dir/.installed"
  fi
done

if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null 2>&1; then
  echo "[setup] installing Debian chromium for the browser tests"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
