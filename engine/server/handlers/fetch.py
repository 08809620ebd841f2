"""Fetch: stored batches go back as stored, by reference, never decoded;
only a masked topic read by a principal who may not see it in clear gets
its batches re-encoded with their records masked (masked_fetch.py).

Long-polling follows Kafka: the response waits until ``min_bytes`` are
available or ``max_wait`` passes. Waiting is a wake-up from the engine when
a partition's high watermark moves, never a polling loop; after a read that
found too little, the wait is for data beyond the high watermark it saw
(data it left for its max_bytes is no more than it can send: Kafka's
DelayedFetch counts such a partition as full). In an
incremental fetch session the wait is over every partition of the session,
so data on any of them ends it. The wait is on the partitions the read
saw: one deleted since (even if created again) or whose log start moved
past the offset read ends it, and the read after it answers as Kafka's
does (docs/design/0090).

Fetch sessions (KIP-227) are Kafka's: the request's session id and epoch
pick a context from the session cache (fetch_sessions.py), which says which
partitions to read and, once they are read, which of them the response
carries and under which session id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from functools import cache, partial
from typing import TYPE_CHECKING, Any, NamedTuple

from engine import clock
from engine.engine import READ_COMMITTED, READ_UNCOMMITTED, Engine
from engine.errors import EngineError, OffsetOutOfRange, error_code
from engine.gc_pause import CollectorPaused, PausedWhileRunning
from engine.internal_topics import internal_fetch, is_internal_topic
from engine.partition import Partition, PartitionFetch
from engine.protocol.apis import ApiKey, response_schema
from engine.protocol.encoder import EncodedItem, EncodedItems, Writer, item_encoder
from engine.protocol.kafka_code import KafkaCode
from engine.server import authorize
from engine.server.authorizer import AclOperation
from engine.server.context import Broker, RequestContext
from engine.server.fetch_entries import entry_fields, record_less_packer, records_entry
from engine.server.fetch_sessions import (
    FINAL_EPOCH,
    FIRST_TOPIC_ID_VERSION,
    INVALID_SESSION_ID,
    FetchPartition,
    IncrementalContext,
    PartitionKey,
    PartitionOutcome,
    SessionAnswer,
)
from engine.server.handlers.common import (
    UNKNOWN_ISOLATION_LEVEL,
    isolation_level,
    leader_or_error,
    millis,
    topic_names_by_id,
    uuid_bytes,
)
from engine.server.handlers.registry import handles
from engine.server.masked_fetch import masked, masking_for
from engine.server.shared_decoding import FETCH_BODIES
from engine.server.shared_reads import Marks, ReadKey, SharedRead, marks_of
from engine.store_errors import ReadOfDeleted, store_errors
from engine.topic_id import NO_TOPIC_ID
from native import BatchError
from s3stream import S3StreamError

if TYPE_CHECKING:
    # The kio request classes, for the handlers' annotations only: importing
    # every version's class costs the server's start hundreds of modules.
    from kio.schema.fetch.v13.request import FetchTopic as FetchTopicV13
    from kio.schema.fetch.v14.request import FetchTopic as FetchTopicV14
    from kio.schema.fetch.v15.request import FetchTopic as FetchTopicV15
    from kio.schema.fetch.v16.request import FetchTopic as FetchTopicV16
    from kio.schema.fetch.v17.request import FetchTopic as FetchTopicV17
    from typing_extensions import TypeIs

    from engine.server.handlers.requests import FetchRequest


_new = tuple.__new__
"""Makes a NamedTuple of every partition of a Fetch without its own
``__new__``'s Python call (tests/test_tuple_new_sites.py checks each
site gives every field)."""


class _Read(NamedTuple):
    wanted: FetchPartition
    fetched: PartitionFetch | None
    size: int
    seen_end: int
    """Where the data seen ends (the high watermark, sent or not): a long
    poll waits for more."""
    outcome: PartitionOutcome
    """Records size, high watermark, log start and error, as answered."""
    last_stable_offset: int
    shared: SharedRead[_Read] | None = None
    """The read as shared with other fetches of the same data (fan-out)."""
    leader: Partition | None = None
    """The partition read (None: none was, an internal topic or an error):
    a long poll waits on it, not on a partition looked up again by name."""


def answer_max_bytes(context: RequestContext, request: FetchRequest) -> int:
    """The most record data the answer carries (past it, only a first
    batch larger than this, as in Kafka): the request's max_bytes, at most
    the broker's fetch.max.bytes, as in Kafka's handleFetchRequest. The
    request's figure is a peer's claim, and the answer is built (and held,
    until the peer reads it) whatever the peer does next."""
    return min(getattr(request, "max_bytes", 0x7FFFFFFF), context.server.config.fetch_max_bytes)


WAITING_FETCH_BYTES = 8 * 1024
"""About what a Fetch holds while it waits, whatever its max_bytes: its
task, its decoded request and its wake-up registrations (some 6 KiB for a
one-partition Fetch, measured)."""
WAITING_PARTITION_BYTES = 160
"""About what each partition a waiting Fetch names holds, decoded (some
120 bytes, measured, from 28 on the wire)."""


def held_bytes(context: RequestContext, request: FetchRequest) -> int:
    """What a Fetch counts against its connection's budget until it is
    answered: its answer's max_bytes, and at least what it holds while it
    waits. Counted by max_bytes alone, a client pipelining long polls of
    max_bytes 1 (each 100 bytes on the wire, each holding some 6 KiB for
    up to its max_wait) held sixty times the connection's budget; Kafka
    reads no further request of a connection while one is being handled."""
    partitions = sum(len(topic.partitions) for topic in request.topics)
    waiting = WAITING_FETCH_BYTES + WAITING_PARTITION_BYTES * partitions
    return max(answer_max_bytes(context, request), waiting)


@handles(
    ApiKey.FETCH,
    4,
    17,
    notes={
        4: "read_committed, with the aborted transactions",
        5: "log start offset",
        7: "fetch sessions (KIP-227)",
        9: "current leader epoch (KIP-320)",
        11: "rack id (ignored: one broker)",
        12: "flexible encoding",
        13: "topics by id (and sessions by topic id)",
        15: "replica state",
        16: "node endpoints (KIP-951): a partition answered FENCED_LEADER_EPOCH names this"
        " broker and its leader epoch as its current leader, and the answer carries this"
        " broker's endpoint; NOT_LEADER_OR_FOLLOWER (this engine fenced or closed: the new"
        " leader is not known here) names none",
        17: "replica directory id (KIP-853): a follower's, ignored (no follower fetches here)",
    },
    decode=FETCH_BODIES.decode,  # consumers of the same data send the same bodies
    answer_bytes=held_bytes,
)
async def handle_fetch(context: RequestContext, request: FetchRequest) -> dict[str, Any]:
    isolation = isolation_level(request)
    if isolation is None:  # refused before any session is touched
        return _refused(context.version, request, UNKNOWN_ISOLATION_LEVEL)
    engine = context.engine
    by_id = topic_names_by_id(context) if context.version >= FIRST_TOPIC_ID_VERSION else None
    session_context = context.server.fetch_sessions.new_context(
        version=context.version,
        session_id=getattr(request, "session_id", INVALID_SESSION_ID),
        epoch=getattr(request, "session_epoch", FINAL_EPOCH),
        requested=_requested_partitions(request, by_id),
        forgotten=_forgotten_partitions(request, by_id is not None),
        # A follower's session is privileged in Kafka; this broker has none.
        privileged=False,
        exists=lambda wanted: _exists(engine, wanted),
        now_ms=_now_ms(),
    )
    wanted = list(session_context.partitions)
    if by_id is not None:  # a session's topic may have gone, or come back under a new id
        wanted = [w if by_id.get(w.topic_id) == w.topic else _renamed(w, by_id) for w in wanted]
    max_bytes = answer_max_bytes(context, request)
    quotas = context.server.quotas
    if quotas is not None and quotas.active:
        # Kafka's handleFetchRequest: no more than the consumer byte rate
        # allows in a window, so one answer alone never passes the quota
        # (the first batch still goes whole, as under any max_bytes).
        allowed = quotas.window_bytes(
            ApiKey.FETCH, context.identity.principal, context.header.client_id
        )
        if allowed is not None:
            max_bytes = min(max_bytes, allowed)
    min_bytes = min(max(request.min_bytes, 0), max_bytes)
    deadline = clock.monotonic() + millis(request.max_wait) / 1000
    committed = isolation == READ_COMMITTED
    quiet = session_context if isinstance(session_context, IncrementalContext) else None
    refused = authorize.refused_topics(
        context, AclOperation.READ, (w.topic for w in wanted if w.topic is not None)
    )
    while True:
        # Taken before the read: the wait below looks again only at the
        # partitions that grew after it (docs/design/0082).
        mark = engine.growth_mark()
        reads = await PausedWhileRunning(
            _read_all(context, wanted, max_bytes, committed, quiet, refused)
        )
        total = sum(r.size for r in reads)
        remaining = deadline - clock.monotonic()
        # A partition whose object read outlasted remote_fetch_max_wait_ms
        # ends the wait as an error does: Kafka's DelayedRemoteFetch answers
        # once it expires, never waiting for more data after it.
        failed = any(
            r.outcome.error != KafkaCode.NONE or (r.fetched is not None and r.fetched.read_pending)
            for r in reads
        )
        if total >= min_bytes or remaining <= 0 or failed or not wanted:
            break
        # The partitions read, not those a lookup by name finds now: one
        # deleted since ends the wait, as Kafka's DelayedFetch completes on a
        # partition it no longer knows (docs/design/0090).
        beyond = {
            r.leader.stream_id: (r.leader, r.seen_end, r.wanted.offset)
            for r in reads
            if r.leader is not None
        }
        if not beyond:  # internal topics only: nothing will ever arrive
            await asyncio.sleep(remaining)
            continue
        if not await engine.wait_for_reads_async(beyond, remaining, mark):
            reads = await PausedWhileRunning(
                _read_all(context, wanted, max_bytes, committed, quiet, refused)
            )
            break
    answer = session_context.answer([r.outcome for r in reads], _now_ms())
    leader = None
    if context.version >= FIRST_NODE_ENDPOINTS_VERSION:
        leader = _Leader(context.broker, context.engine.leader_epoch)
    with CollectorPaused():  # the answer's many objects: see PausedWhileRunning
        return _response(context.version, reads, committed, answer, leader)


def _refused(version: int, request: FetchRequest, code: KafkaCode) -> dict[str, Any]:
    """The whole request refused, as Kafka's FetchRequest.getErrorResponse
    answers it: the top-level code, and before v13 the same code in an
    entry for each partition named (older clients read only those)."""
    topics = []
    if version < FIRST_TOPIC_ID_VERSION:
        topics = [
            {
                "topic": getattr(topic, "topic", None),  # by name before v13
                "topic_id": bytes(16),
                "partitions": [
                    entry_fields(False, p.partition, code, -1, -1, -1) for p in topic.partitions
                ],
            }
            for topic in request.topics
        ]
    session_id = getattr(request, "session_id", INVALID_SESSION_ID)
    return {"throttle_time": 0, "error_code": code, "session_id": session_id, "responses": topics}


def _now_ms() -> int:
    return int(clock.monotonic() * 1000)


def _requested_partitions(
    request: FetchRequest, by_id: dict[bytes, str] | None
) -> list[FetchPartition]:
    by_topic_id = _topics_by_id()
    wanted: list[FetchPartition] = []
    topics_seen: set[tuple[bytes, str | None]] = set()
    named_twice = False
    for topic in request.topics:
        if _names_by_id(topic, by_topic_id):
            topic_id = uuid_bytes(topic.topic_id)
            name = by_id.get(topic_id) if by_id is not None else None
        else:
            name, topic_id = topic.topic, bytes(16)
        partitions = topic.partitions
        wanted.extend(
            _new(  # once a partition named: without FetchPartition.__new__'s call
                FetchPartition,
                (
                    name,
                    topic_id,
                    partition.partition,
                    partition.fetch_offset,
                    partition.partition_max_bytes,
                    getattr(partition, "current_leader_epoch", -1),
                ),
            )
            for partition in partitions
        )
        named_twice = (
            named_twice
            or (topic_id, name) in topics_seen
            or len({partition.partition for partition in partitions}) != len(partitions)
        )
        topics_seen.add((topic_id, name))
    if named_twice:
        # A partition named twice is read and answered once, where it was
        # first named, with what it was named with last: Kafka's
        # FetchRequest.fetchData is a LinkedHashMap by topic and partition.
        once = {(w.topic_id, w.topic, w.partition): w for w in wanted}
        wanted = list(once.values())
    return wanted


def _names_by_id(
    topic: object, by_topic_id: tuple[type, ...]
) -> TypeIs[FetchTopicV13 | FetchTopicV14 | FetchTopicV15 | FetchTopicV16 | FetchTopicV17]:
    return isinstance(topic, by_topic_id)


@cache
def _topics_by_id() -> tuple[type, ...]:
    """The request topic classes that name a topic by id (v13 on).
    Imported on the first Fetch, not at start (kio's classes of a version
    cost a server's start some milliseconds each), and once: an import
    statement run again still costs a lookup through the import machinery
    and an AttributeError formatted and dropped, five a Fetch, 4% of the
    event loop's instructions in a replay (docs/design/0085)."""
    from kio.schema.fetch.v13.request import FetchTopic as FetchTopicV13  # noqa: PLC0415
    from kio.schema.fetch.v14.request import FetchTopic as FetchTopicV14  # noqa: PLC0415
    from kio.schema.fetch.v15.request import FetchTopic as FetchTopicV15  # noqa: PLC0415
    from kio.schema.fetch.v16.request import FetchTopic as FetchTopicV16  # noqa: PLC0415
    from kio.schema.fetch.v17.request import FetchTopic as FetchTopicV17  # noqa: PLC0415

    return (FetchTopicV13, FetchTopicV14, FetchTopicV15, FetchTopicV16, FetchTopicV17)


def _forgotten_partitions(request: FetchRequest, uses_topic_ids: bool) -> list[PartitionKey]:
    forgotten: list[PartitionKey] = []
    for topic in getattr(request, "forgotten_topics_data", ()):
        key: bytes | str = uuid_bytes(topic.topic_id) if uses_topic_ids else topic.topic
        forgotten.extend((key, partition) for partition in topic.partitions)
    return forgotten


def _renamed(wanted: FetchPartition, by_id: dict[bytes, str]) -> FetchPartition:
    return wanted._replace(topic=by_id.get(wanted.topic_id))


def _exists(engine: Engine, wanted: FetchPartition) -> bool:
    """Whether a partition exists, so that a session may keep it."""
    if wanted.topic is None or not engine.has_topic(wanted.topic):
        return False
    try:
        _, count = engine.topic_shape(wanted.topic)
    except EngineError:  # deleted meanwhile
        return False
    return 0 <= wanted.partition < count


async def _read_all(
    context: RequestContext,
    wanted: list[FetchPartition],
    max_bytes: int,
    committed: bool,
    session: IncrementalContext | None,
    refused: set[str],
) -> list[_Read]:
    """Reads the partitions in order within the response's ``max_bytes``:
    each gets what the ones before it left, up to its own limit. As in Kafka,
    the first partition with data sends at least its first batch, however
    large; after that, a partition whose first batch is over its limit sends
    none (but still its offsets). In an incremental session a partition with
    nothing new is not read at all (see IncrementalContext.is_quiet): most
    of a many-partition consumer's partitions are quiet at any time.
    Partitions of ``refused`` topics (no READ) are answered
    TOPIC_AUTHORIZATION_FAILED."""
    reads: list[_Read] = []
    budget = max_bytes
    # A topic's run of partitions is looked at in one pass (_run_looks)
    # until the loop awaits: the looks stand only until then. After an
    # await a run is looked at in passes of 1, 2, 4... partitions, so that
    # a topic whose every read is awaited (a masked one, one read from
    # objects) is not looked at whole again after each: the looks made and
    # not used are at most twice the partitions read since the last await.
    looks: list[_Look | None] = []
    looks_start = looks_end = 0
    run_most = len(wanted)
    in_clear = False
    for index, w in enumerate(wanted):
        if refused and w.topic in refused:
            reads.append(_failed(w, KafkaCode.TOPIC_AUTHORIZATION_FAILED))
            continue
        # One look at the partition (its leader and offsets), which every
        # step below takes from here: a full fetch (librdkafka's every
        # fetch) names each of thousands of partitions.
        if index >= looks_end:
            looks_start = index
            looks, looks_end = _run_looks(context, wanted, index, run_most)
            run_most *= 2
            # Masked or not, asked once a run: it stands as the looks do.
            in_clear = w.topic is not None and masking_for(context, w.topic) is None
        look = looks[index - looks_start]
        if look is not None:
            if session is not None and session.is_quiet(
                index, look.high_watermark, look.log_start_offset
            ):
                reads.append(_quiet(w, look))
                continue
            if w.offset == look.high_watermark:  # caught up: answered without a coroutine
                reads.append(_caught_up(w, look))
                continue
            # A tail read (the log cache's) is answered without one too.
            read = _read_at_once(context, w, max(budget, 1), committed, look, in_clear)
        else:
            read = None
        if read is None:
            read = _read(context, w, max(budget, 1), committed, look)
        if not isinstance(read, _Read):  # an object read (or a masked one)
            read = await read
            looks_end = index + 1  # looked at again after the await
            run_most = 1
        limit = min(w.max_bytes, budget)
        if read.fetched is not None and read.size > limit and budget < max_bytes:
            unsent = read.fetched._replace(records=[], next_offset=w.offset)
            outcome = read.outcome._replace(records_bytes=0)
            read = read._replace(fetched=unsent, size=0, outcome=outcome, shared=None)
        budget -= read.size
        reads.append(read)
    return reads


class _Look(NamedTuple):
    """A partition as one look found it: its leader and watermarks."""

    leader: Partition
    log_start_offset: int
    high_watermark: int

    def last_stable_offset(self) -> int:
        """At the look's watermarks: asked only of a partition answered
        (a quiet one in a session is not)."""
        return self.leader.stable_offset(self.log_start_offset, self.high_watermark)


def _look(context: RequestContext, wanted: FetchPartition) -> _Look | None:
    """The partition's leader and watermarks, read together (one look at
    the store, not one per offset, and one lookup of the leader); None if _read
    has an answer of its own to give: an unknown topic, an internal one,
    another leader epoch, an error. The look stands until the handler's
    next await: each step of the partition's read takes it from here.
    The checks are _run_looks' (_looked_topic, _current_leaders)."""
    leaders = _looked_topic(context, wanted.topic)
    if not leaders:
        return None
    (leader,) = _current_leaders((wanted,), leaders, context.engine.leader_epoch)
    if leader is None:
        return None
    try:
        log_start, high_watermark = leader.watermarks()
    except (EngineError, S3StreamError):
        return None  # the read path answers its error code
    return _Look(leader, log_start, high_watermark)


def _looked_topic(context: RequestContext, topic: str | None) -> Sequence[Partition] | None:
    """The topic's partitions by index, if its partitions are looked at
    (else None, and _read answers each): not an unknown topic (a session's
    topic id no longer known, or a name never created), not an internal
    topic (no log), not while the engine is closed. Asked once a run."""
    engine = context.engine
    if topic is None or engine.closed or is_internal_topic(topic):
        return None
    return engine.topic_leaders(topic)


def _current_leaders(
    run: Sequence[FetchPartition], leaders: Sequence[Partition], ours: int
) -> list[Partition | None]:
    """The leader of each partition of ``run`` (a topic's, all named
    alike: by name, or by the same topic id) among the topic's
    ``leaders``, where the request may read it as named; else None, and
    _read answers why. The one place of a look's checks of a partition,
    for _look and _run_looks alike: its leader epoch is this engine's
    (``ours``) or unknown (KIP-320, as leader_epoch_error), the topic has
    the partition, and a Fetch by topic id names the topic's id
    (_another_topic). A loop over the run, not a call a partition: a
    Fetch names thousands (such calls cost its looks 40% more)."""
    count = len(leaders)
    topic_id = run[0].topic_id
    by_id = topic_id != NO_TOPIC_ID  # _another_topic's rule, its id compared once a run
    found: list[Partition | None] = []
    for w in run:
        index, epoch = w.partition, w.current_leader_epoch
        if (0 <= epoch != ours) or not 0 <= index < count:
            found.append(None)
            continue
        leader = leaders[index]
        found.append(None if by_id and topic_id != leader.topic_id else leader)
    return found


STREAMS_PER_HOLD = 1024
"""The most streams whose offsets a Fetch reads under one hold of the
store's lock: 10,000 at once held it some 1.7 ms (measured, with the
lists made), which the WAL's and the uploader's threads would wait out."""


def _run_looks(
    context: RequestContext, wanted: list[FetchPartition], start: int, most: int
) -> tuple[list[_Look | None], int]:
    """_look of each partition of the run of ``wanted`` from ``start`` that
    names the same topic (``most`` partitions of it at the most), and
    where the run ends: the topic's checks and
    its partition table once, not once a partition, and every partition's
    watermarks under one hold of the store's lock. The same looks as
    _look's, made one at a time, by the same checks (_looked_topic,
    _current_leaders): a partition _look finds none for, this finds none
    for either."""
    first = wanted[start]
    topic, topic_id = first.topic, first.topic_id
    end = start + 1
    count = min(len(wanted), start + most)
    while end < count and wanted[end].topic == topic and wanted[end].topic_id == topic_id:
        end += 1
    leaders = _looked_topic(context, topic)
    if not leaders:
        return [None] * (end - start), end
    found = _current_leaders(wanted[start:end], leaders, context.engine.leader_epoch)
    store = leaders[0].store  # every partition of an engine is of its one store
    streams = [p.stream_id for p in found if p is not None]
    read: list[tuple[int, int]] = []
    try:
        for at in range(0, len(streams), STREAMS_PER_HOLD):
            read += store.offsets_many(streams[at : at + STREAMS_PER_HOLD])
    except (EngineError, S3StreamError):  # one gone meanwhile: a look of each
        return [_look(context, w) for w in wanted[start:end]], end
    marks = iter(read)
    looks: list[_Look | None] = []
    for partition in found:
        if partition is None:
            looks.append(None)
            continue
        log_start, high_watermark = next(marks)
        looks.append(_new(_Look, (partition, log_start, high_watermark)))
    return looks, end


def _another_topic(wanted: FetchPartition, leader: Partition) -> bool:
    """Whether a partition fetched by topic id (v13+) is now of another
    topic of the same name: the topic was deleted and created again since
    the request's ids were resolved (a long poll's wait). Kafka's
    readFromLog answers it INCONSISTENT_TOPIC_ID; a fetch by name (its id
    all zeros) reads whatever topic has the name."""
    return wanted.topic_id not in (leader.topic_id, NO_TOPIC_ID)


def _quiet(wanted: FetchPartition, look: _Look) -> _Read:
    """The read of a session partition with nothing new (see
    IncrementalContext.is_quiet), without reading it."""
    outcome = PartitionOutcome(0, look.high_watermark, look.log_start_offset, KafkaCode.NONE)
    return _Read(wanted, None, 0, wanted.offset, outcome, -1, None, look.leader)


async def _read(
    context: RequestContext,
    wanted: FetchPartition,
    budget: int,
    committed: bool,
    look: _Look | None,
) -> _Read:
    """``look``: the partition as _look found it since the handler's last
    await (None: the checks below find why there is none)."""
    if wanted.topic is None:
        return _failed(wanted, KafkaCode.UNKNOWN_TOPIC_ID)
    leader = None if look is None else look.leader
    if look is None:  # a look passed these checks
        refusal, leader = leader_or_error(
            context, wanted.topic, wanted.partition, wanted.current_leader_epoch
        )
        # Kafka's readFromLog: the partition, then its topic id, then the epoch.
        if leader is not None and _another_topic(wanted, leader):
            return _failed(wanted, KafkaCode.INCONSISTENT_TOPIC_ID)
        if refusal != KafkaCode.NONE:
            return _failed(wanted, refusal)
    if is_internal_topic(wanted.topic):
        code, empty = internal_fetch(wanted.partition, wanted.offset, committed)
        offsets = -1 if empty is None else 0  # high watermark and log start of an empty log
        outcome = PartitionOutcome(0, offsets, offsets, code)
        found = empty if code == KafkaCode.NONE else None
        return _Read(wanted, found, 0, wanted.offset, outcome, offsets)
    limit = max(min(wanted.max_bytes, budget), 1)
    try:
        masking = masking_for(context, wanted.topic)
        if masking is None and not context.engine.closed:  # the same bytes for everyone
            if look is not None:
                leader = look.leader
                marks = Marks(look.high_watermark, look.log_start_offset, look.last_stable_offset())
            else:
                leader = context.engine.partition(wanted.topic, wanted.partition)
                with store_errors(), ReadOfDeleted(leader):
                    marks = marks_of(leader)
            read = _read_in_clear(context, wanted, wanted.topic, limit, committed, leader, marks)
            return read if isinstance(read, _Read) else await read
        fetched = await _fetch(context, wanted, wanted.topic, limit, committed, look)
        if masking is not None:  # else the stored bytes, as they are
            fetched = await masked(fetched, masking, limit)
    except EngineError as error:
        return _read_failed(wanted, error)
    except BatchError:  # a batch that cannot be masked is not sent in clear either
        return _failed(wanted, KafkaCode.CORRUPT_MESSAGE)
    return _fetched(wanted, fetched, leader)


def _read_at_once(
    context: RequestContext,
    wanted: FetchPartition,
    budget: int,
    committed: bool,
    look: _Look,
    in_clear: bool,
) -> _Read | Coroutine[Any, Any, _Read] | None:
    """The read of a partition ``look`` found, of the stored bytes as they
    are (_read_in_clear): a _Read if it needs no wait, else the object
    read to await. None: _read makes it (a masked topic, a closed engine).
    What _read answers, without its coroutine chain: a Fetch of thousands
    of tailing partitions made one per partition, seven frames deep, to
    wait on nothing. ``in_clear``: the topic is not masked for the
    request's principal (masking_for, asked once for the topic's run of
    partitions)."""
    topic = wanted.topic
    if topic is None or context.engine.closed or not in_clear:
        return None
    limit = max(min(wanted.max_bytes, budget), 1)
    marks = Marks(look.high_watermark, look.log_start_offset, look.last_stable_offset())
    return _read_in_clear(context, wanted, topic, limit, committed, look.leader, marks)


def _read_in_clear(
    context: RequestContext,
    wanted: FetchPartition,
    topic: str,
    limit: int,
    committed: bool,
    leader: Partition,
    marks: Marks,
) -> _Read | Coroutine[Any, Any, _Read]:
    """The read of stored bytes as they are, each step asked once: an
    earlier fetch's of the same data if the partition has not changed
    since (shared_reads.py), else the log cache's (or none, past the end)
    made at once, else the object read, to await, that later fetches may
    share. ``marks``: the partition's at the caller's look at it."""
    key = ReadKey(topic, wanted.partition, wanted.offset, limit, committed)
    shared = context.server.shared_reads.get(key, leader, marks)
    if shared is not None:
        return _from_shared(wanted, leader, shared)
    try:
        fetched = context.engine.fetch_leader_hot(
            leader, wanted.offset, limit, committed, marks.last_stable_offset
        )
    except EngineError as error:
        return _read_failed(wanted, error)
    if fetched is None:
        return _object_read(context, wanted, key, marks, leader)
    return _shared(context, key, marks, _fetched(wanted, fetched, leader))


async def _object_read(
    context: RequestContext, wanted: FetchPartition, key: ReadKey, marks: Marks, leader: Partition
) -> _Read:
    """The read _read_in_clear found needs an object: awaited from the
    store's object read on (``cold``), the shared reads and the log cache
    having been asked already."""
    try:
        fetched = await context.engine.fetch_leader_async(
            leader, wanted.offset, key.limit, key.committed, marks.last_stable_offset, cold=True
        )
    except EngineError as error:
        return _read_failed(wanted, error)
    return _shared(context, key, marks, _fetched(wanted, fetched, leader))


def _from_shared(wanted: FetchPartition, leader: Partition, shared: SharedRead[_Read]) -> _Read:
    leader.bytes_out += shared.size  # as the read would have counted it
    read: _Read = shared.read
    # _replace(wanted=, shared=) without its Python calls, once a partition
    return _new(
        _Read,
        (
            wanted,
            read.fetched,
            read.size,
            read.seen_end,
            read.outcome,
            read.last_stable_offset,
            shared,
            read.leader,
        ),
    )


def _shared(context: RequestContext, key: ReadKey, marks: Marks, read: _Read) -> _Read:
    """``read``, kept for later fetches of the same data if it has any."""
    if read.size == 0 or read.leader is None:
        return read
    kept = context.server.shared_reads.put(key, read.leader, marks, read, read.size)
    return read if kept is None else read._replace(shared=kept)


async def _fetch(
    context: RequestContext,
    wanted: FetchPartition,
    topic: str,
    limit: int,
    committed: bool,
    look: _Look | None,
) -> PartitionFetch:
    """The store's read of the partition to be masked (or of a closed
    engine's, which answers its error): of the leader the look found, at
    the last stable offset at the look's watermarks, without another
    lookup of either. The same answer as a read of its own: that offset is
    read before the data either way, and only grows."""
    if look is not None:
        return await context.engine.fetch_leader_async(
            look.leader, wanted.offset, limit, committed, look.last_stable_offset()
        )
    return await context.engine.fetch_async(
        topic,
        wanted.partition,
        wanted.offset,
        limit,
        READ_COMMITTED if committed else READ_UNCOMMITTED,
    )


def _fetched(wanted: FetchPartition, fetched: PartitionFetch, leader: Partition | None) -> _Read:
    size = sum(map(len, fetched.records))
    # A long poll waits for data past the high watermark, not past what was
    # sent: data past the last stable offset, or past a read cut at its
    # max_bytes, is there already, so a wait for it would end at once and
    # the same read be made again until max_wait, never yielding the loop.
    # Such a partition cannot send more until new data comes (Kafka's
    # DelayedFetch counts it as full).
    seen_end = max(fetched.high_watermark, wanted.offset)
    outcome = PartitionOutcome(
        size, fetched.high_watermark, fetched.log_start_offset, KafkaCode.NONE
    )
    return _Read(wanted, fetched, size, seen_end, outcome, fetched.last_stable_offset, None, leader)


def _caught_up(wanted: FetchPartition, look: _Look) -> _Read:
    """The read of a partition fetched at its high watermark, answered from
    the look at its offsets without a read of the store. A caught-up
    consumer asks this of most of its partitions at any time, and the
    read's whole path (the store's lock twice, a coroutine chain) costs half
    as much again, to find nothing. What the read would answer: no records,
    the watermarks, and a last stable offset of at most the high watermark."""
    leader, log_start, high_watermark = look
    stable = min(leader.stable_offset(log_start, high_watermark), high_watermark)
    outcome = _new(PartitionOutcome, (0, high_watermark, log_start, _NO_ERROR))
    return _new(_Read, (wanted, None, 0, high_watermark, outcome, stable, None, leader))


_NO_ERROR = KafkaCode.NONE


def _failed(
    wanted: FetchPartition, error: int, high_watermark: int = -1, log_start: int = -1
) -> _Read:
    outcome = PartitionOutcome(0, high_watermark, log_start, error)
    return _Read(wanted, None, 0, wanted.offset, outcome, -1)


def _read_failed(wanted: FetchPartition, error: EngineError) -> _Read:
    """The answer to a read that raised ``error``. Past the log's range,
    with the log start and high watermark of the partition read, as the
    read found them (the engine's OffsetOutOfRange carries them), where
    Kafka answers -1 for both (ReplicaManager.handleOffsetOutOfRangeError;
    docs/server.md says why tidelog differs). Never a partition looked up
    again by name: one of a topic deleted and created again since is
    another log, and a Fetch by topic id named the old one."""
    if isinstance(error, OffsetOutOfRange):
        return _failed(
            wanted, KafkaCode.OFFSET_OUT_OF_RANGE, error.high_watermark, error.log_start_offset
        )
    return _failed(wanted, error_code(error))


FIRST_NODE_ENDPOINTS_VERSION = 16
"""Fetch v16 names a partition's current leader and its endpoint where an
error says the client asked the wrong leader or epoch (KIP-951)."""


class _Leader(NamedTuple):
    """This broker as a Fetch v16 answer names it: as advertised on the
    request's listener, and its leader epoch."""

    broker: Broker
    epoch: int


def _response(
    version: int,
    reads: list[_Read],
    committed: bool,
    answer: SessionAnswer,
    leader: _Leader | None,
) -> dict[str, Any]:
    """The answer; ``leader`` from v16 (None before), for the partitions
    answered FENCED_LEADER_EPOCH: Kafka's handleFetchRequest names the
    current leader for those and for NOT_LEADER_OR_FOLLOWER, and this
    broker is the leader only in the first case."""
    named_leader = False
    if answer.error != KafkaCode.NONE:
        # The session refused the answer (another of its requests was
        # answered meanwhile): no partition goes out, as Kafka's
        # IncrementalFetchContext answers INVALID_FETCH_SESSION_EPOCH then.
        reads = []
    # A record-less entry is packed to bytes here; a topic's entries all
    # such (a caught-up topic) go out as one buffer (_topic_entries).
    record_less = record_less_packer(version, committed)
    topics: dict[tuple[str | None, bytes], list[Any]] = {}
    for read, keep in zip(reads, answer.keep, strict=True):
        if not keep:
            continue
        wanted, outcome = read.wanted, read.outcome
        entry: Any
        if read.shared is not None:  # encoded once for every fetch that shares it
            entry = read.shared.encoded(version, partial(_encoded_entry, read, committed, version))
        elif leader is not None and outcome.error == KafkaCode.FENCED_LEADER_EPOCH:
            entry = _partition_entry(read, committed)
            entry["current_leader"] = {
                "leader_id": leader.broker.node_id,
                "leader_epoch": leader.epoch,
            }
            named_leader = True
        elif read.fetched is None:  # most entries of a many-partition fetch: from a template
            entry = record_less(
                wanted.partition,
                outcome.error,
                outcome.high_watermark,
                read.last_stable_offset,
                outcome.log_start_offset,
            )
        else:
            entry = _encoded_entry(read, committed, version)
        topics.setdefault((wanted.topic, wanted.topic_id), []).append(entry)
    return {
        "throttle_time": 0,
        "error_code": answer.error,
        "session_id": answer.session_id,
        "responses": [
            {"topic": name, "topic_id": topic_id, "partitions": _topic_entries(partitions)}
            for (name, topic_id), partitions in topics.items()
        ],
        "node_endpoints": [leader.broker.describe()] if leader is not None and named_leader else [],
    }


def _topic_entries(entries: list[Any]) -> EncodedItems | list[Any]:
    """A topic's entries as the encoder takes them: one buffer if every one
    is record-less bytes, else each its own item (records by reference)."""
    if all(type(entry) is bytes for entry in entries):
        return EncodedItems(len(entries), b"".join(entries))
    return [EncodedItem.single(e) if type(e) is bytes else e for e in entries]


@cache
def _entry_writer(version: int) -> Writer:
    return item_encoder(response_schema(ApiKey.FETCH, version), "responses", "partitions")


def _encoded_entry(read: _Read, committed: bool, version: int) -> EncodedItem:
    fetched = read.fetched
    if fetched is not None and not fetched.aborted_transactions:  # from a template
        outcome = read.outcome
        return records_entry(
            version,
            committed,
            read.wanted.partition,
            outcome.error,
            outcome.high_watermark,
            read.last_stable_offset,
            outcome.log_start_offset,
            fetched.records,
        )
    return EncodedItem.of(_entry_writer(version), _partition_entry(read, committed))


def _partition_entry(read: _Read, committed: bool) -> dict[str, Any]:
    """A partition's entry of the response, as the encoder takes it."""
    wanted, outcome = read.wanted, read.outcome
    records: list[Any] = []
    aborted: list[dict[str, int]] = []
    if read.fetched is not None:
        records = list(read.fetched.records)
        aborted = [
            {"producer_id": txn.producer_id, "first_offset": txn.first_offset}
            for txn in read.fetched.aborted_transactions or ()
        ]
    return entry_fields(
        committed,
        wanted.partition,
        outcome.error,
        outcome.high_watermark,
        read.last_stable_offset,
        outcome.log_start_offset,
        records,
        aborted,
    )
