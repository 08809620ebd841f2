"""bench/produce_gc_collections.py run as people run it, a short window:
the served process's collections are counted per generation, at the
threshold ``serve`` sets or the one ``--gen0`` asks for, and what the
window leaves alive named by type: the log cache's batches among it with
native/'s pure twin, not with its C (docs/design/0154)."""

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
    # At a threshold of 100, a young collection every hundred or so tracked
    # objects that survive: at least one a request (the log cache's lists,
    # the requests' own) however its batches are held.
    assert one["runs"][0] >= REQUESTS // 100 // 2
    survivors = dict(one["survivors"])
    if one["native"] == "c":
        # The C's batches are untracked (0154): none is among the survivors,
        # nor a view of a request's buffer.
        assert survivors.get("StoredBatch", 0) < REQUESTS // 10, survivors
        assert survivors.get("memoryview", 0) < REQUESTS // 10, survivors
    else:
        # The twin's memoryview keeps each batch tracked (0152, 0154).
        assert survivors.get("StoredBatch", 0) >= REQUESTS // 2, survivors
    assert one["peak_rss_kib"] > 0 and one["requests"] == REQUESTS


def test_without_gen0_the_window_runs_at_the_threshold_serve_sets() -> None:
    one = _one()
    assert one["threshold"][0] == SERVING_GEN0_THRESHOLD
    assert one["runs"] == [0, 0, 0]  # fewer survivors than one young collection's worth
