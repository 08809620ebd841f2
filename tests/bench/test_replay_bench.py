"""bench/replay_bench.py's replay timeline: a store on a local directory,
written and replayed cold at a tiny size (the whole benchmark runs moto too,
and takes minutes)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench"
MiB = 1024 * 1024


def _load() -> ModuleType:
    """bench/replay_bench.py as a module; bench/ is on the path only while
    it loads (for its ``import _harness``), as when it runs as a script."""
    spec = importlib.util.spec_from_file_location("bench_replay", BENCH / "replay_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.path.insert(0, str(BENCH))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


def test_a_replay_records_its_progress_over_time(tmp_path: Path) -> None:
    from s3stream.store import LocalStore

    replay = _load()
    bucket = tmp_path / "bucket"
    total = 4 * MiB
    figures = replay.backend_run(
        tmp_path / "run",
        lambda: LocalStore(str(bucket)),
        lambda key: len((bucket / key).read_bytes()),
        total,
    )
    for key in ("replay_timeline", "replay_uncompacted_timeline"):
        timeline = figures[key]
        seconds, mib = [t for t, _ in timeline], [m for _, m in timeline]
        assert timeline[0] == [0.0, 0.0]
        assert mib[-1] == total / MiB  # it ends at the last byte read
        assert seconds == sorted(seconds) and mib == sorted(mib)
        assert len(timeline) > 3  # samples along the way, not only the ends
        assert len(timeline) <= replay.TIMELINE_POINTS + 2
    assert figures["replay_mb_s"] > 0
