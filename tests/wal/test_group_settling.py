"""A group's waiters settled on their event loop in one go: the waiters and
outcomes handed over whole, a group of plain futures set in one C loop.
Nothing is settled before the group's sync, a waiter cancelled meanwhile
is passed over without stopping the rest, and groups mixing threads,
calls and loops are settled each on its own side."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from tests.wal.conftest import payloads
from wal import Position, WalOutcome, WriteAheadLog, group_commit
from wal.segment import SegmentWriter

OpenLog = Callable[..., WriteAheadLog]
TIMEOUT = 30
APPENDERS = 64


@contextmanager
def held_syncs(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event, list[int]]]:
    """Every sync waits for the event before it syncs; the list counts the
    syncs that returned. A ``gathered`` block, not the hold's limit, ends
    its group: queueing from other threads' loops can take longer than
    the limit's 5 ms on a loaded machine, and the writer would then take
    the appends queued so far as a group of their own."""
    monkeypatch.setattr(group_commit, "HOLD_LIMIT_S", float(TIMEOUT))
    release = threading.Event()
    synced: list[int] = []
    original = SegmentWriter.sync

    def held(self: SegmentWriter) -> None:
        assert release.wait(TIMEOUT), "the test never released the sync"
        original(self)
        synced.append(1)

    monkeypatch.setattr(SegmentWriter, "sync", held)
    try:
        yield release, synced
    finally:
        release.set()


def test_a_groups_futures_are_set_only_after_its_sync(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """64 appends of one group, from one loop, awaited as wal_bench's
    appenders await them: none is done through a hundred loop turns while
    the sync is held, each is done with its own position once it returns."""
    log = open_log()

    async def main() -> list[Position]:
        with held_syncs(monkeypatch) as (release, synced):
            with log.gathered():
                waiters = [log.append_async(b"append %d" % i) for i in range(APPENDERS)]
            for _ in range(100):
                await asyncio.sleep(0)
            assert not any(waiter.done() for waiter in waiters)
            assert synced == []
            release.set()
            positions = await asyncio.wait_for(asyncio.gather(*waiters), TIMEOUT)
            assert synced, "settled with no sync returned"
            return positions

    positions = asyncio.run(main())
    assert positions == sorted(positions) and len(set(positions)) == APPENDERS
    entries = list(log.replay())
    assert [entry.position for entry in entries] == positions
    assert [bytes(entry.payload) for entry in entries] == [
        b"append %d" % i for i in range(APPENDERS)
    ]


@pytest.mark.parametrize("cancelled", [[0], [31], [63], [5, 6, 40]])
def test_a_cancelled_waiter_is_passed_over_and_the_rest_still_set(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch, cancelled: list[int]
) -> None:
    """A waiter cancelled while its group syncs stops the C loop that sets
    the group's futures: the ones after it are set all the same, and the
    cancelled appends are written and durable (cancelling stops the wait,
    not the append)."""
    log = open_log()

    async def main() -> list[asyncio.Future[Position]]:
        with held_syncs(monkeypatch) as (release, _):
            with log.gathered():
                waiters = [log.append_async(b"append %d" % i) for i in range(APPENDERS)]
            await asyncio.sleep(0)
            for index in cancelled:
                waiters[index].cancel()
            release.set()
            kept = [w for i, w in enumerate(waiters) if i not in cancelled]
            await asyncio.wait_for(asyncio.gather(*kept), TIMEOUT)
            await asyncio.sleep(0)
            return waiters

    waiters = asyncio.run(main())
    assert [i for i, w in enumerate(waiters) if w.cancelled()] == cancelled
    written = [entry.position for entry in log.replay()]
    assert len(written) == APPENDERS
    assert [w.result() for w in waiters if not w.cancelled()] == [
        position for i, position in enumerate(written) if i not in cancelled
    ]


def test_a_group_of_threads_calls_and_two_loops_settles_each_on_its_side(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One group holding a thread's future, a loop's futures and calls, and
    another loop's futures: every waiter gets its own position, the loops'
    on their own threads, and only after the group's sync."""
    log = open_log()
    loops = [asyncio.new_event_loop() for _ in range(2)]
    ready = threading.Barrier(3)
    done = [threading.Event() for _ in loops]
    results: dict[str, list[tuple[str, WalOutcome, int]]] = {"first": [], "second": []}
    queued: list[asyncio.Future[Position]] = []

    def run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        ready.wait(TIMEOUT)
        loop.run_forever()

    threads = [threading.Thread(target=run, args=(loop,), daemon=True) for loop in loops]
    for thread in threads:
        thread.start()
    ready.wait(TIMEOUT)

    def on(loop: asyncio.AbstractEventLoop, name: str, payload: bytes, then: bool) -> None:
        """Queues one append from ``loop`` (run there and waited for)."""
        marked = threading.Event()

        def note(kind: str, outcome: WalOutcome) -> None:
            results[name].append((kind, outcome, len(synced)))
            if len(results[name]) == expected[name]:
                done[0 if name == "first" else 1].set()

        def queue() -> None:
            if then:
                log.submit_then(lambda outcome: note("call", outcome), payload)
            else:
                waiter = log.append_async(payload)
                queued.append(waiter)
                waiter.add_done_callback(lambda w: note("future", w.result()))
            marked.set()

        loop.call_soon_threadsafe(queue)
        assert marked.wait(TIMEOUT)

    expected = {"first": 3, "second": 2}
    try:
        with held_syncs(monkeypatch) as (release, synced):
            with log.gathered():
                on(loops[0], "first", b"a", then=False)
                threaded = log.submit(b"b")
                on(loops[1], "second", b"c", then=False)
                on(loops[0], "first", b"d", then=True)
                on(loops[0], "first", b"e", then=False)
                on(loops[1], "second", b"f", then=False)
            assert not threaded.done() and results == {"first": [], "second": []}
            release.set()
            assert all(event.wait(TIMEOUT) for event in done)
            position_b = threaded.result(TIMEOUT)
    finally:
        for loop in loops:
            loop.call_soon_threadsafe(loop.stop)
        for thread in threads:
            thread.join(TIMEOUT)
        for loop in loops:
            loop.close()
    written = {bytes(entry.payload): entry.position for entry in log.replay()}
    assert payloads(log) == [b"a", b"b", b"c", b"d", b"e", b"f"]
    assert position_b == written[b"b"]
    # A call runs as its group is settled, a future's callback a loop pass
    # later: compared as sets, each with the syncs returned when it ran.
    assert set(results["first"]) == {
        ("future", written[b"a"], 1),
        ("call", written[b"d"], 1),
        ("future", written[b"e"], 1),
    }
    assert set(results["second"]) == {("future", written[b"c"], 1), ("future", written[b"f"], 1)}


def test_append_async_queues_at_the_call(open_log: OpenLog) -> None:
    """append_async returns its future: the append is queued when it is
    called, awaited or not, and a bad append is refused at the call."""
    log = open_log()

    async def main() -> Position:
        waiter = log.append_async(b"never awaited, still written")
        with pytest.raises(ValueError):
            log.append_async(b"x", record_type=0)
        done, _ = await asyncio.wait([waiter], timeout=TIMEOUT)
        assert done == {waiter}
        return await log.append_async(b"awaited")

    last = asyncio.run(main())
    assert payloads(log) == [b"never awaited, still written", b"awaited"]
    assert last == list(log.replay())[-1].position
