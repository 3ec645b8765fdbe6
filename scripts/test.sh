#!/usr/bin/env bash
# Set up a venv (if needed), install the project with its dev tools, lint, type-check and test.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
.venv/bin/ruff check gateway tests
.venv/bin/ruff format --check gateway tests
.venv/bin/mypy
.venv/bin/pytest "$@"
