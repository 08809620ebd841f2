"""The embedded consumer: positions over partitions, records out.

``assign`` names partitions; ``subscribe`` names topics and follows their
partitions as they grow, or, with a ``group_id``, makes the consumer a
member of that consumer group, which assigns it its share of their
partitions (engine/client/group_member.py runs the membership; the consumer
commits its positions and starts from the group's committed offsets).
``poll`` fetches from every assigned partition in turn and decodes the
batches into records; with a timeout it waits for new data without polling
in a loop: the engine wakes it when a write becomes durable. Iteration
(sync and async) polls for ever, or until ``iter_timeout`` seconds pass
without a record, or, for a consumer bounded by ``until``, until every
partition reached its bound (``at_end``).

A partition's position is the offset after the last record handed to the
caller: poll hands out records, and iteration hands them out one at a
time, so records fetched but not yet handed out stay for the next poll.
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Literal, overload

from engine.authorization import AclOperation
from engine.client.access import Access
from engine.client.assignors import assignor
from engine.client.fetched_records import decode_fetched
from engine.client.group_member import GroupMember
from engine.client.membership import Assigned, ConsumerGroupMetadata, Revoke
from engine.client.offset_commits import OffsetCommits, Offsets
from engine.client.poll_steps import (
    API_TIMEOUT_S,
    RETRY_BACKOFF_S,
    Answered,
    AwaitCommit,
    AwaitData,
    FetchPlanned,
    Steps,
    run,
    run_async,
)
from engine.errors import (
    EngineClosed,
    EngineError,
    InvalidGroupId,
    OffsetOutOfRange,
    UnknownPartition,
    UnknownTopic,
    UnknownTopicId,
    UnstableOffsetCommit,
)
from engine.memory.vector import OffsetVector, Position
from engine.partition import OffsetAndTimestamp, Partition, PartitionFetch, Watched
from engine.topic_id import NO_TOPIC_ID
from engine.types import ConsumerRecord, OffsetAndMetadata, TopicPartition

if TYPE_CHECKING:
    from engine.client.host import ClientHost

log = logging.getLogger("tidelog.consumer")

EARLIEST = -2
LATEST = -1
RebalanceCallback = Callable[["Consumer", list[TopicPartition]], object]
_RESETS = {"earliest": EARLIEST, "latest": LATEST, "none": None}
_ISOLATION_LEVELS = ("read_uncommitted", "read_committed")


class NoOffsetForPartition(OffsetOutOfRange):
    """The position is out of range and auto_offset_reset is 'none'."""


class Consumer:
    """Reads records from the engine's partitions; use as a context manager."""

    def __init__(
        self,
        engine: ClientHost,
        *,
        auto_offset_reset: str = "latest",
        max_poll_records: int = 500,
        max_partition_fetch_bytes: int = 1024 * 1024,
        fetch_max_bytes: int = 50 * 1024 * 1024,
        iter_timeout: float | None = None,
        isolation_level: str = "read_uncommitted",
        group_id: str | None = None,
        group_instance_id: str | None = None,
        client_id: str = "tidelog-consumer",
        enable_auto_commit: bool = True,
        auto_commit_interval_ms: int = 5000,
        session_timeout_ms: int = 45_000,
        heartbeat_interval_ms: int = 3000,
        max_poll_interval_ms: int = 300_000,
        partition_assignment_strategy: Sequence[str] | str = ("range", "cooperative-sticky"),
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
        on_lost: RebalanceCallback | None = None,
        principal: str = "User:ANONYMOUS",
        until: Mapping[TopicPartition, Position | int] | None = None,
    ) -> None:
        if group_id is not None and not group_id:
            raise ValueError("group_id must not be empty")
        if group_instance_id is not None and (group_id is None or not group_instance_id):
            raise ValueError("group_instance_id needs a group_id and must not be empty")
        if not 0 < heartbeat_interval_ms < session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be positive and below session_timeout_ms")
        if auto_offset_reset not in _RESETS:
            raise ValueError(f"auto_offset_reset must be one of {', '.join(_RESETS)}")
        if isolation_level not in _ISOLATION_LEVELS:
            raise ValueError(f"isolation_level must be one of {', '.join(_ISOLATION_LEVELS)}")
        _check_max_records("max_poll_records", max_poll_records)
        self.principal = principal
        """Who reads: a masked topic's records come masked unless the catalog's
        ACLs let this principal see them in clear (docs/governance.md)."""
        self.isolation_level = isolation_level
        """read_committed: only records below the last stable offset, and none
        of aborted transactions (control records are never returned)."""
        self._read_committed = isolation_level == "read_committed"
        self._seen_end: dict[TopicPartition, int] = {}
        """read_committed: the high watermark of each partition's last fetch;
        a wait for data is a wait for the log to grow past it."""
        self._read_from: dict[TopicPartition, Partition] = {}
        """The partition each assigned one's last fetch read: a wait for
        data watches it, so a topic deleted (and perhaps created again
        under its name) since the read ends the wait, as a Fetch's does."""
        self._batch_bytes: dict[TopicPartition, int] = {}
        """The size of each assigned partition's batch as last seen at or
        before its position (FetchPlanned.seen; dropped when the position
        moves elsewhere): a poll starts no fetch whose batch the budget
        left cannot take."""
        self._batch_most = 0
        """The largest of the batches seen (FetchPlanned.guess): what a
        batch not seen yet is taken for when nothing else tells."""
        self._engine = engine
        self._access = Access(engine.authorizer, principal)
        """What the principal may read (docs/security.md)."""
        if group_id is not None:
            self._access.group(AclOperation.READ, group_id)  # joins, commits, offset lookups
        self._clock = engine.clock
        """Poll timeouts and the auto-commit interval run on it."""
        self.auto_offset_reset = auto_offset_reset
        self.max_poll_records = max_poll_records
        self.max_partition_fetch_bytes = max_partition_fetch_bytes
        self.fetch_max_bytes = fetch_max_bytes
        self.iter_timeout = iter_timeout
        self._positions: dict[TopicPartition, int | None] = {}
        self._paused: set[TopicPartition] = set()
        self._until = {
            TopicPartition(*tp): end.offset if isinstance(end, Position) else end
            for tp, end in (until or {}).items()
        }
        """Per bounded partition, the first offset not to hand out (an
        OffsetVector's positions): its records stop there (``at_end``)."""
        self._until_ids = (
            {t: until.topic_id(t) for t in until.topics if until.topic_id(t) != NO_TOPIC_ID}
            if isinstance(until, OffsetVector)
            else {}
        )
        """The topic ids the ``until`` vector's positions are places in: a
        topic deleted and created again under its name mid-read is another
        topic, whose records at the same offsets are not below the vector."""
        self._subscription: tuple[str, ...] = ()
        self._buffer: list[ConsumerRecord] = []
        self._next = 0
        self._rotation = -1
        self._closed = False
        self.group_id = group_id
        self.enable_auto_commit = enable_auto_commit
        """Commit the positions of handed-out records every
        ``auto_commit_interval_ms`` (in poll), before partitions are revoked,
        and on close."""
        self.auto_commit_interval_ms = auto_commit_interval_ms
        self.on_assign = on_assign
        """Called in poll with the partitions a rebalance added (eager: the
        whole new assignment), after every rebalance, even with none."""
        self.on_revoke = on_revoke
        """Called in poll with the partitions the consumer gives up, before
        they go (after their positions are committed, with auto-commit)."""
        self.on_lost = on_lost
        """Called instead of on_revoke (if set) for partitions the consumer
        lost: it was no longer in the group's generation, so another member
        may own them already and their positions are not committed."""
        self._next_auto_commit = self._clock.monotonic() + auto_commit_interval_ms / 1000
        self._unstable = False
        self._member: GroupMember | None = None
        if group_id is not None:
            if isinstance(partition_assignment_strategy, str):
                partition_assignment_strategy = partition_assignment_strategy.split(",")
            self._member = GroupMember(
                engine.groups,
                group_id,
                partition_counts=self._partition_counts,
                assignors=[assignor(n.strip()) for n in partition_assignment_strategy],
                group_instance_id=group_instance_id,
                client_id=client_id,
                session_timeout_ms=session_timeout_ms,
                rebalance_timeout_ms=max_poll_interval_ms,
                heartbeat_interval_ms=heartbeat_interval_ms,
                clock=engine.clock,
            )
        self._commits = (
            None
            if group_id is None
            else OffsetCommits(engine, group_id, self._member, self._read_committed)
        )
        if self._until:
            self.assign(self._until)

    # -- assignment ------------------------------------------------------------------

    def assign(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> None:
        """Reads exactly these partitions (replacing any subscription, and
        leaving the group if it was a member)."""
        wanted = [TopicPartition(*tp) for tp in partitions]
        self._authorize_reads(wanted)  # first: a refused topic's existence is not told
        for tp in wanted:
            # First: a bound naming the id of a topic deleted since is
            # UnknownTopicId, as its fetches say, also where a topic created
            # again under the name has fewer partitions (not UnknownPartition).
            self._check_topic_id(tp)
            self._engine.partition(tp.topic, tp.partition)  # raises if unknown
        if self._member is not None and self._member.subscribed:
            self._leave_group("the consumer assigned itself partitions")
        self._subscription = ()
        self._set_assignment(wanted)

    def subscribe(self, topics: Iterable[str]) -> None:
        """Reads every partition of these topics, including partitions added
        later; with a group_id, the partitions the group assigns (the
        consumer joins at its next poll)."""
        if self._member is not None:
            wanted = tuple(topics)
            if not wanted:
                self.unsubscribe()
                return
            if not self._member.subscribed:
                self._set_assignment([])  # a manual assignment ends
            self._member.subscribe(wanted)
            return
        self._subscription = tuple(topics)
        self._refresh_subscription()

    def unsubscribe(self) -> None:
        if self._member is not None and self._member.subscribed:
            self._leave_group("the consumer unsubscribed from all topics")
        self._subscription = ()
        self._set_assignment([])

    def assignment(self) -> set[TopicPartition]:
        return set(self._positions)

    def _refresh_subscription(self) -> None:
        if self._subscription:
            current = self._engine.topic_partitions(self._subscription)
            if set(current) != set(self._positions):
                self._set_assignment(current)

    def _authorize_reads(self, partitions: list[TopicPartition]) -> None:
        for topic in sorted({tp.topic for tp in partitions}):
            self._access.topic(AclOperation.READ, topic)

    def _set_assignment(self, partitions: list[TopicPartition]) -> None:
        self._authorize_reads(partitions)  # before anything changes
        self._positions = {tp: self._positions.get(tp) for tp in partitions}
        self._read_from = {tp: p for tp, p in self._read_from.items() if tp in self._positions}
        self._batch_bytes = {tp: n for tp, n in self._batch_bytes.items() if tp in self._positions}
        self._paused &= set(partitions)
        self._buffer = [
            r for r in self._buffer[self._next :] if (r.topic, r.partition) in self._positions
        ]
        self._next = 0

    # -- positions ---------------------------------------------------------------------

    def seek(self, partition: TopicPartition | tuple[str, int], offset: int) -> None:
        tp = self._assigned(partition)
        self._positions[tp] = offset
        # The batch seen was at the old position: the new one's is guessed.
        self._batch_bytes.pop(tp, None)
        self._drop_buffered(tp)

    def seek_to_beginning(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        for tp in self._targets(partitions):
            self.seek(tp, self._engine.list_offset(tp.topic, tp.partition, EARLIEST).offset)

    def seek_to_end(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        for tp in self._targets(partitions):
            self.seek(tp, self._latest(tp))

    def _latest(self, tp: TopicPartition) -> int:
        return self._engine.list_offset(
            tp.topic, tp.partition, LATEST, isolation_level=self.isolation_level
        ).offset

    def seek_to_timestamp(
        self, timestamp: int, *partitions: TopicPartition | tuple[str, int]
    ) -> None:
        """Moves to the first record whose timestamp is >= ``timestamp`` (to
        the end where there is none yet)."""
        for tp, found in self.offsets_for_times(
            dict.fromkeys(self._targets(partitions), timestamp)
        ).items():
            if found is None:
                self.seek(tp, self._latest(tp))
            else:
                self.seek(tp, found.offset)

    def offsets_for_times(
        self, timestamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        out: dict[TopicPartition, OffsetAndTimestamp | None] = {}
        for tp, timestamp in timestamps.items():
            found = self._engine.list_offset(
                tp.topic, tp.partition, timestamp, isolation_level=self.isolation_level
            )
            out[TopicPartition(*tp)] = found if found.offset >= 0 else None
        return out

    def position(self, partition: TopicPartition | tuple[str, int]) -> int:
        """The offset after the last record handed out (by poll or iteration)
        from ``partition``: where its next record comes from, and what a
        commit stores."""
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

    # -- pausing and bounds ----------------------------------------------------------

    def pause(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> None:
        """Stops handing out records of ``partitions`` (their positions stay)
        until they are resumed; as Kafka's consumer, a paused partition keeps
        its assignment and its group membership."""
        for tp in [self._assigned(p) for p in partitions]:
            # Fetched records not yet handed out are fetched again on resume.
            self._positions[tp] = self.position(tp)
            self._drop_buffered(tp)
            self._paused.add(tp)

    def resume(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> None:
        """Hands out records of ``partitions`` again, from their positions."""
        for tp in [self._assigned(p) for p in partitions]:
            self._paused.discard(tp)

    def paused(self) -> set[TopicPartition]:
        """The assigned partitions that are paused."""
        return set(self._paused)

    def at_end(self) -> bool:
        """Whether a bounded consumer (``until``) handed out every record
        below its bound of every assigned partition: a poll returns nothing
        more and iteration ends. Always False for an unbounded partition."""
        if not self._positions or self._next < len(self._buffer):
            return False
        for tp, position in self._positions.items():
            end = self._until.get(tp)
            if end is None or position is None or position < end:
                return False
        return True

    def _drop_buffered(self, tp: TopicPartition) -> None:
        self._buffer = [r for r in self._buffer[self._next :] if (r.topic, r.partition) != tp]
        self._next = 0

    def _resolve(self, tp: TopicPartition) -> int:
        position = self._positions[tp]
        if position is None and self.group_id is not None:
            position = self._committed_position(tp)
        if position is None:
            reset = _RESETS[self.auto_offset_reset]
            if reset is None:
                raise NoOffsetForPartition(tp.topic, tp.partition, -1, *self._engine.offsets(*tp))
            position = self._positions[tp] = self._engine.list_offset(
                tp.topic, tp.partition, reset, isolation_level=self.isolation_level
            ).offset
        return position

    # -- polling ------------------------------------------------------------------------

    def poll(self, timeout: float = 0.0, max_records: int | None = None) -> list[ConsumerRecord]:
        """Records from the assigned partitions; waits up to ``timeout`` seconds
        for new data if there is none."""
        return run(self._poll(timeout, max_records))

    async def poll_async(
        self, timeout: float = 0.0, max_records: int | None = None
    ) -> list[ConsumerRecord]:
        """Like poll, for asyncio: waits for data without blocking the loop."""
        return await run_async(self._poll(timeout, max_records))

    def _poll(self, timeout: float, max_records: int | None) -> Steps[list[ConsumerRecord]]:
        """poll and poll_async, as steps (engine/client/poll_steps.py)."""
        deadline = self._clock.monotonic() + timeout
        if max_records is not None:
            _check_max_records("max_records", max_records)
        limit = max_records or self.max_poll_records
        self._check_open()
        self._polled()
        while True:
            self._check_open()
            rebalance = yield from self._rebalance()
            if self._next >= len(self._buffer):
                yield from self._fill()
                # Closed while the fetches waited (by another task): what they
                # read is past the positions the close committed.
                self._check_open()
            if self._next < len(self._buffer):
                return self._take(limit)
            if self._until and self.at_end():
                return []
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                return []
            watched = None
            if self._positions or rebalance is None:
                watched = self._watched()
                if watched is None:
                    continue  # a partition is gone: the next read says why
            cap = self._wait_cap(remaining)
            yield AwaitData(self._engine, watched, rebalance, remaining, cap)

    def _watched(self) -> dict[int, Watched] | None:
        """What a wait for data watches: each partition as its last fetch
        read it, by stream id, past its position (read_committed: past the
        end that fetch saw, as data past the LSO is there but not yet
        readable). No lookup by name, as a Fetch's wait (docs/design/0090).
        Empty if every partition is paused, at its bound or waiting for a
        pending offset commit (the wait lasts its cap); None if one was not
        read and is unknown now: the next read, at once, says why."""
        watched: dict[int, Watched] = {}
        for tp, offset in self._resolved().items():
            # Paused partitions and those at their bound wait for nothing.
            if tp in self._paused or offset >= self._until.get(tp, offset + 1):
                continue
            leader = self._read_from.get(tp)
            if leader is None:
                try:
                    leader = self._engine.partition(*tp)
                except EngineError:
                    return None
            position = max(offset, self._seen_end.get(tp, 0)) if self._read_committed else offset
            watched[leader.stream_id] = (leader, position, offset)
        return watched

    def _resolved(self) -> dict[TopicPartition, int]:
        """The position of every assigned partition that has one: a partition
        whose committed offset a transaction has pending waits for it."""
        positions = {}
        self._unstable = False
        for tp in self._positions:
            try:
                positions[tp] = self._resolve(tp)
            except UnstableOffsetCommit:
                self._unstable = True
        return positions

    def _plan(self) -> list[tuple[TopicPartition, int]]:
        """Partitions to fetch, rotated so no partition starves the others."""
        self._refresh_subscription()
        order = list(self._positions)
        if order:
            self._rotation = (self._rotation + 1) % len(order)
            order = order[self._rotation :] + order[: self._rotation]
        self._buffer, self._next = [], 0
        positions = self._resolved()
        return [
            (tp, positions[tp])
            for tp in order
            if tp in positions
            and tp not in self._paused
            and positions[tp] < self._until.get(tp, positions[tp] + 1)
        ]

    def _fill(self) -> Steps[None]:
        """Fetches the planned partitions within the fetch_max_bytes budget
        (together on an event loop, each asking for its share of the budget:
        poll_steps.py's FetchPlanned); the answers are taken in plan order, so records stay
        in each partition's order and the budget holds as if they had been
        fetched in turn: only the first records taken may pass it, by one
        batch. A partition whose batch does not fit what is left is passed
        over, the later ones fetched (it keeps its position: a later poll
        reads it, at the latest when it is the plan's first). Partitions
        the budget left unfetched while some of it was counted for records
        not taken are fetched next, in the same poll."""
        budget = self.fetch_max_bytes
        taken = False  # whether some partition's records were taken yet
        planned = self._plan()
        while planned and budget > 0:
            pending = False  # whether a fetch of this round answered read_pending
            answers: list[Answered] = yield FetchPlanned(
                self._engine,
                planned,
                budget,
                self.max_partition_fetch_bytes,
                self.isolation_level,
                self._check_topic_id,
                self._batch_bytes,
                self._read_from,
                self._batch_most,
                not taken,
            )
            if not answers:  # no batch left to read fits what is left
                break
            if len(answers) == len(planned):
                planned = []
            else:
                fetched_now = {fetch.tp for fetch, _ in answers}
                planned = [(tp, at) for tp, at in planned if tp not in fetched_now]
            for fetch, answer in answers:
                tp = fetch.tp
                if self._moved(tp, fetch.position):
                    continue
                if isinstance(answer, OffsetOutOfRange):
                    self._check_topic_id(tp)
                    self._reset_out_of_range(tp)
                    continue
                if isinstance(answer, Exception):
                    raise answer
                leader, read = answer
                self._read_from[tp] = leader
                # Ids are never reused: the same id before and after the fetch
                # means it read the topic the vector was cut in.
                self._check_topic_id(tp)
                fetched = self._engine.masked_fetch(tp.topic, read, self.principal)
                size = sum(len(r) for r in fetched.records)
                if fetched.records:
                    # Dropped below, the batch at its position; taken, the
                    # last one read: the size its next fetch is counted at.
                    dropped = size > budget and taken
                    self._batch_bytes[tp] = len(fetched.records[0 if dropped else -1])
                    self._batch_most = max(self._batch_most, self._batch_bytes[tp])
                if size > budget and taken:
                    # A first batch larger than this partition's share, and
                    # not the poll's first records: Kafka's Fetch would not
                    # have read it (ReplicaManager.readFromLog's
                    # minOneMessage holds for the first partition only).
                    # Its position stays, for a later poll to fetch again.
                    continue
                taken = taken or size > 0
                budget -= size
                pending = pending or fetched.read_pending
                self._decode(tp, fetch.position, fetched)
            if pending:
                # A store read outlasted its fetch's wait and goes on, for the
                # next poll to take: its batch keeps its part of this poll's
                # budget (FetchPlanned._held), so no other partition's read
                # starts in its place, past the budget.
                break

    def _moved(self, tp: TopicPartition, fetched_at: int) -> bool:
        """Whether ``tp`` was sought, paused or unassigned (by another task
        on the event loop) while its fetch from ``fetched_at`` waited: its
        answer is stale, as Kafka's consumer finds a fetch whose offset is
        no longer the partition's position, and is dropped. (A position not
        stored, None, is still the one resolved for the fetch.)"""
        if tp not in self._positions or tp in self._paused:
            return True
        position = self._positions[tp]
        return position is not None and position != fetched_at

    def _check_topic_id(self, tp: TopicPartition) -> None:
        """UnknownTopicId if the bound's topic of ``tp`` was deleted."""
        wanted = self._until_ids.get(tp.topic)
        if wanted is None:
            return
        try:
            found = self._engine.partition(tp.topic, tp.partition).topic_id
        except UnknownTopic:
            found = None
        except UnknownPartition:
            leaders = self._engine.topic_leaders(tp.topic)
            if leaders and leaders[0].topic_id == wanted:
                # The bound's own topic never had it: as Kafka's
                # ReplicaManager answers a partition of a known topic id it
                # does not host, UNKNOWN_TOPIC_OR_PARTITION, not UNKNOWN_TOPIC_ID.
                raise
            found = None  # gone, or another created again with fewer partitions
        if found != wanted:
            raise UnknownTopicId(tp.topic, wanted)

    def _reset_out_of_range(self, tp: TopicPartition) -> None:
        # The end last seen may be another log's (a topic created again under
        # its name): waiting past it could outlast every poll.
        self._seen_end.pop(tp, None)
        self._batch_bytes.pop(tp, None)
        reset = _RESETS[self.auto_offset_reset]
        start, end = self._engine.offsets(*tp)
        if reset is None:
            position = self._positions[tp]
            offset = -1 if position is None else position
            raise NoOffsetForPartition(tp.topic, tp.partition, offset, start, end)
        self._positions[tp] = start if reset == EARLIEST else self._latest(tp)

    def _decode(self, tp: TopicPartition, position: int, fetched: PartitionFetch) -> None:
        if fetched.read_pending:
            # No records because the store's read outlasted the fetch's wait,
            # not because they are past the last stable offset: a wait for
            # the log to grow past this end would outlast the read. The
            # next fetch waits on that read.
            self._seen_end.pop(tp, None)
        else:
            self._seen_end[tp] = fetched.high_watermark
        decoded = decode_fetched(tp, position, fetched)
        end = self._until.get(tp)
        if end is not None and decoded.position > end:
            # Records are in offset order: keep those below the bound.
            keep = bisect.bisect_left(decoded.records, end, key=_offset)
            self._buffer += decoded.records[:keep]
            self._positions[tp] = end
            if decoded.error is not None and decoded.position < end:
                raise decoded.error
            return
        self._buffer += decoded.records
        self._positions[tp] = decoded.position
        if decoded.error is not None:
            raise decoded.error

    def _take(self, limit: int) -> list[ConsumerRecord]:
        taken = self._buffer[self._next : self._next + limit]
        self._next += len(taken)
        return taken

    def _check_open(self) -> None:
        if self._closed or self._engine.closed:
            raise EngineClosed

    def _wait_cap(self, remaining: float) -> float:
        """How long a wait for data may last before the consumer looks at its
        group again."""
        if self._unstable:
            return min(remaining, RETRY_BACKOFF_S)
        if self._member is not None and self._member.subscribed:
            # A heartbeat may learn of a rebalance, which waits for this
            # consumer to join again.
            return min(remaining, self._member.heartbeat_interval_ms / 1000)
        return remaining

    # -- consumer groups ----------------------------------------------------------------

    @overload
    def commit(
        self,
        offsets: Offsets | None = None,
        asynchronous: Literal[False] = False,
        timeout: float = API_TIMEOUT_S,
    ) -> dict[TopicPartition, OffsetAndMetadata]: ...

    @overload
    def commit(
        self, offsets: Offsets | None, asynchronous: Literal[True], timeout: float = API_TIMEOUT_S
    ) -> Future[dict[TopicPartition, OffsetAndMetadata]]: ...

    @overload
    def commit(
        self,
        offsets: Offsets | None = None,
        *,
        asynchronous: Literal[True],
        timeout: float = API_TIMEOUT_S,
    ) -> Future[dict[TopicPartition, OffsetAndMetadata]]: ...

    def commit(
        self,
        offsets: Offsets | None = None,
        asynchronous: bool = False,
        timeout: float = API_TIMEOUT_S,
    ) -> dict[TopicPartition, OffsetAndMetadata] | Future[dict[TopicPartition, OffsetAndMetadata]]:
        """Commits ``offsets`` (per partition, the offset to resume from: the
        one after the last record processed), by default the position of
        every assigned partition after the records poll has handed out.
        Returns the offsets once they are durable, or at once a future of
        them (``asynchronous=True``).

        Raises IllegalGeneration or UnknownMemberId when the consumer is no
        longer in the group's generation (the partitions were rebalanced:
        their new owner reads them from the last successful commit),
        RebalanceInProgress while a rebalance is completing (poll, then
        commit again), FencedInstanceId, InvalidGroupId without a group_id,
        EngineClosed (GroupCoordinatorClosed if the engine closed while the
        commit was on its way).

        A commit the coordinator answers NOT_COORDINATOR (the group's write
        failed) or COORDINATOR_NOT_AVAILABLE (the store refused it for
        room) is sent again, with the same offsets, after a backoff (100 ms
        doubling to 1 s) until ``timeout`` seconds have passed, as Kafka's
        commitSync retries; then, or when the consumer is closed meanwhile,
        NotCoordinator or CoordinatorNotAvailable is raised (retriable:
        commit again later). A commit not answered within ``timeout``
        raises TimeoutError, a ``timeout`` that is negative, NaN or infinite
        ValueError before anything is sent. ``asynchronous=True`` commits once, its future
        failing with any of these, as Kafka's commitAsync reports them to
        its callback.
        """
        commits = self._group()
        self._check_open()
        wanted = self._consumed() if offsets is None else offsets
        if not asynchronous:
            return run(commits.commit_steps(wanted, timeout))
        try:
            return commits.commit(wanted)
        except EngineError as error:
            future: Future[dict[TopicPartition, OffsetAndMetadata]] = Future()
            future.set_running_or_notify_cancel()
            future.set_exception(error)
            return future

    async def commit_async(
        self, offsets: Offsets | None = None, timeout: float = API_TIMEOUT_S
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """Like commit, for asyncio: awaits durability without blocking the
        loop, sending the commit again as commit does."""
        commits = self._group()
        self._check_open()
        wanted = self._consumed() if offsets is None else offsets
        return await run_async(commits.commit_steps(wanted, timeout))

    def committed(
        self, partitions: Iterable[TopicPartition | tuple[str, int]], timeout: float = API_TIMEOUT_S
    ) -> dict[TopicPartition, OffsetAndMetadata | None]:
        """The group's committed offset of each partition (None: none).
        Read committed, an offset a transaction has pending is waited for
        (up to ``timeout``, then UnstableOffsetCommit)."""
        return self._group().committed(partitions, timeout)

    def group_metadata(self) -> ConsumerGroupMetadata:
        """The consumer's group, generation and member id (generation -1
        and no member id outside a generation)."""
        if self._member is not None:
            return self._member.metadata()
        return ConsumerGroupMetadata(self._group().group_id, -1, "", None)

    def _group(self) -> OffsetCommits:
        if self._commits is None:
            raise InvalidGroupId(None)
        return self._commits

    def _partition_counts(self, topics: Iterable[str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for tp in self._engine.topic_partitions(sorted(set(topics))):
            counts[tp.topic] = counts.get(tp.topic, 0) + 1
        return counts

    def _committed_position(self, tp: TopicPartition) -> int | None:
        assert self._commits is not None
        found = self._commits.committed_offset(tp)
        if found is not None:
            self._positions[tp] = found
        return found

    def _consumed(
        self, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, int]:
        """Per assigned partition with a position: the offset after the
        records poll has handed out."""
        wanted = set(self._positions)
        if partitions is not None:
            wanted &= {TopicPartition(*tp) for tp in partitions}
        first: dict[tuple[str, int], int] = {}
        for record in itertools.islice(self._buffer, self._next, None):
            key = (record.topic, record.partition)
            if key in wanted and key not in first:
                first[key] = record.offset
                if len(first) == len(wanted):
                    break
        consumed = {}
        for tp in wanted:
            position = first.get(tp, self._positions[tp])
            if position is not None:
                consumed[tp] = position
        return consumed

    def _polled(self) -> None:
        """At the start of a poll: the records handed out so far count as consumed."""
        if self._member is not None:
            self._member.polled()
        now = self._clock.monotonic()
        if self.group_id is not None and self.enable_auto_commit and now >= self._next_auto_commit:
            self._next_auto_commit = now + self.auto_commit_interval_ms / 1000
            self._auto_commit()

    def _auto_commit(
        self, partitions: Iterable[TopicPartition] | None = None
    ) -> Future[dict[TopicPartition, OffsetAndMetadata]] | None:
        """Commits the consumed positions that changed since the last commit
        (failures are logged); None if there is nothing to commit."""
        if self._commits is None or not self.enable_auto_commit or self._engine.closed:
            return None
        return self._commits.auto_commit(self._consumed(partitions))

    def _rebalance(self) -> Steps[Future[None] | None]:
        """Does what the group asks of the consumer (revocations, a new
        assignment, their callbacks); the future of a rebalance still under
        way, if one is."""
        member = self._member
        while member is not None:
            step = member.step()
            if isinstance(step, Revoke):
                if not step.lost:
                    yield AwaitCommit(self._auto_commit(step.partitions))
                self._revoke(step.partitions, step.lost)
            elif isinstance(step, Assigned):
                if step.revoked:
                    yield AwaitCommit(self._auto_commit(step.revoked))
                self._assign_from_group(step)
            else:
                return None if step is None else step.done
        return None

    def _revoke(self, partitions: list[TopicPartition], lost: bool) -> None:
        callback = self.on_lost if lost and self.on_lost is not None else self.on_revoke
        try:
            if callback is not None:
                callback(self, partitions)
        finally:
            gone = set(partitions)
            self._set_assignment([tp for tp in self._positions if tp not in gone])
            if self._commits is not None:
                for tp in gone:
                    self._commits.last_committed.pop(tp, None)

    def _assign_from_group(self, step: Assigned) -> None:
        if step.revoked:
            self._revoke(step.revoked, False)
        # Kept partitions keep their positions; added ones start from the
        # group's committed offset (else auto_offset_reset) unless on_assign
        # seeks them.
        self._set_assignment(step.partitions)
        if self.on_assign is not None:
            self.on_assign(self, step.added)

    def _leave_group(self, reason: str) -> None:
        member = self._member
        assert member is not None
        try:
            release = member.release()
            if release is not None:
                if not release.lost:
                    AwaitCommit(self._auto_commit(release.partitions)).run()
                self._revoke(release.partitions, release.lost)
        finally:
            member.leave(reason)

    # -- iteration ---------------------------------------------------------------------

    def __iter__(self) -> Iterator[ConsumerRecord]:
        while not self._closed:
            # Hand fetched records out one at a time, so the position of a
            # loop that stops is right after the record it stopped at.
            while self._next < len(self._buffer):
                self._next += 1
                yield self._buffer[self._next - 1]
            if self._until and self.at_end():
                return
            records = self.poll(self._iter_wait(), max_records=1)
            if records:
                yield records[0]
            elif self.iter_timeout is not None:
                return

    async def __aiter__(self) -> AsyncIterator[ConsumerRecord]:
        while not self._closed:
            while self._next < len(self._buffer):
                self._next += 1
                yield self._buffer[self._next - 1]
            if self._until and self.at_end():
                return
            records = await self.poll_async(self._iter_wait(), max_records=1)
            if records:
                yield records[0]
            elif self.iter_timeout is not None:
                return

    def _iter_wait(self) -> float:
        return self.iter_timeout if self.iter_timeout is not None else 1.0

    def close(self) -> None:
        """Commits the consumed positions (with auto-commit), gives up the
        partitions (on_revoke) and leaves the group."""
        if self._closed:
            return
        if self._commits is not None:
            self._commits.close()  # a commit backing off on another thread or task stops
        try:
            if self._member is not None and self._member.subscribed:
                self._leave_group("the consumer is being closed")
            elif not self._engine.closed:
                AwaitCommit(self._auto_commit()).run()
        finally:
            self._closed = True
            if self._member is not None:
                self._member.close()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Consumer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


def _offset(record: ConsumerRecord) -> int:
    return record.offset


def _check_max_records(name: str, count: int) -> None:
    """ValueError unless ``count`` is a whole number of records, one or more:
    a poll taking none would never hand a record out, and a slice by a
    negative count hands out a wrong number (Kafka's max.poll.records is at
    least 1)."""
    if type(count) is not int or count < 1:
        raise ValueError(f"{name} must be an integer of at least 1, not {count!r}")
