"""Incremental fetch sessions (KIP-227): the session cache, and what each
Fetch request means for it.

A client that opens a session sends its whole partition list once; after
that each request names only the partitions whose fetch position or limits
changed (and those to forget), and each response carries only partitions
with something new. With hundreds of partitions per consumer that saves
most of the request and response bytes, and the work of reading and writing
them on both sides.

The semantics are Kafka's (kafka.server.FetchSession, FetchSessionCache
and the FetchContext classes; FetchMetadata for ids and epochs):

- session id 0 with epoch 0 asks for a new session (a full fetch); epoch -1
  asks for none (a sessionless full fetch). Either, with a session id,
  first closes that session.
- any other epoch is an incremental fetch of that session: the request's
  partitions are added or updated, its forgotten ones removed, and the
  fetch reads every partition of the session. The epoch must be the one
  the last response of the session led to (FETCH_SESSION_ID_NOT_FOUND,
  INVALID_FETCH_SESSION_EPOCH); a session opened with topic ids (Fetch v13
  and later) is only used with them, and one opened with names only with
  names (FETCH_SESSION_TOPIC_ID_ERROR).
- an incremental response leaves out a partition with no records, the
  same high watermark and log start offset as last sent, and no error
  (CachedPartition.maybeUpdateResponseData). A partition that sent
  records moves to the end of the session's order, so partitions take
  turns when the response's byte limit cuts the list short.
- a session emptied by its forgotten partitions is closed, and its
  response carries session id 0.

The cache holds at most ``slots`` sessions (Kafka's
max.incremental.fetch.session.cache.slots). When it is full, a new session
may evict one that has not been used for ``eviction_ms`` (Kafka's
min.incremental.fetch.session.eviction.ms), else the smallest session
older than ``eviction_ms`` if the new one holds more partitions; a
privileged (follower's) session may also evict a consumer's at once. Else
the fetch is answered without a session and the client keeps sending full
fetches. Sessions are not persisted, and a connection's close does not end
them (as in Kafka: a client may reconnect and go on).

Memory is bounded by what exists, never by what a peer claims: a session
holds only partitions that exist when they are added (a fetch still
answers the others, with their error, but they are not kept), and at most
``max_partitions`` of them. A full fetch over more partitions than that
gets no session; an incremental one that would grow past it closes the
session and is answered as a sessionless fetch of all of its partitions,
which the client takes as the server closing the session. So the cache
never holds more than ``slots * max_partitions`` partitions.

This runs on the server's one event loop, so it needs no lock; a handler
may await between opening a context and answering it, which is why the
answer checks the epoch again (two requests of one session in flight).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from engine.protocol.kafka_code import KafkaCode

INVALID_SESSION_ID = 0
"""Session id of a fetch outside any session (FetchMetadata.INVALID_SESSION_ID)."""
INITIAL_EPOCH = 0
"""Epoch of a full fetch that asks for a new session."""
FINAL_EPOCH = -1
"""Epoch of a full fetch that asks for no session (and closes any named)."""
_MAX_EPOCH = 2**31 - 1
FIRST_TOPIC_ID_VERSION = 13
"""Fetch v13 names topics by id."""


def next_epoch(epoch: int) -> int:
    """The epoch after ``epoch`` (FetchMetadata.nextEpoch): past the int32
    maximum it wraps to 1, never to the epochs that mean a full fetch."""
    if epoch < 0:
        return FINAL_EPOCH
    if epoch == _MAX_EPOCH:
        return 1
    return epoch + 1


class FetchPartition(NamedTuple):
    """What a fetch asks of one partition."""

    topic: str | None
    """None for a topic id this server does not know."""
    topic_id: bytes
    """16 zero bytes before Fetch v13."""
    partition: int
    offset: int
    max_bytes: int
    current_leader_epoch: int


PartitionKey = tuple[bytes | str, int]
"""A partition in a session: (topic id, index) in a session that uses topic
ids, (topic name, index) in one that does not."""


def partition_key(partition: FetchPartition, uses_topic_ids: bool) -> PartitionKey:
    if uses_topic_ids:
        return partition.topic_id, partition.partition
    return partition.topic or "", partition.partition


class PartitionOutcome(NamedTuple):
    """What a fetch read of one partition, as far as the session cares."""

    records_bytes: int
    high_watermark: int
    log_start_offset: int
    error: int


class CachedPartition:
    """One partition of a session: its last request and what was last sent."""

    __slots__ = ("high_watermark", "log_start_offset", "request")

    def __init__(self, request: FetchPartition, high_watermark: int = -1, log_start: int = -1):
        self.request = request
        self.high_watermark = high_watermark
        self.log_start_offset = log_start

    def must_respond(self, outcome: PartitionOutcome) -> bool:
        """Whether an incremental response must carry this partition, and
        remembers what it carries (CachedPartition.maybeUpdateResponseData):
        records, a moved high watermark or log start offset, or an error,
        after which the high watermark is forgotten so that the partition is
        sent again once the error is gone."""
        respond = outcome.records_bytes > 0
        if self.high_watermark != outcome.high_watermark:
            respond = True
            self.high_watermark = outcome.high_watermark
        if self.log_start_offset != outcome.log_start_offset:
            respond = True
            self.log_start_offset = outcome.log_start_offset
        if outcome.error != KafkaCode.NONE:
            self.high_watermark = -1
            respond = True
        return respond


class FetchSession:
    """A session's partitions, in the order they are read, and its epoch."""

    __slots__ = (
        "cached_size",
        "created_ms",
        "epoch",
        "evictable_by_all",
        "evictable_by_privileged",
        "id",
        "last_used_ms",
        "partitions",
        "privileged",
        "uses_topic_ids",
    )

    def __init__(
        self,
        session_id: int,
        privileged: bool,
        uses_topic_ids: bool,
        partitions: dict[PartitionKey, CachedPartition],
        now_ms: int,
    ) -> None:
        self.id = session_id
        self.privileged = privileged
        self.uses_topic_ids = uses_topic_ids
        self.partitions = partitions
        self.created_ms = now_ms
        self.last_used_ms = now_ms
        self.epoch = next_epoch(INITIAL_EPOCH)
        self.cached_size = len(partitions)
        """The size the cache last saw, which orders eviction (as Kafka's
        EvictableKey, updated only when the session is used)."""
        self.evictable_by_all = False
        self.evictable_by_privileged = False

    def update(
        self,
        requested: Iterable[FetchPartition],
        forgotten: Iterable[PartitionKey],
        exists: Callable[[FetchPartition], bool],
    ) -> list[FetchPartition]:
        """Adds or updates the requested partitions and removes the forgotten
        ones (FetchSession.update); returns the requested partitions not
        kept because they do not exist, which the fetch still answers."""
        unkept: list[FetchPartition] = []
        for wanted in requested:
            key = partition_key(wanted, self.uses_topic_ids)
            cached = self.partitions.get(key)
            if cached is not None:
                cached.request = wanted
            elif exists(wanted):
                self.partitions[key] = CachedPartition(wanted)
            else:
                unkept.append(wanted)
        for key in forgotten:
            self.partitions.pop(key, None)
        return unkept


@dataclass
class FetchSessionStats:
    """Counters of what fetches did with sessions."""

    full: int = 0
    """Full fetches that asked for a session (epoch 0)."""
    sessionless: int = 0
    """Full fetches that asked for none (epoch -1, or a Fetch before v7)."""
    incremental: int = 0
    """Incremental fetches of a session the cache held."""
    session_errors: int = 0
    created: int = 0
    evicted: int = 0


# -- fetch contexts (Kafka's FetchContext classes) -----------------------------------------


class SessionAnswer(NamedTuple):
    """What the response says of the session, and which partitions it carries."""

    error: KafkaCode
    session_id: int
    keep: list[bool]
    """One flag per partition read, in the order of the context's partitions."""


class SessionErrorContext(NamedTuple):
    """A fetch refused for its session: no partition is read."""

    error: KafkaCode

    @property
    def partitions(self) -> Sequence[FetchPartition]:
        return ()

    def answer(self, outcomes: Sequence[PartitionOutcome], now_ms: int) -> SessionAnswer:
        return SessionAnswer(self.error, INVALID_SESSION_ID, [])


class SessionlessContext(NamedTuple):
    """A full fetch outside any session: every partition read is sent."""

    partitions: Sequence[FetchPartition]

    def answer(self, outcomes: Sequence[PartitionOutcome], now_ms: int) -> SessionAnswer:
        return SessionAnswer(KafkaCode.NONE, INVALID_SESSION_ID, [True] * len(outcomes))


class FullContext(NamedTuple):
    """A full fetch that asks for a new session: every partition read is
    sent, and the session is made from what was read if the cache has
    room for it."""

    cache: FetchSessionCache
    partitions: Sequence[FetchPartition]
    uses_topic_ids: bool
    privileged: bool
    exists: Callable[[FetchPartition], bool]

    def answer(self, outcomes: Sequence[PartitionOutcome], now_ms: int) -> SessionAnswer:
        everything = [True] * len(outcomes)
        if self.cache.slots <= 0:  # sessions are off: nothing to build
            return SessionAnswer(KafkaCode.NONE, INVALID_SESSION_ID, everything)
        kept: dict[PartitionKey, CachedPartition] = {}
        for wanted, outcome in zip(self.partitions, outcomes, strict=True):
            if self.exists(wanted):
                kept[partition_key(wanted, self.uses_topic_ids)] = CachedPartition(
                    wanted, outcome.high_watermark, outcome.log_start_offset
                )
        session_id = self.cache.maybe_create(now_ms, self.privileged, self.uses_topic_ids, kept)
        return SessionAnswer(KafkaCode.NONE, session_id, everything)


class IncrementalContext(NamedTuple):
    """An incremental fetch: the session's partitions are read (then those
    the request named but the session does not keep), and only those with
    something new are sent."""

    session: FetchSession
    partitions: Sequence[FetchPartition]
    request_epoch: int
    cached: int
    """How many of ``partitions``, from the first, are the session's."""
    states: Sequence[CachedPartition]
    """What was last sent of each of the session's partitions, in order."""

    def is_quiet(self, index: int, high_watermark: int, log_start_offset: int) -> bool:
        """Whether partition ``index``, with these offsets now, has nothing
        to send: its client is at the high watermark, which is the one last
        sent, as is the log start offset. Its read would find no records and
        the response would leave it out, so it need not be read."""
        if index >= self.cached:
            return False
        state = self.states[index]
        return (
            self.partitions[index].offset == high_watermark == state.high_watermark
            and log_start_offset == state.log_start_offset
        )

    def answer(self, outcomes: Sequence[PartitionOutcome], now_ms: int) -> SessionAnswer:
        session = self.session
        if session.epoch != next_epoch(self.request_epoch):
            # Another request of this session was answered meanwhile.
            return SessionAnswer(KafkaCode.INVALID_FETCH_SESSION_EPOCH, session.id, [])
        keep: list[bool] = []
        for index, (wanted, outcome) in enumerate(zip(self.partitions, outcomes, strict=True)):
            if index >= self.cached:
                keep.append(True)  # not kept by the session: always answered, with its error
                continue
            key = partition_key(wanted, session.uses_topic_ids)
            cached = session.partitions.get(key)
            if cached is None:  # closed and emptied meanwhile: answer what was read
                keep.append(True)
                continue
            keep.append(cached.must_respond(outcome))
            if outcome.records_bytes > 0:  # its turn is over: to the back of the line
                session.partitions[key] = session.partitions.pop(key)
        return SessionAnswer(KafkaCode.NONE, session.id, keep)


FetchContext = SessionErrorContext | SessionlessContext | FullContext | IncrementalContext


# -- the cache -------------------------------------------------------------------------------


class FetchSessionCache:
    """The server's fetch sessions (FetchSessionCache, one shard)."""

    def __init__(self, slots: int, eviction_ms: int, max_partitions: int) -> None:
        self.slots = slots
        self.eviction_ms = eviction_ms
        self.max_partitions = max_partitions
        self.sessions: dict[int, FetchSession] = {}
        self.stats = FetchSessionStats()

    @property
    def cached_partitions(self) -> int:
        """Partitions held over all sessions (Kafka's
        NumIncrementalFetchPartitionsCached)."""
        return sum(s.cached_size for s in self.sessions.values())

    def new_context(
        self,
        *,
        version: int,
        session_id: int,
        epoch: int,
        requested: Sequence[FetchPartition],
        forgotten: Sequence[PartitionKey],
        privileged: bool,
        exists: Callable[[FetchPartition], bool],
        now_ms: int,
    ) -> FetchContext:
        """What a Fetch request means for the sessions
        (FetchSessionCache's FetchManager.newContext)."""
        uses_topic_ids = version >= FIRST_TOPIC_ID_VERSION
        if epoch in {INITIAL_EPOCH, FINAL_EPOCH}:
            if session_id != INVALID_SESSION_ID:
                self.remove(session_id)
            if epoch == FINAL_EPOCH:
                self.stats.sessionless += 1
                return SessionlessContext(requested)
            self.stats.full += 1
            return FullContext(self, requested, uses_topic_ids, privileged, exists)
        session = self.sessions.get(session_id)
        if session is None:
            self.stats.session_errors += 1
            return SessionErrorContext(KafkaCode.FETCH_SESSION_ID_NOT_FOUND)
        if session.epoch != epoch:
            self.stats.session_errors += 1
            return SessionErrorContext(KafkaCode.INVALID_FETCH_SESSION_EPOCH)
        if session.uses_topic_ids != uses_topic_ids:
            self.stats.session_errors += 1
            return SessionErrorContext(KafkaCode.FETCH_SESSION_TOPIC_ID_ERROR)
        unkept = session.update(requested, forgotten, exists)
        if not session.partitions or len(session.partitions) > self.max_partitions:
            # Emptied, or grown past the cap: closed, and this fetch is
            # answered whole, as a sessionless one.
            self.remove(session_id)
            self.stats.sessionless += 1
            everything = [cached.request for cached in session.partitions.values()]
            return SessionlessContext(everything + unkept)
        self.stats.incremental += 1
        self.touch(session, now_ms)
        session.epoch = next_epoch(session.epoch)
        states = list(session.partitions.values())
        own = [cached.request for cached in states]
        return IncrementalContext(session, own + unkept, epoch, len(own), states)

    def maybe_create(
        self,
        now_ms: int,
        privileged: bool,
        uses_topic_ids: bool,
        partitions: dict[PartitionKey, CachedPartition],
    ) -> int:
        """A new session's id, or INVALID_SESSION_ID when there is no room
        (FetchSessionCache.maybeCreateSession)."""
        size = len(partitions)
        if self.slots <= 0 or size > self.max_partitions:
            return INVALID_SESSION_ID
        if len(self.sessions) >= self.slots and not self._try_evict(privileged, size, now_ms):
            return INVALID_SESSION_ID
        session = FetchSession(self._new_id(), privileged, uses_topic_ids, partitions, now_ms)
        self.sessions[session.id] = session
        self.touch(session, now_ms)
        self.stats.created += 1
        return session.id

    def remove(self, session_id: int) -> FetchSession | None:
        return self.sessions.pop(session_id, None)

    def touch(self, session: FetchSession, now_ms: int) -> None:
        """Marks a session used now, and re-judges whether it may be evicted
        (FetchSessionCache.touch): a consumer's session by a follower's at
        once, by anyone once it is older than the eviction time."""
        session.last_used_ms = now_ms
        session.cached_size = len(session.partitions)
        old = now_ms - session.created_ms > self.eviction_ms
        session.evictable_by_privileged = old or not session.privileged
        session.evictable_by_all = old

    def _try_evict(self, privileged: bool, size: int, now_ms: int) -> bool:
        """Makes room for a new session of ``size`` partitions, if one may
        go (FetchSessionCache.tryEvict): the least recently used, if stale;
        else the least valuable evictable one (a consumer's before a
        follower's, then the fewest partitions), if the new one is worth
        more. A scan, not Kafka's sorted trees: the cache holds at most
        ``slots`` sessions and is scanned only when it is full."""
        if not self.sessions:
            return False
        stalest = min(self.sessions.values(), key=lambda s: (s.last_used_ms, s.id))
        if now_ms - stalest.last_used_ms > self.eviction_ms:
            self._evict(stalest)
            return True
        candidates = [
            s
            for s in self.sessions.values()
            if (s.evictable_by_privileged if privileged else s.evictable_by_all)
        ]
        if not candidates:
            return False
        least = min(candidates, key=lambda s: (s.privileged, s.cached_size, s.id))
        if (privileged, size, 0) < (least.privileged, least.cached_size, least.id):
            return False
        self._evict(least)
        return True

    def _evict(self, session: FetchSession) -> None:
        self.remove(session.id)
        self.stats.evicted += 1

    def _new_id(self) -> int:
        """A random positive session id not in use (FetchSessionCache.newSessionId):
        hard to guess, so one client cannot easily fetch through another's session."""
        while True:
            session_id = 1 + secrets.randbelow(_MAX_EPOCH)
            if session_id not in self.sessions:
                return session_id
