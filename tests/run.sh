#!/usr/bin/env bash
# Installs everything the tests need into .venv and runs them all:
# lint, types, then the suite once per native implementation (C and pure Python).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
export PATH="$PWD/.venv/bin:$PATH"
export TIDELOG_HYPOTHESIS="${TIDELOG_HYPOTHESIS:-ci}"

echo "== ruff"; ruff check .
echo "== ruff format"; ruff format --check .
echo "== mypy --strict"; mypy

python -c 'import native; assert native.IMPLEMENTATION == "c", "the C extension did not build"'
echo "== pytest (native: C)"; pytest -q "$@"
echo "== pytest (native: pure Python)"; TIDELOG_PURE=1 pytest -q -m "not slow" "$@"
