"""bench/manifest_open_instructions.py, run as people run it: its quick
pass by wall and CPU time (the instructions need valgrind, and minutes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.run import run_bench


@pytest.mark.slow
def test_manifest_open_bench_reports_the_open_and_the_checkpoints_after_it() -> None:
    tree = str(Path(__file__).resolve().parents[2])
    report = json.loads(
        run_bench("manifest_open_instructions.py", "--quick", "--wall", "--json", "--tree", tree)
    )
    assert report["measure"] == "wall" and report["after"] == 16
    for key, streams in (("s100", 100), ("s1000", 1000)):
        (run,) = report[key][tree]
        # 3 objects a stream, and one an upload: 16 from version 64 before
        # the open, then (after its fence, 81) up to versions 128 and 192.
        assert run["objects"] == 3 * streams + 16 + 47 + 64
        assert run["checkpoint_bytes"] > 0 and len(run["checkpoint_sha256"]) == 2
        for figure in ("open", "first_checkpoint", "later_checkpoint"):
            assert run[f"{figure}_wall_ms"] > 0 and run[f"{figure}_cpu_ms"] > 0
