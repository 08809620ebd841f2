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
# Three workers, a test module each at a time (tests/xdist_scheduling.py):
# most tests wait on sockets, child processes and clients, not on a core, so
# a third worker keeps a two-core machine's cores busier (docs/testing.md,
# "Three workers").
# TIDELOG_TEST_WORKERS=0 runs the suite in this one process. A worker that
# dies (a crash in a client library's C code) ends the run at once, its test
# named: pytest-xdist's replacement worker can wait for work that never
# comes, and the run would hang until CI's limit.
workers=(-n "${TIDELOG_TEST_WORKERS:-3}" --dist loadfile --max-worker-restart 0)

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
# Its properties run at ci's 500 examples, as the C pass's do: the
# properties of the WAL, s3stream and the engine drive the twin on inputs
# those paths build, and the C pass holds several of the twin's functions
# to the C on its own draws at 100 to 300 examples only (@differential's
# place_wal_record, rewrite_batch and crc32c_batches; encode_entries,
# stamp_batch, join_parts), so this pass is where the twin meets 500
# (docs/testing.md, "What the pure-Python pass runs").
echo "== pytest (native: pure Python)"
TIDELOG_PURE=1 pytest -q "${workers[@]}" -m "native_twin and not slow" "$@"
