"""bench/producer_checkpoint_bench.py, run as people run it, with its quick
sizes."""

from __future__ import annotations

import json

import pytest

from tests.bench.run import run_bench


@pytest.mark.slow
def test_producer_checkpoint_bench_reports_a_trickles_checkpoints_by_the_changes() -> None:
    report = json.loads(run_bench("producer_checkpoint_bench.py", "--quick", "--json"))
    # 2,000 producers; each checkpoint after the first writes one producer.
    assert report["table_bytes"] > 50_000
    assert 0 < report["bytes_median"] < report["table_bytes"] / 50
    assert report["hold_ms_median"] > 0 and report["recovery_s"] > 0
