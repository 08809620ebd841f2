"""Bounded replay: exactly the records below an offset vector (or between
two), in offset order per partition, and then an end.

A :class:`Replay` is a consumer bounded by the ``until`` vector: it starts
every partition at ``since`` (inclusive; offset 0 where ``since`` does not
name it), hands out each record below ``until`` once, and ends: iteration
(sync or async) stops and :meth:`Replay.at_end` is True. Read committed by
default: records of aborted transactions are left out, and transaction
markers are never records. Records retention removed are never skipped in
silence: a start below the partition's log start, or a log start that
passes the replay while it runs, raises :class:`RecordsRemoved`.

A topic the ``until`` or the ``since`` vector names by id that is deleted
before the replay opens, or while it checks the partitions' offsets
(perhaps created again under its name), raises UnknownTopicId; one named
by name, UnknownTopic. The offsets checked are the partition's looked up
at the start, never of a partition looked up again by name
(engine/memory/deleted_topics.py); a deletion while the replay runs is
found at its next fetch: the consumer checks the id of each topic of its
bound, ``until``'s, else ``since``'s, else (a topic neither names by id)
the one the name held as the replay began, which is UnknownTopic.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from engine.client.consumer import Consumer
from engine.client.host import ClientHost
from engine.errors import (
    EngineError,
    OffsetOutOfRange,
    UnknownPartition,
    UnknownTopic,
    UnknownTopicId,
)
from engine.memory.deleted_topics import deleted_under, gone
from engine.memory.snapshot import READ_COMMITTED, check_position
from engine.memory.vector import InvalidVector, OffsetVector, Position
from engine.protocol.kafka_code import KafkaCode
from engine.store_errors import store_errors
from engine.topic_id import NO_TOPIC_ID
from engine.types import ConsumerRecord, TopicPartition

DEFAULT_STALL_S = 30.0
"""How long a replay waits for a record it is owed (read committed: for an
open transaction below ``until`` to end) before ReplayStalled."""


class RecordsRemoved(OffsetOutOfRange):
    """Records the replay was to return are gone: retention or
    DeleteRecords moved the partition's log start past them."""


class ReplayStalled(EngineError):
    """No record came for ``timeout`` seconds while some were still owed
    (read committed: a transaction below the vector is still open)."""

    code = KafkaCode.REQUEST_TIMED_OUT

    def __init__(self, waiting: dict[TopicPartition, tuple[int, int]], timeout: float) -> None:
        shown = ", ".join(
            f"{tp.topic}-{tp.partition} at {p} of {u}" for tp, (p, u) in waiting.items()
        )
        super().__init__(f"no record in {timeout}s; still owed: {shown}")
        self.waiting = waiting
        """Per partition not at its end: (position, until offset)."""


class Replay:
    """The records below ``until`` from ``since``; iterate it (sync or
    async) once, or poll it; use as a context manager."""

    def __init__(
        self,
        host: ClientHost,
        until: OffsetVector,
        since: OffsetVector | None = None,
        *,
        isolation_level: str = READ_COMMITTED,
        timeout: float = DEFAULT_STALL_S,
        **consumer_options: Any,
    ) -> None:
        check_timeout(timeout)
        starts = {tp: 0 for tp in until}
        for tp, position in (since or OffsetVector()).items():
            if tp not in until:
                raise InvalidVector(f"{tp.topic}-{tp.partition} is in since but not in until")
            if position.offset > until[tp].offset:
                raise InvalidVector(
                    f"{tp.topic}-{tp.partition}: since {position.offset} is past "
                    f"until {until[tp].offset}"
                )
            starts[tp] = position.offset
        self.until = until
        self.since = since or OffsetVector()
        self.timeout = timeout
        self._by_name = {
            topic
            for topic in until.topics
            if until.topic_id(topic) == self.since.topic_id(topic) == NO_TOPIC_ID
        }
        """The topics neither vector names by id: the replay reads the topic
        each name held as it began, and a deletion of it is UnknownTopic."""
        # First: its assignment checks that the principal may read each
        # topic, so one that may not learns nothing of the logs below (as
        # Kafka answers TOPIC_AUTHORIZATION_FAILED before anything else).
        self._bound = _placed(until, self.since, _ids_now(host, self._by_name))
        with self._reads():
            self._consumer = Consumer(
                host,
                until=self._bound,
                isolation_level=isolation_level,
                auto_offset_reset="none",
                enable_auto_commit=False,
                iter_timeout=timeout,
                **consumer_options,
            )
        try:
            for tp, start in starts.items():
                self._check_start(host, tp, start)
                self._consumer.seek(tp, start)
        except BaseException:
            self._consumer.close()
            raise

    def _check_start(self, host: ClientHost, tp: TopicPartition, start: int) -> None:
        named = self.until.topic_id(tp.topic)
        if named == NO_TOPIC_ID:
            named = self.since.topic_id(tp.topic)
        try:
            leader = host.partition(tp.topic, tp.partition)
        except UnknownTopic as error:  # deleted before: the id the vector names is unknown
            raise gone(tp.topic, named) from error
        except UnknownPartition as error:
            if self._bound.topic_id(tp.topic) == NO_TOPIC_ID:
                raise
            # The consumer's assignment found the partition in the topic its
            # bound names: this is another, created again with fewer.
            raise gone(tp.topic, named) from error
        if tp.topic in self._by_name and self._bound.topic_id(tp.topic) != leader.topic_id:
            # Not the topic the name held as the replay began (none, or one deleted since).
            raise UnknownTopic(tp.topic)
        self.until.check_topic_id(tp.topic, leader.topic_id)  # a topic deleted since: no records
        self.since.check_topic_id(tp.topic, leader.topic_id)
        # The offsets of the partition checked, never of one looked up by
        # name again: a topic deleted and created again meanwhile is
        # another log, and is UnknownTopicId (a vector with ids) or
        # UnknownTopic here, as at the replay's fetches.
        with store_errors(), deleted_under([leader], {tp.topic: named}):
            log_start, high_watermark = leader.watermarks()
            end = self.until[tp].offset
            if end > high_watermark:
                raise OffsetOutOfRange(tp.topic, tp.partition, end, log_start, high_watermark)
            if start < log_start and start < end:
                raise RecordsRemoved(tp.topic, tp.partition, start, log_start, high_watermark)
            check_position(leader, self.until[tp])  # the records below it are still those named
            if tp in self.since:
                check_position(leader, self.since[tp])

    def at_end(self) -> bool:
        """Whether every record below ``until`` was handed out (at once for
        an empty ``until``: no record is below it)."""
        return not self.until or self._consumer.at_end()

    def position(self, partition: TopicPartition | tuple[str, int]) -> int:
        """The offset after the last record handed out from ``partition``."""
        return self._consumer.position(partition)

    def poll(self, max_records: int | None = None) -> list[ConsumerRecord]:
        """The next records ([] only at the end); ReplayStalled if none came
        within ``timeout`` while some are owed."""
        if self.at_end():
            return []
        with self._reads():
            records = self._consumer.poll(self.timeout, max_records)
        self._check_owed(records)
        return records

    async def poll_async(self, max_records: int | None = None) -> list[ConsumerRecord]:
        if self.at_end():
            return []
        with self._reads():
            records = await self._consumer.poll_async(self.timeout, max_records)
        self._check_owed(records)
        return records

    def __iter__(self) -> Iterator[ConsumerRecord]:
        # The consumer hands records out one at a time and ends at the bound,
        # or after ``timeout`` without a record (then some are still owed).
        if self.at_end():
            return
        with self._reads():
            yield from self._consumer
        self._check_owed([])

    async def __aiter__(self) -> AsyncIterator[ConsumerRecord]:
        if self.at_end():
            return
        with self._reads():
            async for record in self._consumer:
                yield record
        self._check_owed([])

    @contextmanager
    def _reads(self) -> Iterator[None]:
        """What the consumer's reads raise, as a replay says it: records
        gone from the log are RecordsRemoved, and a topic named by name
        whose id the consumer found changed (deleted, perhaps created
        again, since the replay began) is UnknownTopic."""
        try:
            yield
        except OffsetOutOfRange as error:
            raise _removed(error) from error
        except UnknownTopicId as error:
            if error.topic in self._by_name:
                raise UnknownTopic(error.topic) from error
            raise

    def _check_owed(self, records: list[ConsumerRecord]) -> None:
        if records or self.at_end():
            return
        waiting = {
            tp: (self._consumer.position(tp), position.offset)
            for tp, position in self.until.items()
            if self._consumer.position(tp) < position.offset
        }
        raise ReplayStalled(waiting, self.timeout)

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> Replay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Replay:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


def check_timeout(timeout: float) -> None:
    """ValueError unless ``timeout`` is a finite number of seconds, 0 or
    more: NaN would never run out, and infinity is no bound. A bool is an
    int to isinstance, but True as one second is a slip, not a bound."""
    number = isinstance(timeout, int | float) and not isinstance(timeout, bool)
    if not (number and math.isfinite(timeout) and timeout >= 0):
        raise ValueError(f"timeout must be a finite number of seconds, 0 or more, not {timeout!r}")


def _ids_now(host: ClientHost, topics: Iterable[str]) -> dict[str, bytes]:
    """The id of the topic each name holds now (none for a name that holds
    none: the consumer's assignment then says it is unknown, after its
    check that the principal may read it)."""
    ids = {}
    for topic in topics:
        leaders = host.topic_leaders(topic)
        if leaders:
            ids[topic] = leaders[0].topic_id
    return ids


def _placed(until: OffsetVector, since: OffsetVector, by_name: dict[str, bytes]) -> OffsetVector:
    """``until``'s positions, each topic's placed in the topic either vector
    names by id (``until``'s first; ``since`` holds none of another topic),
    or that neither does in the topic ``by_name`` found. The consumer
    checks a bound's id at every fetch, so a topic deleted and created
    again while the replay runs is UnknownTopicId there, however the
    vectors named it: never the new topic's records at the offsets the
    vectors name read as the old one's."""
    ids = by_name | {
        topic: since.topic_id(topic)
        for topic in since.topics
        if until.topic_id(topic) == NO_TOPIC_ID and since.topic_id(topic) != NO_TOPIC_ID
    }
    if not ids:
        return until
    return OffsetVector(
        {
            tp: Position(p.offset, p.leader_epoch, ids.get(tp.topic, p.topic_id))
            for tp, p in until.items()
        }
    )


def _removed(error: OffsetOutOfRange) -> RecordsRemoved:
    if isinstance(error, RecordsRemoved):
        return error
    return RecordsRemoved(
        error.topic, error.partition, error.offset, error.log_start_offset, error.high_watermark
    )
