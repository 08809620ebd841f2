"""The embedded consumer: positions over partitions, records out.

``assign`` names partitions; ``subscribe`` names topics and follows their
partitions as they grow (consumer groups, with committed offsets, are the
group coordinator's job). ``poll`` fetches from every assigned partition in
turn and decodes the batches into records; with a timeout it waits for new
data without polling in a loop: the engine wakes it when a write becomes
durable. Iteration (sync and async) polls for ever, or until
``iter_timeout`` seconds pass without a record.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING

import native
from engine.errors import EngineClosed, OffsetOutOfRange
from engine.partition import OffsetAndTimestamp, PartitionFetch
from engine.types import ConsumerRecord, TopicPartition

if TYPE_CHECKING:
    from engine.engine import Engine

EARLIEST = -2
LATEST = -1
_RESETS = {"earliest": EARLIEST, "latest": LATEST, "none": None}


class NoOffsetForPartition(OffsetOutOfRange):
    """The position is out of range and auto_offset_reset is 'none'."""


class Consumer:
    """Reads records from the engine's partitions; use as a context manager."""

    def __init__(
        self,
        engine: Engine,
        *,
        auto_offset_reset: str = "latest",
        max_poll_records: int = 500,
        max_partition_fetch_bytes: int = 1024 * 1024,
        fetch_max_bytes: int = 50 * 1024 * 1024,
        iter_timeout: float | None = None,
    ) -> None:
        if auto_offset_reset not in _RESETS:
            raise ValueError(f"auto_offset_reset must be one of {', '.join(_RESETS)}")
        self._engine = engine
        self.auto_offset_reset = auto_offset_reset
        self.max_poll_records = max_poll_records
        self.max_partition_fetch_bytes = max_partition_fetch_bytes
        self.fetch_max_bytes = fetch_max_bytes
        self.iter_timeout = iter_timeout
        self._positions: dict[TopicPartition, int | None] = {}
        self._subscription: tuple[str, ...] = ()
        self._buffer: list[ConsumerRecord] = []
        self._next = 0
        self._rotation = -1
        self._closed = False

    # -- assignment ------------------------------------------------------------------

    def assign(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> None:
        """Reads exactly these partitions (replacing any subscription)."""
        wanted = [TopicPartition(*tp) for tp in partitions]
        for tp in wanted:
            self._engine.partition(tp.topic, tp.partition)  # raises if unknown
        self._subscription = ()
        self._set_assignment(wanted)

    def subscribe(self, topics: Iterable[str]) -> None:
        """Reads every partition of these topics, including partitions added later."""
        self._subscription = tuple(topics)
        self._refresh_subscription()

    def unsubscribe(self) -> None:
        self._subscription = ()
        self._set_assignment([])

    def assignment(self) -> set[TopicPartition]:
        return set(self._positions)

    def _refresh_subscription(self) -> None:
        if self._subscription:
            current = self._engine.topic_partitions(self._subscription)
            if set(current) != set(self._positions):
                self._set_assignment(current)

    def _set_assignment(self, partitions: list[TopicPartition]) -> None:
        self._positions = {tp: self._positions.get(tp) for tp in partitions}
        self._buffer = [
            r for r in self._buffer[self._next :] if (r.topic, r.partition) in self._positions
        ]
        self._next = 0

    # -- positions ---------------------------------------------------------------------

    def seek(self, partition: TopicPartition | tuple[str, int], offset: int) -> None:
        tp = self._assigned(partition)
        self._positions[tp] = offset
        self._drop_buffered(tp)

    def seek_to_beginning(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        for tp in self._targets(partitions):
            self.seek(tp, self._engine.list_offset(tp.topic, tp.partition, EARLIEST).offset)

    def seek_to_end(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        for tp in self._targets(partitions):
            self.seek(tp, self._engine.list_offset(tp.topic, tp.partition, LATEST).offset)

    def seek_to_timestamp(
        self, timestamp: int, *partitions: TopicPartition | tuple[str, int]
    ) -> None:
        """Moves to the first record whose timestamp is >= ``timestamp`` (to
        the end where there is none yet)."""
        for tp, found in self.offsets_for_times(
            dict.fromkeys(self._targets(partitions), timestamp)
        ).items():
            if found is None:
                self.seek(tp, self._engine.list_offset(tp.topic, tp.partition, LATEST).offset)
            else:
                self.seek(tp, found.offset)

    def offsets_for_times(
        self, timestamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        out: dict[TopicPartition, OffsetAndTimestamp | None] = {}
        for tp, timestamp in timestamps.items():
            found = self._engine.list_offset(tp.topic, tp.partition, timestamp)
            out[TopicPartition(*tp)] = found if found.offset >= 0 else None
        return out

    def position(self, partition: TopicPartition | tuple[str, int]) -> int:
        tp = self._assigned(partition)
        buffered = [r.offset for r in self._buffer[self._next :] if (r.topic, r.partition) == tp]
        if buffered:
            return buffered[0]
        return self._resolve(tp)

    def _assigned(self, partition: TopicPartition | tuple[str, int]) -> TopicPartition:
        self._refresh_subscription()
        tp = TopicPartition(*partition)
        if tp not in self._positions:
            raise ValueError(f"{tp.topic}-{tp.partition} is not assigned to this consumer")
        return tp

    def _targets(
        self, partitions: tuple[TopicPartition | tuple[str, int], ...]
    ) -> list[TopicPartition]:
        self._refresh_subscription()
        return [TopicPartition(*tp) for tp in partitions] or list(self._positions)

    def _drop_buffered(self, tp: TopicPartition) -> None:
        self._buffer = [r for r in self._buffer[self._next :] if (r.topic, r.partition) != tp]
        self._next = 0

    def _resolve(self, tp: TopicPartition) -> int:
        position = self._positions[tp]
        if position is None:
            reset = _RESETS[self.auto_offset_reset]
            if reset is None:
                raise NoOffsetForPartition(tp.topic, tp.partition, -1, *self._engine.offsets(*tp))
            position = self._positions[tp] = self._engine.list_offset(
                tp.topic, tp.partition, reset
            ).offset
        return position

    # -- polling ------------------------------------------------------------------------

    def poll(self, timeout: float = 0.0, max_records: int | None = None) -> list[ConsumerRecord]:
        """Records from the assigned partitions; waits up to ``timeout`` seconds
        for new data if there is none."""
        deadline = time.monotonic() + timeout
        limit = max_records or self.max_poll_records
        while True:
            self._check_open()
            if self._next >= len(self._buffer):
                self._fill()
            if self._next < len(self._buffer):
                return self._take(limit)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self._engine.wait_for_data(self._wanted(), remaining)

    async def poll_async(
        self, timeout: float = 0.0, max_records: int | None = None
    ) -> list[ConsumerRecord]:
        """Like poll, for asyncio: waits for data without blocking the loop."""
        deadline = time.monotonic() + timeout
        limit = max_records or self.max_poll_records
        while True:
            self._check_open()
            if self._next >= len(self._buffer):
                await self._fill_async()
            if self._next < len(self._buffer):
                return self._take(limit)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            await self._engine.wait_for_data_async(self._wanted(), remaining)

    def _wanted(self) -> dict[TopicPartition, int]:
        return {tp: self._resolve(tp) for tp in self._positions}

    def _plan(self) -> list[tuple[TopicPartition, int]]:
        """Partitions to fetch, rotated so no partition starves the others."""
        self._refresh_subscription()
        order = list(self._positions)
        if order:
            self._rotation = (self._rotation + 1) % len(order)
            order = order[self._rotation :] + order[: self._rotation]
        self._buffer, self._next = [], 0
        return [(tp, self._resolve(tp)) for tp in order]

    def _fill(self) -> None:
        budget = self.fetch_max_bytes
        for tp, position in self._plan():
            if budget <= 0:
                break
            try:
                fetched = self._engine.fetch(
                    tp.topic, tp.partition, position, min(budget, self.max_partition_fetch_bytes)
                )
            except OffsetOutOfRange:
                self._reset_out_of_range(tp)
                continue
            budget -= sum(len(r) for r in fetched.records)
            self._decode(tp, position, fetched)

    async def _fill_async(self) -> None:
        """_fill's twin: object-storage reads run off the event loop."""
        budget = self.fetch_max_bytes
        for tp, position in self._plan():
            if budget <= 0:
                break
            try:
                fetched = await self._engine.fetch_async(
                    tp.topic, tp.partition, position, min(budget, self.max_partition_fetch_bytes)
                )
            except OffsetOutOfRange:
                self._reset_out_of_range(tp)
                continue
            budget -= sum(len(r) for r in fetched.records)
            self._decode(tp, position, fetched)

    def _reset_out_of_range(self, tp: TopicPartition) -> None:
        reset = _RESETS[self.auto_offset_reset]
        start, end = self._engine.offsets(*tp)
        if reset is None:
            position = self._positions[tp]
            offset = -1 if position is None else position
            raise NoOffsetForPartition(tp.topic, tp.partition, offset, start, end)
        self._positions[tp] = start if reset == EARLIEST else end

    def _decode(self, tp: TopicPartition, position: int, fetched: PartitionFetch) -> None:
        # native builds the ConsumerRecords itself (no Python step per record),
        # leaving out control batches and records below the position.
        prefix = (tp.topic, tp.partition)
        for payload in fetched.records:
            self._buffer += native.decode_records(
                payload,
                record_type=ConsumerRecord,
                prefix=prefix,
                min_offset=position,
                skip_control=True,
            )
        # Past the batches read, and past a gap the cleaner left at the end.
        self._positions[tp] = max(position, fetched.next_offset)

    def _take(self, limit: int) -> list[ConsumerRecord]:
        taken = self._buffer[self._next : self._next + limit]
        self._next += len(taken)
        return taken

    def _check_open(self) -> None:
        if self._closed or self._engine.closed:
            raise EngineClosed

    # -- iteration ---------------------------------------------------------------------

    def __iter__(self) -> Iterator[ConsumerRecord]:
        while not self._closed:
            records = self.poll(self.iter_timeout if self.iter_timeout is not None else 1.0)
            if not records and self.iter_timeout is not None:
                return
            yield from records

    async def __aiter__(self) -> AsyncIterator[ConsumerRecord]:
        while not self._closed:
            records = await self.poll_async(
                self.iter_timeout if self.iter_timeout is not None else 1.0
            )
            if not records and self.iter_timeout is not None:
                return
            for record in records:
                yield record

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Consumer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
