"""Who waits for data, and waking them: consumers polling from threads and
from event loops, and producer retries waiting for an offset to become
durable. The stream store's durability listener wakes them.

A wait from an event loop (a long-polling Fetch, an async consumer) is one
``StreamWait``, woken by the streams that grew and told which: after a
wake-up it looks at those partitions only, and before it sleeps at those
that grew since the caller's read began (``growth_mark``). A wait over a
few streams is registered under each; one over many (a Fetch of every
partition of a wide topic) is registered once, among the wide waits each
growth is matched against, and removed in one step. A Fetch of 10,000
caught-up partitions looked up and read every one of them twice per wait,
and registered and removed itself 10,000 times (docs/design/0082)."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping

from engine.clock import Clock
from engine.errors import EngineClosed, EngineError, UnknownTopic
from engine.partition import Partition, Watched
from engine.store_errors import translate
from engine.topics import TopicRegistry
from engine.types import TopicPartition
from s3stream import S3StreamError

GROWTHS_KEPT = 64
"""The store's latest growths (one per WAL group commit) kept for a wait's
look before it sleeps: one begun that many commits after the caller's read
looks at all of its partitions instead."""
WIDE_WAIT_STREAMS = 32
"""A wait over more streams than this is a wide one: matched against each
growth (a few streams, a set lookup each) instead of registered under each
of its streams (a dict entry made and taken out per stream per wait)."""


class StreamWait:
    """One wait from an event loop over many streams, woken once by
    whichever grows first, with the streams that grew."""

    __slots__ = ("future", "grown", "loop", "watched")

    def __init__(self, loop: asyncio.AbstractEventLoop, watched: Mapping[int, Watched]) -> None:
        self.loop = loop
        self.watched = watched
        """Each stream watched: its partition, the position waited past and
        the offset read at."""
        self.future: asyncio.Future[None] = loop.create_future()
        self.grown: set[int] = set()
        """Filled by the notifying thread before the wake-up it sends."""


class DataWaiters:
    def __init__(self, registry: TopicRegistry, clock: Clock) -> None:
        self.registry = registry
        self.clock = clock
        """What a wait's timeout runs on; when it jumps, waiters look again."""
        self.closed = False
        self.data_arrived = threading.Condition()
        self.sync_waiters = 0
        self.async_waiters: dict[int, dict[StreamWait, None]] = {}
        """The waits from event loops under each stream they watch (a dict
        for its order and its removal by key). A stream's entry is popped
        when it grows and otherwise left, emptied, in place: removed, it
        could take a registration another loop was adding to it."""
        self.wide_waits: set[StreamWait] = set()
        """The waits over more than WIDE_WAIT_STREAMS streams, registered here only."""
        self._growths = 0
        self._grown: deque[tuple[int, set[int]]] = deque(maxlen=GROWTHS_KEPT)
        self._growth_lock = threading.Lock()
        """The WAL's thread and a topic's deletion both report growths."""
        self._offset_waiters: dict[
            int, list[tuple[int, Callable[[BaseException | None], None]]]
        ] = {}
        self._offset_waiters_lock = threading.Lock()
        clock.on_advance(self._clock_moved)

    def on_durable(self, streams: set[int]) -> None:
        """The store's listener: some streams grew. Wakes waiting consumers.

        The growth is counted and kept before any wait is popped: a wait
        registered after the pop looks at what the count says grew."""
        # One count per growth, kept in its order. A with statement, not
        # acquire() then try: a KeyboardInterrupt raised between them (a
        # deletion's growth on the main thread) would leave the lock held
        # and the WAL's thread blocked at its next commit (docs/design/0097).
        with self._growth_lock:
            self._growths += 1
            self._grown.append((self._growths, streams))
        if self._offset_waiters:
            self._wake_offset_waiters(streams)
        if self.sync_waiters:
            with self.data_arrived:
                self.data_arrived.notify_all()
        if not (self.async_waiters or self.wide_waits):
            return
        woken: list[StreamWait] = []
        if self.async_waiters:
            pop = self.async_waiters.pop
            for stream_id in streams:
                waits = pop(stream_id, None)
                if waits:
                    # A copy: its loop may be taking a wait out of it meanwhile.
                    copied = list(waits)
                    for wait in copied:
                        wait.grown.add(stream_id)
                    woken += copied
        if self.wide_waits:
            for wait in list(self.wide_waits):
                # The smaller side is iterated: the few streams grown.
                if not wait.watched.keys().isdisjoint(streams):
                    wait.grown.update(s for s in streams if s in wait.watched)
                    woken.append(wait)
        if len(woken) == 1:  # one consumer tailing: the commonest growth of all
            wait = woken[0]
            if not _call_soon(wait.loop, _wake, wait):
                self._forget(wait)
        elif woken:
            self._wake_by_loop(woken)

    def _wake_by_loop(self, woken: list[StreamWait]) -> None:
        """One hop to each loop for all of its waits: many consumers tailing
        one partition (fan-out) wait on the same growth, and a hop each cost
        the notifying thread and the loop N times. A wait over several of
        the streams grown is listed once for each."""
        by_loop: dict[asyncio.AbstractEventLoop, dict[StreamWait, None]] = {}
        for wait in woken:
            by_loop.setdefault(wait.loop, {})[wait] = None
        for loop, waits in by_loop.items():
            if not _call_soon(loop, _wake_all, list(waits)):
                for wait in waits:
                    self._forget(wait)

    def _clock_moved(self) -> None:
        """A clock that jumps (a ManualClock): a waiter's timeout may be over."""
        with self.data_arrived:
            self.data_arrived.notify_all()
        self._wake_every_wait()

    def _wake_every_wait(self) -> None:
        waits = {wait for waiting in list(self.async_waiters.values()) for wait in list(waiting)}
        for wait in waits | set(self.wide_waits):
            if not _call_soon(wait.loop, _wake, wait):
                self._forget(wait)

    def _forget(self, wait: StreamWait) -> None:
        """Takes out every registration of a wait whose loop is closed: its
        task will never run its own removal, and a wide wait, never popped by
        a growth, would be matched (and fail to wake) at each growth after."""
        self.wide_waits.discard(wait)
        for stream_id in wait.watched:
            waits = self.async_waiters.get(stream_id)
            if waits:
                waits.pop(wait, None)

    def _wake_offset_waiters(self, streams: set[int]) -> None:
        ready = []
        failed: list[tuple[Callable[[BaseException | None], None], BaseException]] = []
        with self._offset_waiters_lock:
            for stream_id in streams:
                waiting = self._offset_waiters.get(stream_id)
                leader = self.registry.by_stream.get(stream_id)
                if not waiting or leader is None:
                    continue
                high_watermark = leader.high_watermark
                if not leader.store.fenced:  # a fenced writer acknowledges nothing
                    ready += [callback for offset, callback in waiting if offset < high_watermark]
                    waiting[:] = [(o, c) for o, c in waiting if o >= high_watermark]
                if waiting and leader.store.fenced_or_failed():
                    # The store stopped (fenced, or its WAL failed): what it
                    # had not made durable it never will, and a fenced one's
                    # WAL is replayed by nobody, so a retry waiting for its
                    # original is answered the failure, as the original was.
                    error = translate(leader.store.failure_error())
                    failed += [(callback, error) for _, callback in waiting]
                    waiting.clear()
        for callback in ready:
            callback(None)
        for callback, error in failed:
            callback(error)

    def topic_deleted(self, partitions: list[Partition]) -> None:
        """A topic's partitions are gone: its waiters stop waiting, as a
        Kafka broker completes a delayed fetch or produce on a partition it
        no longer leads. A consumer waiting on a partition looks again (and
        finds the topic gone, or created anew on other streams that its
        wait did not watch); an offset that will never be durable fails
        its waiter with UNKNOWN_TOPIC_OR_PARTITION."""
        streams = {p.stream_id for p in partitions}
        failed = []
        with self._offset_waiters_lock:
            for leader in partitions:
                for _, callback in self._offset_waiters.pop(leader.stream_id, None) or ():
                    failed.append((callback, UnknownTopic(leader.topic)))
        for callback, error in failed:
            callback(error)
        self.on_durable(streams)

    def log_start_moved(self, leader: Partition) -> None:
        """The partition's log start moved (DeleteRecords, the store's retention): a wait whose
        caller read below it ends now, and the read again answers
        OFFSET_OUT_OF_RANGE. Kafka's DelayedFetch never looks at the log
        start: its read answers the same at the fetch's next completion
        (data past the offset, or max_wait); here it is answered at once,
        the same answer sooner (docs/design/0090). Counted as a growth, so
        that a wait registering meanwhile looks at the partition; only the
        waits read below the new start are woken, the others go on waiting."""
        stream_id = leader.stream_id
        log_start = leader.log_start_offset
        with self._growth_lock:
            self._growths += 1
            self._grown.append((self._growths, {stream_id}))
        if self.sync_waiters:
            with self.data_arrived:
                self.data_arrived.notify_all()
        ended: list[StreamWait] = []
        waits = self.async_waiters.get(stream_id)
        if waits:
            for wait in list(waits):  # a copy: loops take theirs out meanwhile
                if wait.watched[stream_id][2] < log_start:
                    waits.pop(wait, None)
                    ended.append(wait)
        for wait in list(self.wide_waits) if self.wide_waits else ():
            watched = wait.watched.get(stream_id)
            if watched is not None and watched[2] < log_start:
                ended.append(wait)
        for wait in ended:
            wait.grown.add(stream_id)
            if not _call_soon(wait.loop, _wake, wait):
                self._forget(wait)

    def when_durable(
        self, leader: Partition, offset: int, callback: Callable[[BaseException | None], None]
    ) -> None:
        """Calls ``callback(None)`` once ``offset`` is below the high watermark
        (at once if it is), or ``callback(error)`` if the engine closes or
        the topic is deleted first."""
        with self._offset_waiters_lock:
            # Deleted before topic_deleted took the lock: it would not see this waiter.
            gone = leader.deleted
            if not gone and leader.high_watermark <= offset:
                self._offset_waiters.setdefault(leader.stream_id, []).append((offset, callback))
                return
        callback(UnknownTopic(leader.topic) if gone else None)

    def growth_mark(self) -> int:
        """A mark of the growths so far: a wait given it looks, before it
        sleeps, only at the partitions that grew since (wait_for_data_async)."""
        return self._growths

    def _has_data(self, positions: Mapping[TopicPartition, int]) -> bool:
        for (topic, partition), offset in positions.items():
            try:
                leader = self.registry.partition(topic, partition)
            except EngineError:
                return True  # let the caller's fetch report it
            log_start, high_watermark = leader.watermarks()
            if high_watermark > offset or log_start > offset:
                return True
        return not positions

    def wait_for_data(self, positions: Mapping[TopicPartition, int], timeout: float) -> bool:
        """Blocks until one of the partitions has data at or after its
        position, or ``timeout`` seconds pass; True if there is data."""
        return self._wait(lambda: self._has_data(positions), timeout)

    def wait_for_reads(self, watched: Mapping[int, Watched], timeout: float) -> bool:
        """wait_for_data over the partitions a caller read, by stream id, as
        wait_for_reads_async: a topic deleted since the read ends the wait
        rather than it going on under the topic created again with that
        name (an embedded consumer on a thread)."""
        return self._wait(lambda: _any_data(watched, watched), timeout)

    def _wait(self, has_data: Callable[[], bool], timeout: float) -> bool:
        """Blocks until ``has_data()``, looked at again at each growth, or
        until ``timeout`` seconds pass or the engine closes; True if it
        found data."""
        deadline = self.clock.monotonic() + timeout
        with self.data_arrived:
            self.sync_waiters += 1
            try:
                while not has_data():
                    remaining = deadline - self.clock.monotonic()
                    if remaining <= 0 or self.closed:
                        return False
                    self.data_arrived.wait(remaining)
                return True
            finally:
                self.sync_waiters -= 1

    async def wait_for_data_async(
        self, positions: Mapping[TopicPartition, int], timeout: float, since: int | None = None
    ) -> bool:
        """Like wait_for_data, without blocking the event loop; a jump of
        the clock ends the wait early (with no data: the caller reads the
        clock again). ``since``: a growth_mark taken before the caller read
        the partitions at ``positions``; without it, every partition is
        looked at before the wait sleeps."""
        watched = self._watched(positions)
        if not watched:  # none, or one the caller's read will report
            return True
        return await self.wait_for_reads_async(watched, timeout, since)

    async def wait_for_reads_async(
        self, watched: Mapping[int, Watched], timeout: float, since: int | None = None
    ) -> bool:
        """wait_for_data_async over the partitions a caller read, by stream
        id: no lookup by name, so a topic deleted since the read ends the
        wait (the partition read is gone) instead of the wait going on
        under the topic created again with that name (docs/design/0090)."""
        loop = asyncio.get_running_loop()
        wait = StreamWait(loop, watched)
        waiters = self.async_waiters
        wide = len(watched) > WIDE_WAIT_STREAMS
        rejoined: list[int] | None = None
        if wide:
            self.wide_waits.add(wait)
        else:
            for stream_id in watched:
                waits = waiters.get(stream_id)
                if waits is None:
                    # setdefault, one step under the GIL: another loop's
                    # thread may have made the entry since the lookup, and
                    # one made over it would hide its wait from every growth.
                    waits = waiters.setdefault(stream_id, {})
                waits[wait] = None
                while waiters.get(stream_id) is not waits:
                    # Popped since the lookup by a growth counted before the
                    # caller's mark (the look below passes it by): joined
                    # again, in the map, where the next growth finds this
                    # wait, and taken out at the end even if that growth
                    # (popping after the entry) wakes it.
                    waits = waiters.setdefault(stream_id, {})
                    waits[wait] = None
                    rejoined = [*rejoined, stream_id] if rejoined else [stream_id]
        timer = None
        try:
            # Registered first, looked at next: a growth the look misses
            # pops this wait and wakes it.
            if _any_data(watched, self._grown_since(since, watched)):
                return True
            # The timeout ends the wait as a growth does. Awaited directly,
            # not through asyncio.wait_for and shield: those chain two more
            # futures to this one, and a wake-up then took two more turns
            # of the loop and three more callbacks before the Fetch ran
            # again, at every long poll (docs/design/0088).
            timer = loop.call_later(timeout, _wake, wait)
            await wait.future
            # What did not grow still has nothing past its position: only
            # the streams that grew are looked at (none after a clock jump
            # or the close, which wake every wait).
            # A copy: a growth of a stream still watched may add to it meanwhile.
            return _any_data(watched, list(wait.grown))
        finally:
            if timer is not None:
                timer.cancel()
            if wide:
                self.wide_waits.discard(wait)
            else:
                left = watched.keys() - wait.grown
                for stream_id in left.union(rejoined) if rejoined else left:
                    waits = waiters.get(stream_id)
                    if waits:
                        waits.pop(wait, None)
                    if not waits and watched[stream_id][0].deleted:
                        # Deleted after this wait looked its partition up
                        # (by another thread) and before it registered: the
                        # deletion's growth popped nothing, and a gone stream
                        # never grows again. Any wait still adding itself to
                        # the entry finds the partition deleted when it looks.
                        waiters.pop(stream_id, None)

    def _watched(self, positions: Mapping[TopicPartition, int]) -> dict[int, Watched] | None:
        """Each position's partition by its stream id, its topic looked up
        once for its run of partitions; None if one is unknown."""
        watched: dict[int, Watched] = {}
        name = None
        partitions: list[Partition] = []
        for (topic, partition), offset in positions.items():
            if topic != name:
                found = self.registry.topics.get(topic)
                if found is None:
                    return None
                name, partitions = topic, found.partitions
            if not 0 <= partition < len(partitions):
                return None
            leader = partitions[partition]
            watched[leader.stream_id] = (leader, offset, offset)
        return watched

    def _grown_since(self, since: int | None, watched: Mapping[int, object]) -> Iterable[int]:
        """The watched streams that may have grown since the mark ``since``:
        all of them if the growths kept do not reach back to it."""
        if since is None:
            return watched.keys()
        if since == self._growths:
            return ()
        kept = list(self._grown)  # a copy: the notifying thread appends to it
        if not kept or kept[0][0] > since + 1:
            return watched.keys()
        grown: set[int] = set()
        for count, streams in kept:
            if count > since:
                grown.update(streams)
        return [stream_id for stream_id in grown if stream_id in watched]

    def waiting_count(self) -> int:
        """The waits from event loops registered (each counted once)."""
        narrow = {wait for waits in list(self.async_waiters.values()) for wait in list(waits)}
        return len(narrow) + len(self.wide_waits)

    def close(self) -> None:
        """Wakes every waiter: consumers find no data, retries get EngineClosed."""
        self.closed = True
        with self.data_arrived:
            self.data_arrived.notify_all()
        self._wake_every_wait()
        # One at a time, each taken before it is called: a close cut short
        # and called again answers those left, none twice.
        while callback := self._next_offset_waiter():
            callback(EngineClosed())

    def _next_offset_waiter(self) -> Callable[[BaseException | None], None] | None:
        with self._offset_waiters_lock:
            for key, waiting in list(self._offset_waiters.items()):
                if waiting:
                    return waiting.pop(0)[1]
                del self._offset_waiters[key]
        return None


def _any_data(watched: Mapping[int, Watched], streams: Iterable[int]) -> bool:
    """Whether a watched partition among ``streams`` has data past its
    position, a log start past the offset read, or is gone (the caller's
    read finds why): one look at each."""
    for stream_id in streams:
        leader, position, offset = watched[stream_id]
        if leader.deleted:
            return True
        try:
            log_start, high_watermark = leader.watermarks()
        except (EngineError, S3StreamError):
            return True  # the caller's read answers the error
        if high_watermark > position or log_start > offset:
            return True
    return False


def _call_soon(
    loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: object
) -> bool:
    """Schedules ``callback`` on ``loop``; False if the loop is closed. One
    waiter's closed loop (an embedded consumer's, closed with its wait still
    pending) must not raise out of the growth or the close that wakes the
    waiters of every other loop after it."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        if not loop.is_closed():
            raise
        return False
    return True


def _wake_all(waits: list[StreamWait]) -> None:
    for wait in waits:
        _wake(wait)


def _wake(wait: StreamWait) -> None:
    if not wait.future.done():
        wait.future.set_result(None)
