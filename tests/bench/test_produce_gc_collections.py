"""bench/produce_gc_collections.py run as people run it, a short window:
the served process's collections are counted per generation, at the
threshold ``serve`` sets or the one ``--gen0`` asks for, and the log
cache's batches are among what the window leaves alive."""

from __future__ import annotations

import json
from typing import Any

from engine.gc_pause import SERVING_GEN0_THRESHOLD
from tests.bench.run import run_bench

REQUESTS = 1500


def _one(*args: str) -> dict[str, Any]:
    printed = run_bench(
        "produce_gc_collections.py",
        "--partitions", "4", "--warm", "50", "--requests", str(REQUESTS), "--json", *args,
    )  # fmt: skip
    (runs,) = json.loads(printed).values()
    (one,) = runs
    return dict(one)


def test_a_low_young_threshold_is_counted_and_the_batches_survive_the_window() -> None:
    one = _one("--gen0", "100")
    assert one["threshold"][0] == 100
    # Three tracked objects a batch stay in the log cache (0152): thousands
    # of survivors, a young collection every few dozen requests.
    assert one["runs"][0] >= REQUESTS * 3 // 100 // 2
    survivors = dict(one["survivors"])
    assert survivors.get("StoredBatch", 0) >= REQUESTS // 2
    assert one["peak_rss_kib"] > 0 and one["requests"] == REQUESTS


def test_without_gen0_the_window_runs_at_the_threshold_serve_sets() -> None:
    one = _one()
    assert one["threshold"][0] == SERVING_GEN0_THRESHOLD
    assert one["runs"] == [0, 0, 0]  # fewer survivors than one young collection's worth
