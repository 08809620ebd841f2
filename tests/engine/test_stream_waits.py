"""A wait from an event loop over many partitions (a long-polling Fetch)
looks only at the partitions that grew: after its wake-up those the wake-up
names, before it sleeps those that grew since the caller's read began; and
it leaves no registration behind, however it ends (docs/design/0082)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.clock import ManualClock
from engine.data_waiters import GROWTHS_KEPT, WIDE_WAIT_STREAMS
from engine.types import TopicPartition
from tests.engine.interrupted import interrupted_taking, taken_elsewhere

PARTITIONS = 50
TIMEOUT = 30.0


def registered(opened: engine.Engine) -> int:
    """The waits registered, each counted once."""
    return opened._waiters.waiting_count()


@contextmanager
def counted_looks(opened: engine.Engine) -> Iterator[Counter[int]]:
    """The store's looks at a stream's offsets, by stream id, while open."""
    looks: Counter[int] = Counter()
    store: Any = opened.store
    originals = {name: getattr(store, name) for name in ("offsets", "end_offset", "start_offset")}

    def counting(original: Callable[[int], Any]) -> Callable[[int], Any]:
        def look(stream_id: int) -> Any:
            looks[stream_id] += 1
            return original(stream_id)

        return look

    for name, original in originals.items():
        setattr(store, name, counting(original))
    try:
        yield looks
    finally:
        for name in originals:
            delattr(store, name)  # the class's methods again


def stream_of(opened: engine.Engine, partition: int) -> int:
    return opened.partition("t", partition).stream_id


def at_start(width: int = PARTITIONS) -> dict[TopicPartition, int]:
    return {TopicPartition("t", p): 0 for p in range(width)}


WIDTHS = pytest.mark.parametrize("width", [8, PARTITIONS], ids=["narrow", "wide"])
"""A wait over a few partitions is registered under each, one over many once."""
assert 8 <= WIDE_WAIT_STREAMS < PARTITIONS


def produce(opened: engine.Engine, partition: int) -> None:
    with opened.producer() as producer:
        producer.send("t", b"grown", partition=partition).result(TIMEOUT)


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[engine.Engine]:
    with engine.open(tmp_path / "data", config=engine.EngineConfig.small()) as opened:
        opened.create_topic("t", PARTITIONS)
        yield opened


async def until_registered(opened: engine.Engine, count: int) -> None:
    async with asyncio.timeout(TIMEOUT):
        while registered(opened) < count:
            await asyncio.sleep(0.005)


@WIDTHS
def test_a_wake_up_looks_only_at_the_partition_that_grew(opened: engine.Engine, width: int) -> None:
    grown = width - 2

    async def main() -> tuple[bool, Counter[int]]:
        wait = asyncio.ensure_future(opened.wait_for_data_async(at_start(width), TIMEOUT))
        await until_registered(opened, 1)
        with counted_looks(opened) as looks:
            await asyncio.to_thread(produce, opened, grown)
            woken = await wait
        return woken, looks

    woken, looks = asyncio.run(main())
    assert woken
    assert set(looks) == {stream_of(opened, grown)}
    assert registered(opened) == 0


def test_nothing_grown_since_the_read_no_look_before_the_sleep(opened: engine.Engine) -> None:
    async def main() -> tuple[bool, Counter[int]]:
        mark = opened.growth_mark()
        with counted_looks(opened) as looks:
            found = await opened.wait_for_data_async(at_start(), 0.05, mark)
        return found, looks

    found, looks = asyncio.run(main())
    assert not found
    assert not looks
    assert registered(opened) == 0


@WIDTHS
def test_a_growth_between_the_read_and_the_wait_ends_it_at_once(
    opened: engine.Engine, width: int
) -> None:
    async def main() -> tuple[bool, Counter[int]]:
        mark = opened.growth_mark()  # the caller's read begins
        produce(opened, 3)  # grows after the read looked at partition 3
        with counted_looks(opened) as looks:
            found = await opened.wait_for_data_async(at_start(width), TIMEOUT, mark)
        return found, looks

    found, looks = asyncio.run(asyncio.wait_for(main(), TIMEOUT / 2))
    assert found
    assert set(looks) == {stream_of(opened, 3)}
    assert registered(opened) == 0


def test_growths_past_those_kept_look_at_every_partition(opened: engine.Engine) -> None:
    """A wait whose mark is older than the growths kept cannot tell which
    partitions grew, so it looks at them all and finds the first growth."""

    async def main() -> bool:
        mark = opened.growth_mark()
        produce(opened, 9)
        for _ in range(GROWTHS_KEPT + 1):
            produce(opened, 0)
        positions = at_start()
        positions[TopicPartition("t", 0)] = opened.offsets("t", 0)[1]
        return await opened.wait_for_data_async(positions, TIMEOUT, mark)

    assert asyncio.run(asyncio.wait_for(main(), TIMEOUT / 2))


def test_without_a_mark_every_partition_is_looked_at_once(opened: engine.Engine) -> None:
    async def main() -> tuple[bool, Counter[int]]:
        with counted_looks(opened) as looks:
            found = await opened.wait_for_data_async(at_start(), 0.05)
        return found, looks

    found, looks = asyncio.run(main())
    assert not found
    # Before the sleep, one look (both offsets) at each; none after a timeout.
    assert looks == Counter({stream_of(opened, p): 1 for p in range(PARTITIONS)})


@WIDTHS
def test_a_deleted_topic_ends_the_wait(opened: engine.Engine, width: int) -> None:
    async def main() -> bool:
        wait = asyncio.ensure_future(opened.wait_for_data_async(at_start(width), TIMEOUT))
        await until_registered(opened, 1)
        await asyncio.to_thread(opened.delete_topic, "t")
        return await asyncio.wait_for(wait, TIMEOUT / 2)

    assert asyncio.run(main())
    assert registered(opened) == 0


@WIDTHS
def test_a_cancelled_wait_leaves_no_registration(opened: engine.Engine, width: int) -> None:
    async def main() -> None:
        wait = asyncio.ensure_future(opened.wait_for_data_async(at_start(width), TIMEOUT))
        await until_registered(opened, 1)
        wait.cancel()
        with pytest.raises(asyncio.CancelledError):
            await wait

    asyncio.run(main())
    assert registered(opened) == 0


def test_many_waits_over_the_same_partitions_leave_none_behind(opened: engine.Engine) -> None:
    """Waits that time out, waits woken, and waits cancelled, side by side."""

    async def main() -> list[bool]:
        timing_out = [
            asyncio.ensure_future(opened.wait_for_data_async(at_start(), 0.2)) for _ in range(5)
        ]
        tail = {TopicPartition("t", p): 0 for p in range(10, 20)}
        woken = [asyncio.ensure_future(opened.wait_for_data_async(tail, TIMEOUT)) for _ in range(5)]
        cancelled = [
            asyncio.ensure_future(opened.wait_for_data_async(at_start(), TIMEOUT)) for _ in range(5)
        ]
        await until_registered(opened, 15)
        await asyncio.sleep(0.3)  # the first five time out
        await asyncio.to_thread(produce, opened, 12)
        for wait in cancelled:
            wait.cancel()
        answers = await asyncio.gather(*timing_out, *woken)
        await asyncio.gather(*cancelled, return_exceptions=True)
        return answers

    answers = asyncio.run(asyncio.wait_for(main(), TIMEOUT))
    assert answers == [False] * 5 + [True] * 5
    assert registered(opened) == 0


def test_a_jump_of_the_clock_ends_the_wait_with_no_data(tmp_path: Path) -> None:
    clock = ManualClock()
    with engine.open(tmp_path / "data", config=engine.EngineConfig.small(), clock=clock) as opened:
        opened.create_topic("t", PARTITIONS)

        async def main() -> bool:
            wait = asyncio.ensure_future(opened.wait_for_data_async(at_start(), TIMEOUT))
            await until_registered(opened, 1)
            await asyncio.to_thread(clock.advance, 60)
            return await asyncio.wait_for(wait, TIMEOUT / 2)

        assert not asyncio.run(main())
        assert registered(opened) == 0


def test_the_close_ends_every_wait(tmp_path: Path) -> None:
    with engine.open(tmp_path / "data", config=engine.EngineConfig.small()) as opened:
        opened.create_topic("t", PARTITIONS)
        ended = threading.Event()

        async def main() -> bool:
            wait = asyncio.ensure_future(opened.wait_for_data_async(at_start(), TIMEOUT))
            await until_registered(opened, 1)
            await asyncio.to_thread(opened.close)
            found = await asyncio.wait_for(wait, TIMEOUT / 2)
            ended.set()
            return found

        assert not asyncio.run(main())
        assert ended.is_set()
        assert registered(opened) == 0


LEFT_BEHIND: list[asyncio.Task[bool]] = []
"""Tasks of closed loops, kept so that they are never collected mid-test."""


def leave_a_wait_behind(opened: engine.Engine, width: int) -> None:
    """A wait from an event loop closed with it still pending (its task
    never cancelled, so its registration is never taken out)."""
    loop = asyncio.new_event_loop()
    try:
        LEFT_BEHIND.append(loop.create_task(opened.wait_for_data_async(at_start(width), TIMEOUT)))
        loop.run_until_complete(until_registered(opened, 1))
    finally:
        loop.close()


@WIDTHS
def test_a_wait_of_a_closed_loop_keeps_no_growth_from_waking_the_others(
    opened: engine.Engine, width: int
) -> None:
    leave_a_wait_behind(opened, width)

    async def main() -> bool:
        wait = asyncio.ensure_future(opened.wait_for_data_async(at_start(width), TIMEOUT))
        await until_registered(opened, 2)
        await asyncio.to_thread(produce, opened, 3)
        return await asyncio.wait_for(wait, TIMEOUT / 2)

    assert asyncio.run(main())
    # The growth that found the closed loop let go of its wait: it had
    # been matched, and failed to wake, at every growth after.
    assert registered(opened) == 0


@WIDTHS
def test_the_close_and_a_deletion_end_with_a_closed_loop_wait_registered(
    opened: engine.Engine, width: int
) -> None:
    leave_a_wait_behind(opened, width)
    opened.delete_topic("t")
    opened.create_topic("t", PARTITIONS)
    leave_a_wait_behind(opened, width)
    opened.close()
    assert registered(opened) == 0


def test_a_topic_deleted_while_its_wait_registers_leaves_no_entry(opened: engine.Engine) -> None:
    """The deletion runs on another thread (an admin request of another
    server, the embedded API) between the wait's lookup of its partitions
    and its registration: the deletion found nothing to pop, and the entry
    the wait then made under each gone stream would stay forever, one per
    such race, under streams that will never grow again."""
    waiters = opened._waiters
    streams = {stream_of(opened, p) for p in range(8)}
    looked_up = waiters._watched

    def deleted_meanwhile(positions: Any) -> Any:
        watched = looked_up(positions)
        deletion = threading.Thread(target=opened.delete_topic, args=("t",))
        deletion.start()
        deletion.join()
        return watched

    waiters._watched = deleted_meanwhile  # type: ignore[method-assign]
    try:
        found = asyncio.run(opened.wait_for_data_async(at_start(8), TIMEOUT, opened.growth_mark()))
    finally:
        del waiters._watched
    assert found  # the gone topic ends the wait at once
    assert registered(opened) == 0
    assert not streams & waiters.async_waiters.keys()


@WIDTHS
def test_a_woken_wait_returns_at_the_next_turn_of_its_loop(
    opened: engine.Engine, width: int
) -> None:
    """The growth's hop to the loop ends the wait: its task runs again at
    the loop's next turn. Through asyncio.wait_for and shield, two more
    futures chained to the wait's own took two more turns and three more
    callbacks at every long poll (docs/design/0088)."""

    async def main() -> tuple[int, bool]:
        mark = opened.growth_mark()
        wait = asyncio.ensure_future(opened.wait_for_data_async(at_start(width), TIMEOUT, mark))
        await until_registered(opened, 1)
        # The listener's call, as the WAL's thread makes it: it queues the
        # hop to this loop, which runs at the next turn.
        opened._waiters.on_durable({stream_of(opened, 1)})
        turns = 0
        while not wait.done():
            await asyncio.sleep(0)
            turns += 1
        return turns, wait.result()

    turns, found = asyncio.run(main())
    assert not found  # the stream did not really grow: the look after finds nothing
    assert turns == 2  # the hop's turn, then the waiting task's
    assert registered(opened) == 0


def test_a_ctrl_c_as_a_growth_takes_its_lock_leaves_the_lock_free(
    opened: engine.Engine,
) -> None:
    """A topic's deletion reports its growth on the thread that deletes it
    (the main thread, from the embedded API). A KeyboardInterrupt raised
    there just after the growth has taken its lock leaves the lock free:
    held, the WAL's thread would block on it at its next group commit, and
    no produce would ever be acknowledged again. acquire() then try: the
    interpreter looks for signals after the call that took the lock, before
    the try begins; a with statement takes it with no look between."""
    waiters = opened._waiters
    lock = waiters._growth_lock
    grown = {stream_of(opened, 1)}
    interrupted = interrupted_taking(
        lock, waiters.on_durable.__code__, lambda: waiters.on_durable(grown)
    )
    left_held = not taken_elsewhere(lock)
    if left_held:
        lock.release()  # so that the engine can close
    assert interrupted
    assert not left_held

    async def main() -> bool:
        # A wait woken by the WAL's thread's next growth: it took the lock.
        mark = opened.growth_mark()
        wait = asyncio.ensure_future(opened.wait_for_data_async(at_start(8), TIMEOUT, mark))
        await until_registered(opened, 1)
        await asyncio.to_thread(produce, opened, 2)
        return await asyncio.wait_for(wait, TIMEOUT / 2)

    assert asyncio.run(main())
    assert registered(opened) == 0


class _SwitchAfterLookup(dict[int, dict[Any, None]]):
    """The waits' map, with a switch of threads just after one lookup of
    ``stream`` that finds no entry: what the interpreter may do after any
    call returns, on cue."""

    def __init__(
        self, entries: dict[int, dict[Any, None]], stream: int, switch: Callable[[], None]
    ):
        super().__init__(entries)
        self.stream = stream
        self.switch: Callable[[], None] | None = switch

    def get(self, key: int, default: Any = None) -> Any:
        found = super().get(key, default)
        switch = self.switch
        if key == self.stream and found is None and switch is not None:
            self.switch = None
            switch()
        return found


def test_two_loops_making_one_streams_entry_at_once_keep_both_waits(
    opened: engine.Engine,
) -> None:
    """Two event loops in one process (two servers, or a server and an
    embedded async consumer) register waits on a stream whose entry the
    last growth popped. The second loop makes the entry between the first's
    lookup and the entry the first then makes: the first's entry replaced
    the second's, and the second's wait, in an entry no growth pops, slept
    through the next growth until its timeout."""
    stream = stream_of(opened, 1)
    positions = {TopicPartition("t", 1): 0}
    waiters = opened._waiters
    other_registered = threading.Event()
    other_found: list[bool] = []

    def other_loop() -> None:
        async def main() -> bool:
            mark = opened.growth_mark()
            wait = asyncio.ensure_future(opened.wait_for_data_async(positions, TIMEOUT, mark))
            await until_registered(opened, 1)
            other_registered.set()
            return await wait

        other_found.append(asyncio.run(main()))

    other = threading.Thread(target=other_loop)

    def switch() -> None:  # to the other loop's thread, until its wait sleeps
        other.start()
        assert other_registered.wait(TIMEOUT)

    waiters.async_waiters = _SwitchAfterLookup(waiters.async_waiters, stream, switch)

    async def main() -> tuple[int, bool]:
        mark = opened.growth_mark()
        wait = asyncio.ensure_future(opened.wait_for_data_async(positions, TIMEOUT, mark))
        # The wait's first step: its lookup (and the other loop's whole
        # registration), its entry, its look, its sleep.
        await asyncio.sleep(0)
        both = registered(opened)
        await asyncio.to_thread(produce, opened, 1)
        return both, await asyncio.wait_for(wait, TIMEOUT / 2)

    try:
        both, found = asyncio.run(asyncio.wait_for(main(), TIMEOUT / 2))
    finally:
        other.join(TIMEOUT * 2)
    assert both == 2  # each loop's wait under the stream
    assert found
    assert other_found == [True]  # woken by the growth, not by its timeout
    assert registered(opened) == 0


class _PopBetweenLookupAndEntry(dict[int, dict[Any, None]]):
    """The waits' map, with the listener's pop of ``stream`` held, once
    armed, until a wait has looked the stream's entry up, and the wait held
    until the pop is done: a growth counted before the wait's mark, whose
    listener was switched out before it popped."""

    def __init__(self, entries: dict[int, dict[Any, None]], stream: int) -> None:
        super().__init__(entries)
        self.stream = stream
        self.armed = False
        self.counted = threading.Event()
        self.looked_up = threading.Event()
        self.popped = threading.Event()

    def pop(self, key: int, *default: Any) -> Any:
        if key == self.stream and self.armed and not self.popped.is_set():
            self.counted.set()  # on_durable counts the growth before it pops
            assert self.looked_up.wait(TIMEOUT)
            try:
                return super().pop(key, *default)
            finally:
                self.popped.set()
        return super().pop(key, *default)

    def get(self, key: int, default: Any = None) -> Any:
        found = super().get(key, default)
        if key == self.stream and self.counted.is_set() and not self.popped.is_set():
            self.looked_up.set()
            assert self.popped.wait(TIMEOUT)
        return found


def test_a_growth_popping_the_entry_a_wait_joins_leaves_it_woken_by_the_next(
    opened: engine.Engine,
) -> None:
    """A growth counted before the caller's mark (its data in the read)
    whose listener pops the stream's entry after the wait looked it up and
    before the wait put itself in it: the wait joined an entry no longer in
    the map, and its look, seeing no growth since the mark, slept there,
    past the reach of every later growth, until its timeout."""
    stream = stream_of(opened, 1)
    waiters = opened._waiters

    async def left_in_place() -> None:  # a wait ended leaves its emptied entry
        await opened.wait_for_data_async({TopicPartition("t", 1): 0}, 0.01, opened.growth_mark())

    asyncio.run(left_in_place())
    assert waiters.async_waiters.get(stream) == {}
    hooked = _PopBetweenLookupAndEntry(waiters.async_waiters, stream)
    waiters.async_waiters = hooked

    async def main() -> tuple[int, bool]:
        hooked.armed = True
        first = asyncio.ensure_future(asyncio.to_thread(produce, opened, 1))
        assert await asyncio.to_thread(hooked.counted.wait, TIMEOUT)
        # The caller's read begins after the growth was counted: it sees
        # the growth's data, and its wait waits past it.
        mark = opened.growth_mark()
        positions = {TopicPartition("t", 1): opened.offsets("t", 1)[1]}
        wait = asyncio.ensure_future(opened.wait_for_data_async(positions, TIMEOUT / 3, mark))
        await first  # meanwhile the wait's first step ran: it sleeps
        # Where the next growth finds it, under the stream in the map.
        in_the_map = registered(opened)
        await asyncio.to_thread(produce, opened, 1)  # the next growth
        return in_the_map, await asyncio.wait_for(wait, TIMEOUT / 2)

    in_the_map, found = asyncio.run(main())
    assert in_the_map == 1
    assert found  # woken by the growth, not by its timeout
    assert registered(opened) == 0


class _GrowthAtTheSecondLookup(dict[int, dict[Any, None]]):
    """The waits' map, with a growth of ``stream`` reported just before the
    second lookup of it returns: after a wait has put itself in the entry
    and before it checks that the entry is still the map's."""

    def __init__(self, entries: dict[int, dict[Any, None]], stream: int, grow: Callable[[], None]):
        super().__init__(entries)
        self.stream = stream
        self.grow = grow
        self.lookups = 0

    def get(self, key: int, default: Any = None) -> Any:
        if key == self.stream:
            self.lookups += 1
            if self.lookups == 2:
                self.grow()
        return super().get(key, default)


def test_a_wait_woken_by_the_growth_that_popped_its_entry_leaves_no_entry(
    opened: engine.Engine,
) -> None:
    """The growth pops the entry after the wait has put itself in it, so it
    wakes the wait, and the wait, finding the entry gone, joins a new one:
    that one is taken out too when the wait ends."""
    stream = stream_of(opened, 1)
    waiters = opened._waiters
    waiters.async_waiters = _GrowthAtTheSecondLookup(
        waiters.async_waiters, stream, lambda: waiters.on_durable({stream})
    )

    async def main() -> bool:
        positions = {TopicPartition("t", 1): 0}
        return await opened.wait_for_data_async(positions, TIMEOUT, opened.growth_mark())

    assert not asyncio.run(asyncio.wait_for(main(), TIMEOUT / 2))  # nothing really grew
    assert registered(opened) == 0
