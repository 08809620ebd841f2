"""The stream store's locks and counts taken on the main thread are given
back through a second Ctrl-C that lands as their release starts
(wal/interrupts.py; the first is raised inside the block): the local
store's write lock, and the read-ahead gate's count of loads running."""

from __future__ import annotations

from pathlib import Path

from s3stream.read_ahead_gate import ReadAheadGate
from s3stream.store import LocalStore
from tests.engine.interrupted import interrupted_twice, taken_elsewhere


def test_the_local_stores_write_lock_is_given_back(tmp_path: Path) -> None:
    """Held, every later put of the process would wait on it for good."""
    store = LocalStore(tmp_path / "objects")
    interrupted = interrupted_twice(store._exclusive("key"))
    assert taken_elsewhere(store._lock)
    assert interrupted.landed == ["_GeneratorReleasing.__exit__"]
    store.put("after", b"x")
    assert store.get("after") == b"x"


def test_the_read_ahead_gates_count_is_given_back() -> None:
    """Left counted, every read-ahead load beside live traffic would wait
    its bound for a load that is not running."""
    gate = ReadAheadGate(1, live=lambda: True, most_wait_s=30)
    interrupted = interrupted_twice(gate.admitted())
    assert gate.running == 0
    assert interrupted.landed == ["_GeneratorReleasing.__exit__"]
