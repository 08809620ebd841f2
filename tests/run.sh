#!/usr/bin/env bash
# Installs everything the tests need into .venv and runs them all:
# lint, types, then the suite with native/'s C extension and the tests that
# depend on native/ again with its pure-Python twin.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
export PATH="$PWD/.venv/bin:$PATH"
export TIDELOG_HYPOTHESIS="${TIDELOG_HYPOTHESIS:-ci}"
# Two workers, a test module each at a time (tests/xdist_scheduling.py): most
# tests wait on sockets, child processes and clients, not on a core.
# TIDELOG_TEST_WORKERS=0 runs the suite in this one process. A worker that
# dies (a crash in a client library's C code) ends the run at once, its test
# named: pytest-xdist's replacement worker can wait for work that never
# comes, and the run would hang until CI's limit.
workers=(-n "${TIDELOG_TEST_WORKERS:-2}" --dist loadfile --max-worker-restart 0)

# Kafka clients other than Python's, for the wire-compatibility tests:
# kcat (librdkafka) from Debian; kafkajs, and s3rver (an S3 server that ignores
# conditional writes), from npm at their locked versions.
echo "== test clients"
if ! command -v kcat >/dev/null; then
    as_root=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "installing kcat needs root or sudo" >&2; exit 1; }
        as_root=sudo
    fi
    $as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null
fi
kcat -V >/dev/null
(cd tests/clients/node && npm ci --no-audit --no-fund --silent) ||
    { echo "npm ci failed in tests/clients/node (run it without --silent to see why)" >&2; exit 1; }
node -e 'require("./tests/clients/node/node_modules/kafkajs")'

echo "== ruff"; ruff check .
echo "== ruff format"; ruff format --check .
echo "== mypy --strict"; mypy

python -c 'import native; assert native.IMPLEMENTATION == "c", "the C extension did not build"'
echo "== pytest (native: C)"; pytest -q "${workers[@]}" "$@"
# The pure-Python pass shows native/'s twin gives the C's results, so it runs
# only the tests marked native_twin: those whose outcome can depend on which
# implementation is live (native/, the WAL's and s3stream's formats and
# recovery, the engine's produce/fetch paths, one real client end to end).
# tests/native_twin.py lists them and says why; tests/test_native_twin.py
# fails when a module that imports native/ is left out without a reason.
# Its properties run at the default profile's 100 examples, not ci's 500:
# the C pass has run each of them at 500 with the C live, and its C-vs-twin
# differential properties show the twin gives the C's answers on what they
# draw, so a property here checks the twin on a path the C has passed; 100
# examples show the twin live on that path (docs/testing.md, "What the
# pure-Python pass runs"). A profile other than ci given for the run is kept.
pure_profile="$TIDELOG_HYPOTHESIS"
if [ "$pure_profile" = ci ]; then pure_profile=default; fi
echo "== pytest (native: pure Python)"
TIDELOG_PURE=1 TIDELOG_HYPOTHESIS="$pure_profile" \
    pytest -q "${workers[@]}" -m "native_twin and not slow" "$@"
