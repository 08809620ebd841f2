"""bench/chain_bench.py, run as people run it: a quick pass over both batch sizes."""

from __future__ import annotations

import json

import pytest

from tests.bench.run import run_bench


@pytest.mark.slow
def test_chain_bench_reports_the_chain_beside_the_upload_without_it() -> None:
    report = json.loads(run_bench("chain_bench.py", "--quick", "--json"))
    for size in ("batch_1024", "batch_16384"):
        figures = report[size]
        assert figures["batches"] * int(size[6:]) == 8 << 20
        for key in ("linked_vs_unlinked", "verify_vs_parse", "sha256_mib_s", "verify_mib_s"):
            assert figures[key] > 0, key
