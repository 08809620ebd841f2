"""Beside live traffic at most ``read_ahead_beside_live`` read-ahead loads
run at once, so a replay's read threads do not outweigh the event loop and
the WAL's threads for a CPU; alone, a replay loads with every worker; a
held load waits a bounded time, then runs anyway."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from s3stream import StreamStore, StreamStoreConfig
from s3stream.read_ahead_gate import MOST_WAIT_S, ReadAheadGate
from s3stream.store import MemoryStore, ObjectStore
from s3stream.uploader import OBJECT_PREFIX
from tests.s3stream.faults import FaultyStore
from tests.s3stream.test_read_path import CONFIG, write_stream_objects
from tests.s3stream.test_stream_store import expected, fill, new_stream

WAIT_S = 30.0
"""The most a test waits for a thread to reach a point it must reach."""


class Clock:
    def __init__(self, step: float = 0.0) -> None:
        self.now = 100.0
        self.step = step
        """Added at every look: a wait's deadline passes without a wait."""

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@contextmanager
def holding(gate: ReadAheadGate, count: int) -> Iterator[list[threading.Event]]:
    """``count`` loads admitted by ``gate`` and held running (each until its
    event is set, or the block ends); yields once each has been admitted or
    counted as held."""
    releases = [threading.Event() for _ in range(count)]
    started = threading.Semaphore(0)

    def load(release: threading.Event) -> None:
        started.release()
        with gate.admitted():
            release.wait(WAIT_S)

    threads = [threading.Thread(target=load, args=(r,)) for r in releases]
    for thread in threads:
        thread.start()
    for _ in threads:
        assert started.acquire(timeout=WAIT_S)
    _until(lambda: gate.admitted_at_once + gate.held == count)
    try:
        yield releases
    finally:
        for release in releases:
            release.set()
        for thread in threads:
            thread.join(WAIT_S)


def _until(condition: Callable[[], bool]) -> None:
    done = threading.Event()
    for _ in range(int(WAIT_S * 100)):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("the loads did not get there")


def test_alone_every_load_runs_at_once() -> None:
    gate = ReadAheadGate(1, live=lambda: False)
    with holding(gate, 4):
        assert gate.running == 4
    assert (gate.admitted_at_once, gate.held, gate.overdue) == (4, 0, 0)


def test_beside_live_traffic_a_load_waits_for_one_to_end() -> None:
    gate = ReadAheadGate(1, live=lambda: True, most_wait_s=WAIT_S)
    with holding(gate, 2) as releases:
        assert (gate.running, gate.held) == (1, 1)
        releases[0].set()
        releases[1].set()
        _until(lambda: gate.running == 0)
    assert (gate.admitted_at_once, gate.held, gate.overdue) == (1, 1, 0)


def test_the_limit_counts_loads_running_at_once() -> None:
    gate = ReadAheadGate(2, live=lambda: True, most_wait_s=WAIT_S)
    with holding(gate, 3):
        assert (gate.running, gate.held) == (2, 1)


def test_held_loads_run_when_live_traffic_ends() -> None:
    live = [True]
    gate = ReadAheadGate(1, live=lambda: live[0], most_wait_s=WAIT_S)
    with holding(gate, 3) as releases:
        assert (gate.running, gate.held) == (1, 2)
        live[0] = False
        releases[0].set()  # the end of a load wakes the next, which finds nothing live
        _until(lambda: gate.running == 2)
    assert gate.overdue == 0


def test_a_held_load_runs_anyway_once_its_wait_is_up() -> None:
    # Each look at the clock moves it past the wait's deadline.
    gate = ReadAheadGate(1, live=lambda: True, most_wait_s=1.0, clock=Clock(step=2.0))
    with holding(gate, 2):
        _until(lambda: gate.running == 2)
    assert (gate.held, gate.overdue) == (1, 1)


def test_limit_zero_never_holds() -> None:
    gate = ReadAheadGate(0, live=lambda: True)
    with holding(gate, 3):
        assert gate.running == 3
    assert gate.held == 0


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        ReadAheadGate(-1, live=lambda: True)


def test_by_default_one_load_at_a_time_beside_live_traffic_and_a_wait_is_bounded(
    tmp_path: Path,
) -> None:
    # Eight workers' loads at a replay's start kept the event loop waiting
    # for a CPU and the GIL (docs/design/0106): by default one runs at a time.
    assert StreamStoreConfig().read_ahead_beside_live == 1
    assert 0 < MOST_WAIT_S <= 0.25
    with StreamStore.open(tmp_path / "store", MemoryStore(), StreamStoreConfig()) as store:
        gate = store.reader.gate
        assert gate.limit == 1
        stream = new_stream(store)
        assert not gate.beside_live()
        fill(store, stream, 1, per_batch=1)  # an append: live traffic
        assert gate.beside_live()


# -- a replay through the stream store -------------------------------------------------


class ConcurrentGets(FaultyStore):
    """Counts the GETs of data objects the read-ahead workers make at once.
    Until two have run at once, each waits up to ``linger_s`` for another to
    join it (so loads that may overlap do, however slowly a loaded machine
    starts the second), and the most seen at once is kept."""

    def __init__(self, inner: ObjectStore, linger_s: float) -> None:
        super().__init__(inner)
        self.linger_s = linger_s
        self.most = 0
        self.gets = 0
        self._running = 0
        self._changed = threading.Condition()

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        if not key.startswith(OBJECT_PREFIX) or not _on_a_read_ahead_worker():
            return super().get(key, start, end)
        with self._changed:
            self._running += 1
            self.gets += 1
            self.most = max(self.most, self._running)
            self._changed.notify_all()
            self._changed.wait_for(lambda: self.most > 1, self.linger_s)
        try:
            return super().get(key, start, end)
        finally:
            with self._changed:
                self._running -= 1


def _on_a_read_ahead_worker() -> bool:
    return threading.current_thread().name.startswith("s3stream-read")


async def _replay(store: StreamStore, stream: int) -> list[tuple[int, int, bytes]]:
    out = []
    offset = store.start_offset(stream)
    while offset < store.end_offset(stream):
        result = await store.fetch_async(stream, offset, 4096)
        out += [(b.base_offset, b.end_offset, bytes(b.payload)) for b in result.batches]
        offset = result.next_offset
    return out


def _replay_with(tmp_path: Path, live: bool, linger_s: float) -> ConcurrentGets:
    bucket = MemoryStore()
    stream = write_stream_objects(tmp_path, bucket, uploads=4)
    gets = ConcurrentGets(bucket, linger_s)
    with StreamStore.open(tmp_path / "reader", gets, CONFIG) as reader:
        # The store's own gate, with a wait longer than the test's loads.
        reader.reader.gate = ReadAheadGate(1, lambda: live, most_wait_s=WAIT_S)
        read = asyncio.run(_replay(reader, stream))
        assert read == expected(stream, 0, 4 * 700, per_batch=1)
    assert gets.gets >= 2, "the replay read ahead too little to tell"
    return gets


def test_a_replay_beside_live_traffic_loads_one_at_a_time(tmp_path: Path) -> None:
    # Beside live traffic a second load is held until the first ends: a GET
    # waits a little for one that would join it were it not held.
    assert _replay_with(tmp_path, live=True, linger_s=0.2).most == 1


def test_a_replay_alone_loads_with_every_worker(tmp_path: Path) -> None:
    # Alone, the second load starts however long a loaded machine takes to
    # start its worker: the first GET waits for it.
    assert _replay_with(tmp_path, live=False, linger_s=WAIT_S).most >= 2


def test_the_store_gates_read_ahead_by_its_config_and_its_live_traffic(
    tmp_path: Path,
) -> None:
    config = dataclasses.replace(CONFIG, read_ahead_beside_live=3)
    with StreamStore.open(tmp_path / "store", MemoryStore(), config) as store:
        gate = store.reader.gate
        assert gate.limit == 3
        assert not gate.beside_live()
        stream = new_stream(store)
        fill(store, stream, 1, per_batch=1)  # an append: live traffic
        assert gate.beside_live()
