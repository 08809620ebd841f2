"""The write-ahead log beside the disk's limits and SQLite (see engine/cli/wal_compare.py).

    python bench/wal_bench.py [--quick] [--json] [--dir PATH]

The comparison lives in the package so that `tidelog wal-bench --compare`
runs the same code on any machine tidelog is installed on.
"""

from engine.cli.wal_compare import main

if __name__ == "__main__":
    raise SystemExit(main())
