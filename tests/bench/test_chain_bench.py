"""bench/chain_bench.py, run as people run it: a quick pass over every batch size."""

from __future__ import annotations

import json

import pytest

from tests.bench.run import run_bench


@pytest.mark.slow
def test_chain_bench_reports_the_chain_beside_the_upload_without_it() -> None:
    report = json.loads(run_bench("chain_bench.py", "--quick", "--json"))
    sizes = [name for name in report if name.startswith("batch_")]
    assert {"batch_1024", "batch_16384", "batch_1048576"} <= set(sizes)
    for size in sizes:
        figures = report[size]
        assert figures["batches"] == (8 << 20) // int(size[6:])
        for key in (
            "linked_vs_unlinked",
            "verify_vs_parse",
            "sha256_mib_s",
            "blake3_mib_s",
            "chain_mib_s",
            "chain_vs_sha256",
            "verify_mib_s",
        ):
            assert figures[key] > 0, key
