"""Who waits for data, and waking them: consumers polling from threads and
from event loops, and producer retries waiting for an offset to become
durable. The stream store's durability listener wakes them."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Mapping

from engine.clock import Clock
from engine.errors import EngineClosed, EngineError, UnknownTopic
from engine.partition import Partition
from engine.store_errors import translate
from engine.topics import TopicRegistry
from engine.types import TopicPartition


class DataWaiters:
    def __init__(self, registry: TopicRegistry, clock: Clock) -> None:
        self.registry = registry
        self.clock = clock
        """What a wait's timeout runs on; when it jumps, waiters look again."""
        self.closed = False
        self.data_arrived = threading.Condition()
        self.sync_waiters = 0
        self.async_waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._offset_waiters: dict[
            int, list[tuple[int, Callable[[BaseException | None], None]]]
        ] = {}
        self._offset_waiters_lock = threading.Lock()
        clock.on_advance(self._clock_moved)

    def on_durable(self, streams: set[int]) -> None:
        """The store's listener: some streams grew. Wakes waiting consumers."""
        if self._offset_waiters:
            self._wake_offset_waiters(streams)
        if self.sync_waiters:
            with self.data_arrived:
                self.data_arrived.notify_all()
        if self.async_waiters:
            # One hop to each loop for all of its waiters: many consumers
            # tailing one partition (fan-out) wait on the same growth, and
            # a hop each cost the notifying thread and the loop N times.
            by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
            for stream_id in streams:
                for waiter in self.async_waiters.pop(stream_id, None) or ():
                    by_loop.setdefault(waiter.get_loop(), []).append(waiter)
            for loop, waiters in by_loop.items():
                loop.call_soon_threadsafe(_wake_all, waiters)

    def _clock_moved(self) -> None:
        """A clock that jumps (a ManualClock): a waiter's timeout may be over."""
        with self.data_arrived:
            self.data_arrived.notify_all()
        for waiters in list(self.async_waiters.values()):
            for waiter in waiters:
                waiter.get_loop().call_soon_threadsafe(_wake, waiter)

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

    def _has_data(self, positions: Mapping[TopicPartition, int]) -> bool:
        for (topic, partition), offset in positions.items():
            try:
                leader = self.registry.partition(topic, partition)
            except EngineError:
                return True  # let the caller's fetch report it
            if leader.high_watermark > offset or leader.log_start_offset > offset:
                return True
        return not positions

    def wait_for_data(self, positions: Mapping[TopicPartition, int], timeout: float) -> bool:
        """Blocks until one of the partitions has data at or after its
        position, or ``timeout`` seconds pass; True if there is data."""
        deadline = self.clock.monotonic() + timeout
        with self.data_arrived:
            self.sync_waiters += 1
            try:
                while not self._has_data(positions):
                    remaining = deadline - self.clock.monotonic()
                    if remaining <= 0 or self.closed:
                        return False
                    self.data_arrived.wait(remaining)
                return True
            finally:
                self.sync_waiters -= 1

    async def wait_for_data_async(
        self, positions: Mapping[TopicPartition, int], timeout: float
    ) -> bool:
        """Like wait_for_data, without blocking the event loop; a jump of
        the clock ends the wait early (with no data: the caller reads the
        clock again)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        streams = []
        for topic, partition in positions:
            with contextlib.suppress(EngineError):
                streams.append(self.registry.partition(topic, partition).stream_id)
        for stream_id in streams:
            self.async_waiters.setdefault(stream_id, []).append(waiter)
        try:
            if self._has_data(positions):
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiter), timeout)
            return self._has_data(positions)
        finally:
            for stream_id in streams:
                waiting = self.async_waiters.get(stream_id)
                if waiting and waiter in waiting:
                    waiting.remove(waiter)

    def close(self) -> None:
        """Wakes every waiter: consumers find no data, retries get EngineClosed."""
        self.closed = True
        with self.data_arrived:
            self.data_arrived.notify_all()
        for waiters in list(self.async_waiters.values()):
            for waiter in waiters:
                waiter.get_loop().call_soon_threadsafe(_wake, waiter)
        with self._offset_waiters_lock:
            pending = [c for waiting in self._offset_waiters.values() for _, c in waiting]
            self._offset_waiters.clear()
        for callback in pending:
            callback(EngineClosed())


def _wake_all(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        _wake(waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
