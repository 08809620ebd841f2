"""Fetch: stored batches go back as stored, by reference, never decoded.

Long-polling follows Kafka: the response waits until ``min_bytes`` are
available or ``max_wait`` passes. Waiting is a wake-up from the engine when
a partition's high watermark moves, never a polling loop; after a read that
found too little, the wait is for data beyond what was read.

Fetch sessions (KIP-227) are declined the way a Kafka broker with a full
session cache declines them: the response carries session id 0, and the
client keeps sending full fetch requests. An incremental fetch for a session
the server does not have gets FETCH_SESSION_ID_NOT_FOUND.
"""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

from kio.schema.fetch.v13.request import FetchTopic as FetchTopicV13
from kio.schema.fetch.v14.request import FetchTopic as FetchTopicV14
from kio.schema.fetch.v15.request import FetchTopic as FetchTopicV15

from engine import clock
from engine.engine import READ_COMMITTED, READ_UNCOMMITTED
from engine.errors import EngineError, error_code
from engine.internal_topics import internal_fetch, is_internal_topic
from engine.partition import PartitionFetch
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server.context import RequestContext
from engine.server.handlers.common import (
    leader_epoch_error,
    millis,
    topic_names_by_id,
    uuid_bytes,
)
from engine.server.handlers.registry import handles
from engine.server.handlers.requests import FetchRequest
from engine.types import TopicPartition

_FIRST_TOPIC_ID_VERSION = 13
_READ_COMMITTED = 1


class _Wanted(NamedTuple):
    topic: str | None
    topic_id: bytes
    partition: int
    offset: int
    max_bytes: int
    current_leader_epoch: int


class _Read(NamedTuple):
    wanted: _Wanted
    error: int
    fetched: PartitionFetch | None
    size: int
    seen_end: int
    """Where the data read ends, sent or not: a long poll waits for more."""


@handles(
    ApiKey.FETCH,
    4,
    15,
    notes={
        4: "read_committed, with the aborted transactions",
        5: "log start offset",
        7: "fetch sessions (KIP-227), declined: session id 0",
        9: "current leader epoch (KIP-320)",
        11: "rack id (ignored: one broker)",
        12: "flexible encoding",
        13: "topics by id",
        15: "replica state (v16, node endpoints, is not served)",
    },
)
async def handle_fetch(context: RequestContext, request: FetchRequest) -> dict[str, Any]:
    session_id = getattr(request, "session_id", 0)
    session_epoch = getattr(request, "session_epoch", -1)
    if session_id != 0 or session_epoch > 0:
        return _session_error(KafkaCode.FETCH_SESSION_ID_NOT_FOUND)
    wanted = _wanted_partitions(context, request)
    max_bytes = getattr(request, "max_bytes", 0x7FFFFFFF)
    min_bytes = max(request.min_bytes, 0)
    deadline = clock.monotonic() + millis(request.max_wait) / 1000
    engine = context.engine
    committed = getattr(request, "isolation_level", 0) == _READ_COMMITTED
    while True:
        reads = await _read_all(context, wanted, max_bytes, committed)
        total = sum(r.size for r in reads)
        remaining = deadline - clock.monotonic()
        if total >= min_bytes or remaining <= 0 or any(r.error != KafkaCode.NONE for r in reads):
            break
        if not wanted:
            break
        beyond = {
            TopicPartition(r.wanted.topic, r.wanted.partition): r.seen_end
            for r in reads
            if r.wanted.topic is not None and not is_internal_topic(r.wanted.topic)
        }
        if not beyond:  # internal topics only: nothing will ever arrive
            await asyncio.sleep(remaining)
            continue
        if not await engine.wait_for_data_async(beyond, remaining):
            reads = await _read_all(context, wanted, max_bytes, committed)
            break
    return _response(context, reads, committed)


def _wanted_partitions(context: RequestContext, request: FetchRequest) -> list[_Wanted]:
    by_id = topic_names_by_id(context) if context.version >= _FIRST_TOPIC_ID_VERSION else {}
    wanted: list[_Wanted] = []
    for topic in request.topics:
        if isinstance(topic, FetchTopicV13 | FetchTopicV14 | FetchTopicV15):
            topic_id = uuid_bytes(topic.topic_id)
            name = by_id.get(topic_id)
        else:
            name, topic_id = topic.topic, bytes(16)
        wanted.extend(
            _Wanted(
                name,
                topic_id,
                partition.partition,
                partition.fetch_offset,
                partition.partition_max_bytes,
                getattr(partition, "current_leader_epoch", -1),
            )
            for partition in topic.partitions
        )
    return wanted


async def _read_all(
    context: RequestContext, wanted: list[_Wanted], max_bytes: int, committed: bool
) -> list[_Read]:
    """Reads the partitions in order within the response's ``max_bytes``:
    each gets what the ones before it left, up to its own limit. As in Kafka,
    the first partition with data sends at least its first batch, however
    large; after that, a partition whose first batch is over its limit sends
    none (but still its offsets)."""
    reads: list[_Read] = []
    budget = max_bytes
    for w in wanted:
        read = await _read(context, w, max(budget, 1), committed)
        limit = min(w.max_bytes, budget)
        if read.fetched is not None and read.size > limit and budget < max_bytes:
            unsent = read.fetched._replace(records=[], next_offset=w.offset)
            read = read._replace(fetched=unsent, size=0)
        budget -= read.size
        reads.append(read)
    return reads


async def _read(context: RequestContext, wanted: _Wanted, budget: int, committed: bool) -> _Read:
    if wanted.topic is None:
        return _Read(wanted, KafkaCode.UNKNOWN_TOPIC_ID, None, 0, wanted.offset)
    epoch_error = leader_epoch_error(context, wanted.current_leader_epoch)
    if epoch_error != KafkaCode.NONE:
        return _Read(wanted, epoch_error, None, 0, wanted.offset)
    if is_internal_topic(wanted.topic):
        code, empty = internal_fetch(wanted.partition, wanted.offset, committed)
        return _Read(wanted, code, empty, 0, wanted.offset)
    try:
        fetched = await context.engine.fetch_async(
            wanted.topic,
            wanted.partition,
            wanted.offset,
            max(min(wanted.max_bytes, budget), 1),
            READ_COMMITTED if committed else READ_UNCOMMITTED,
        )
    except EngineError as error:
        return _Read(wanted, error_code(error), None, 0, wanted.offset)
    size = sum(len(batch) for batch in fetched.records)
    seen_end = max(fetched.next_offset, wanted.offset)
    if committed:  # data past the last stable offset was seen, not sent: wait beyond it
        seen_end = max(seen_end, fetched.high_watermark)
    return _Read(wanted, KafkaCode.NONE, fetched, size, seen_end)


def _response(context: RequestContext, reads: list[_Read], committed: bool) -> dict[str, Any]:
    engine = context.engine
    topics: dict[tuple[str | None, bytes], list[dict[str, Any]]] = {}
    for read in reads:
        wanted = read.wanted
        records: list[Any] = []
        aborted: list[dict[str, int]] = []
        if read.fetched is not None:
            records = list(read.fetched.records)
            high_watermark = read.fetched.high_watermark
            last_stable = read.fetched.last_stable_offset
            log_start = read.fetched.log_start_offset
            aborted = [
                {"producer_id": txn.producer_id, "first_offset": txn.first_offset}
                for txn in read.fetched.aborted_transactions or ()
            ]
        else:
            high_watermark = last_stable = log_start = -1
            if wanted.topic is not None and read.error == KafkaCode.OFFSET_OUT_OF_RANGE:
                log_start, high_watermark = engine.offsets(wanted.topic, wanted.partition)
        topics.setdefault((wanted.topic, wanted.topic_id), []).append(
            {
                "partition_index": wanted.partition,
                "error_code": read.error,
                "high_watermark": high_watermark,
                "last_stable_offset": last_stable,
                "log_start_offset": log_start,
                "aborted_transactions": aborted if committed else None,
                "preferred_read_replica": -1,
                "records": records,
            }
        )
    return {
        "throttle_time": 0,
        "error_code": KafkaCode.NONE,
        "session_id": 0,
        "responses": [
            {"topic": name, "topic_id": topic_id, "partitions": partitions}
            for (name, topic_id), partitions in topics.items()
        ],
    }


def _session_error(code: int) -> dict[str, Any]:
    return {"throttle_time": 0, "error_code": code, "session_id": 0, "responses": []}
