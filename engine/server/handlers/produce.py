"""Produce and InitProducerId.

Each partition's record data is handed to the engine as a slice of the
request buffer; the engine validates it in C, rewrites the batch headers in
place and appends it. The response waits until every append is durable as
its topic's ``tidelog.ack.durability`` says: fsynced in the WAL (``local``)
or in an object committed to the manifest (``remote``); acks=1 and acks=all
mean the same on one node. A partition not durable within the request's
timeout_ms is answered REQUEST_TIMED_OUT, as Kafka's DelayedProduce does
(the append stays and completes later: a retry finds it as a duplicate).
acks=0 gets no response at all, as in Kafka; and as in Kafka, an acks=0
request refused for any partition (authorization, an unknown topic, a
batch refused on arrival) closes its connection once the answers before it
are written, so the producer learns of it by reconnecting and asking
Metadata. Failures found after the append was accepted (the WAL) are only
logged: Kafka's acks=0 producer cannot learn of those either.
An engine fenced by another owner of its storage answers
NOT_LEADER_OR_FOLLOWER, so clients look for the new leader. With
auto-creation on, the unknown topics a request names are created first, all
in one step and within Kafka's bound of records per request (see
common.auto_create_topics).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Mapping
from concurrent.futures import Future
from functools import partial
from typing import TYPE_CHECKING, Any

from engine.append_settle import AppendSettle, engine_error
from engine.batch_refusals import produce_framing_refusal
from engine.errors import EngineError, UnsupportedCompressionType, error_code
from engine.internal_topics import is_internal_topic
from engine.partition import AppendResult
from engine.protocol.apis import ApiKey
from engine.protocol.codec import Encoded, body_offset
from engine.protocol.errors import ProtocolError
from engine.protocol.frames import RequestHeader
from engine.protocol.kafka_code import KafkaCode
from engine.protocol.produce import FIRST_FLEXIBLE_VERSION, ProduceRequest, decode_produce
from engine.protocol.produce_single import decode_single_partition
from engine.server import authorize
from engine.server.authorizer import AclOperation, AllowAll
from engine.server.checked_appends import records_checked, submit_checked
from engine.server.context import Body, OffLoop, RequestContext, Response, error_message
from engine.server.handlers.common import (
    auto_create_topics,
    implicit_add_code,
    transactional_write_code,
)
from engine.server.handlers.registry import handles
from engine.server.handlers.transactions import init_transactional_producer
from engine.server.implicit_add import (
    FIRST_TV2_PRODUCE_VERSION,
    added_within_window,
    implicit_add,
)
from engine.server.produce_entries import accepted_answer, accepted_entry
from engine.server.request_deadlines import RequestDeadlines, Waiting
from engine.server.transactional_produce import (
    has_transactional_records,
    producer_refused,
    speaks_for_several,
    transactional_producer,
)
from engine.types import TopicPartition

if TYPE_CHECKING:
    # The kio request classes, for the handlers' annotations only: importing
    # every version's class costs the server's start hundreds of modules.
    from engine.server.handlers.requests import InitProducerIdRequest

log = logging.getLogger("tidelog.server")

_ACKS = (-1, 0, 1)
_ACKS_ANSWERED = (-1, 1)

FIRST_ZSTD_VERSION = 7
"""The first Produce version that may carry a zstd batch (KIP-110)."""

Outcome = asyncio.Future[AppendResult] | EngineError | int
"""An append on its way to durability, the error it was refused with, or
the error code of a request fault."""
Results = list[tuple[str, list[tuple[int, Outcome, str | None]]]]


def _decode_produce(header: RequestHeader, frame: memoryview) -> ProduceRequest:
    """Decoded by hand, so that record data stays a slice of the frame; the
    common one-partition request in a few struct reads (produce_single.py)."""
    _, version, _, _, offset = header  # one unpack: see _produce_one
    if version < FIRST_FLEXIBLE_VERSION or offset >= len(frame) or frame[offset]:
        offset = body_offset(header, frame)
    else:
        offset += 1  # the header's tagged fields: none, as every client sends them
    single = decode_single_partition(frame, offset, version)
    return single or decode_produce(frame, offset, version)


# Advertised from v0 although v0-v2 are not served (a request at those
# versions closes its connection, as any unsupported one does). Kafka 4.0
# does the same (KAFKA-18659): older librdkafka (2.0, for one) enables gzip,
# snappy and lz4 only if the broker lists Produce v0, and otherwise sends
# every batch uncompressed. A client uses the highest common version, so
# none is led to send v0-v2.
@handles(
    ApiKey.PRODUCE,
    3,
    12,
    advertised_min_version=0,
    decode=_decode_produce,
    notes={
        0: "listed from v0 but served from v3 (KAFKA-18659, see above)",
        3: "record batch v2; transactional ids",
        5: "log start offset",
        7: "zstd batches (KIP-110); below v7 refused UNSUPPORTED_COMPRESSION_TYPE",
        8: "record_errors: the records a batch was refused for (KIP-467)",
        9: "flexible encoding",
        11: "a transactional batch its transaction does not include (no AddPartitionsToTxn"
        " for the partition) is TRANSACTION_ABORTABLE, as Kafka 4.0's verification answers it"
        " (KIP-890), where v10 answers INVALID_TXN_STATE",
        12: "transactions v2 (KIP-890 part 2): a transactional batch's partition is added"
        " to its transaction implicitly (implicit_add.py), a fenced producer"
        " INVALID_PRODUCER_EPOCH, a transaction being completed asked again for up to"
        " add_partitions_to_txn_retry_backoff_max_ms (KAFKA-18654), then CONCURRENT_TRANSACTIONS"
        " (KAFKA-18662), a coordinator not available NOT_ENOUGH_REPLICAS;"
        " highest (v13 names topics by id)",
    },
)
def handle_produce(context: RequestContext, request: ProduceRequest) -> Response:
    transactional_id, _, _, topics = request  # one unpack: see _produce_one
    if transactional_id is None and len(topics) == 1 and len(topics[0].partitions) == 1:
        # librdkafka's every request to a topic of thousands of partitions:
        # straight to its append when _produce_one takes it (an existing
        # topic: nothing to create, no transaction to add to).
        answer = _produce_one(context, request)
        if answer is not None:
            return answer
    creating = _topics_to_create(context, request)
    if creating:
        submitted = asyncio.get_running_loop().create_future()
        return OffLoop(_after_creating(context, request, creating, submitted), until=submitted)
    return _produce_added(context, request)


def _produce_added(
    context: RequestContext,
    request: ProduceRequest,
    auto_created: Mapping[str, KafkaCode] | None = None,
    submitted: asyncio.Future[None] | None = None,
) -> Response:
    """The request's appends, after its implicit add if it needs one.

    A request whose appends wait (for its topics' creation, for its add)
    holds its connection until they are submitted (``submitted``, OffLoop's
    ``until``): a Produce sent behind it for the same partition would
    otherwise append first, and an idempotent producer's later sequence
    arriving before the earlier one is refused OUT_OF_ORDER_SEQUENCE_NUMBER.
    Kafka reads a connection's next request only once this one is answered."""
    if context.version >= FIRST_TV2_PRODUCE_VERSION and request.transactional_id is not None:
        adding = implicit_add(context, request, request.transactional_id)
        if adding is not None:
            if submitted is None:
                submitted = asyncio.get_running_loop().create_future()
                answer = _after_the_add(context, request, *adding, auto_created, submitted)
                return OffLoop(answer, until=submitted)
            return _after_the_add(context, request, *adding, auto_created, submitted)
    try:
        return _produce_now(context, request, None, auto_created)
    finally:
        _submitted(submitted)


def _submitted(submitted: asyncio.Future[None] | None) -> None:
    if submitted is not None and not submitted.done():
        submitted.set_result(None)


def _topics_to_create(context: RequestContext, request: ProduceRequest) -> list[str]:
    """The unknown topics _produce would answer after creating them: those
    with records, of a request whose acks are valid, the principal may
    write, and whose transactional records (if any) it may write. Rare:
    clients ask Metadata first, which creates them."""
    engine = context.engine
    if not engine.broker_configs.auto_create_topics or request.acks not in _ACKS:
        return []
    unknown = [
        t.name
        for t in request.topics
        if not engine.has_topic(t.name)
        and not is_internal_topic(t.name)  # refused, never created
        and any(p.records is not None for p in t.partitions)
    ]
    if not unknown:
        return []
    transactional_id = request.transactional_id
    if has_transactional_records(request) and (
        transactional_id is None or not authorize.may_write_transaction(context, transactional_id)
    ):
        return []  # the whole request is refused before any topic is created
    refused = set(authorize.refused_topics(context, AclOperation.WRITE, unknown))
    return list(dict.fromkeys(name for name in unknown if name not in refused))


async def _after_creating(
    context: RequestContext,
    request: ProduceRequest,
    names: list[str],
    submitted: asyncio.Future[None],
) -> Body | Encoded | None:
    """The request answered once its unknown topics' auto-creation ended,
    which runs on the admin thread: a creation waits for the object store
    (at most common.AUTO_CREATE_TIMEOUT_MS through an outage), and the event
    loop serves everyone else meanwhile. ``auto_created``: the refused."""
    # Not given up at shutdown (until_stopping): the creation is bounded,
    # and one not started yet is cancelled with the admin thread's queue.
    try:
        creation = context.server.admin.submit(auto_create_topics, context, names)
        auto_created = await asyncio.wrap_future(creation)
        answer = _produce_added(context, request, auto_created, submitted)
    finally:
        _submitted(submitted)
    return await answer if inspect.isawaitable(answer) else answer


def _produce_now(
    context: RequestContext,
    request: ProduceRequest,
    preset: Mapping[TopicPartition, int] | None = None,
    auto_created: Mapping[str, KafkaCode] | None = None,
) -> Response:
    topics = request.topics
    if preset or auto_created is not None:
        return _produce(context, request, preset, auto_created)
    if len(topics) == 1 and len(topics[0].partitions) == 1:
        # handle_produce already offered a request without a transactional
        # id to _produce_one: one it declined is not looked at twice.
        if request.transactional_id is None:
            return _produce(context, request)
        return _produce_one(context, request) or _produce(context, request)
    if sum(len(topic.partitions) for topic in topics) < 2:
        return _produce(context, request)
    # One request's appends for many partitions share one WAL write and sync.
    with context.engine.appends_gathered():
        return _produce(context, request)


_WRITE = AclOperation.WRITE
"""Read once: an Enum class's attribute is looked up through its
metaclass's __getattr__ hook (some 900 instructions), once a Produce."""


def _produce_one(context: RequestContext, request: ProduceRequest) -> Response:
    """_produce for librdkafka's every request to a topic of thousands of
    partitions: one partition's non-transactional batch, acks=1 or all, to
    a topic that exists, is not internal, may be written and checks no
    records, in Produce v7+. Its answer is _produce's: each check _produce
    makes before the append is one that such a request passes, so only the
    append's own refusal is left to answer. None (nothing done) for any
    other request, which _produce answers."""
    # Unpacked once: on 3.11 a NamedTuple field read by name is a call of
    # its descriptor (_tuplegetter), some 100 instructions each, and this
    # function read some 20 of them. The one topic and partition
    # handle_produce and _produce_now checked the request has.
    _, acks, timeout_ms, ((name, ((index, records),)),) = request
    server, header, identity, _ = context
    _, version, _, client_id, _ = header
    engine = server.engine
    if (
        records is None
        or acks not in _ACKS_ANSWERED
        or version < FIRST_ZSTD_VERSION
        or transactional_producer(records) is not None
        or is_internal_topic(name)
        # refused_topics' own first look, without its call and its empty set
        or (
            type(server.authorizer) is not AllowAll
            and authorize.refused_topics(context, _WRITE, (name,))
        )
    ):
        return None
    try:
        # One look at the partition for what the general path asks of it
        # (that its topic exists, and checks no records) and for the append.
        leader = engine.partition(name, index)
    except EngineError:  # no such topic or partition: the general path answers it
        return None
    if leader.record_check is not None:
        return None
    one = _OneAppend(context, header, name, index)
    try:
        engine.submit_then_to(
            leader,
            records,
            one,
            provenance=identity.provenance(client_id),
            one_batch=True,  # see _produce
            # A bound method, where a partial of check_create_topic was made
            # for every request: called only for a topic deleted under it.
            may_create=one.may_create,  # see _produce
        )
    except EngineError as error:
        return _response(version, [(name, [_refused_append(name, index, records, error)])])
    return one.answer_within(server.deadlines, timeout_ms)


class _OneAppend(AppendSettle):
    """The answer to a request of one append (_produce_one): a future
    settled by the append's own call (Engine.submit_then_to, which hands
    this object itself to the store, whose WAL settles it) or by the
    request's timeout, as _when_durable answers; no future or object of
    the append's between the WAL and the answer, and no task."""

    __slots__ = ("_answer", "_context", "_header", "_index", "_name", "_timed_out", "_waiting")

    def __init__(
        self, context: RequestContext, header: RequestHeader, name: str, index: int
    ) -> None:
        self._context = context  # for may_create alone
        self._header = header
        self._name = name
        self._index = index
        self._waiting: Waiting | None = None
        self._timed_out = False

    def answer_within(
        self, deadlines: RequestDeadlines, timeout_ms: int
    ) -> asyncio.Future[Body | Encoded]:
        """The answer, once the append is durable or ``timeout_ms`` passed
        (the server's one timer, request_deadlines.py). Made after the
        append was accepted: its call never comes before."""
        self._answer: asyncio.Future[Body | Encoded] = asyncio.get_running_loop().create_future()
        if timeout_ms > 0:
            self._waiting = deadlines.add(self, timeout_ms)
        return self._answer

    def may_create(self, topic: str) -> None:
        """The engine's CreateCheck for a topic deleted under the append:
        created again only for a principal that may create it."""
        authorize.check_create_topic(self._context, topic)

    def time_out(self) -> None:
        if not self._answer.done():  # else its connection closed
            self._timed_out = True
            timed_out = (self._index, KafkaCode.REQUEST_TIMED_OUT, _TIMED_OUT)
            results: Results = [(self._name, [timed_out])]
            self._answer.set_result(_response(self._header.api_version, results))

    def settle(self, error: BaseException | None) -> None:
        if error is not None:
            error = engine_error(self.leader, error)
        appended = self.result
        answer = self._answer
        # Off the deadlines first: a request whose connection closed is
        # answered (cancelled) without its timeout, and would be held until
        # its deadline (an int32 of ms, 24 days) if taken off only here below.
        if self._waiting is not None:
            self._waiting.pop(self, None)
        if answer.done():  # answered at the timeout, or its connection closed
            if error is not None and self._timed_out:  # the append finished on its own
                log.warning("an append answered REQUEST_TIMED_OUT failed later: %s", error)
            return
        if error is None:
            base_offset, _, log_append_time, log_start_offset, _ = appended  # see _produce_one
            encoded = accepted_answer(
                self._header,
                self._name,
                self._index,
                base_offset,
                log_append_time,
                log_start_offset,
            )
            if encoded is not None:
                answer.set_result(encoded)
                return
        # Answered as _when_durable answers an append's future.
        outcome: asyncio.Future[AppendResult] = answer.get_loop().create_future()
        if error is None:
            outcome.set_result(appended)
        else:
            outcome.set_exception(error)
        results: Results = [(self._name, [(self._index, outcome, None)])]
        answer.set_result(_response(self._header.api_version, results))


async def _after_the_add(
    context: RequestContext,
    request: ProduceRequest,
    added: Future[None],
    partitions: list[TopicPartition],
    auto_created: Mapping[str, KafkaCode] | None = None,
    submitted: asyncio.Future[None] | None = None,
) -> Body | Encoded | None:
    """The request's appends once the implicit add is durable (asked again
    for a short while if the transaction before is still completing, see
    implicit_add.added_within_window); if the coordinator refused it, its
    partitions are answered Kafka's code for that (see implicit_add_code)
    and the others as usual."""
    preset: dict[TopicPartition, int] = {}
    try:
        assert request.transactional_id is not None  # implicit_add asked for one
        error, partitions = await added_within_window(
            context, request, request.transactional_id, added, partitions
        )
        if error is not None:
            preset = dict.fromkeys(partitions, implicit_add_code(error, produce=True))
        answer = _produce_now(context, request, preset, auto_created)
    finally:
        _submitted(submitted)
    return await answer if inspect.isawaitable(answer) else answer


def _produce(
    context: RequestContext,
    request: ProduceRequest,
    preset: Mapping[TopicPartition, int] | None = None,
    auto_created: Mapping[str, KafkaCode] | None = None,
) -> Response:
    engine = context.engine
    results: Results = []
    waiting: list[asyncio.Future[AppendResult]] = []
    transactional_id = request.transactional_id
    # Read once: a request without transactional records (the usual one)
    # skips every transactional check below.
    transactional = has_transactional_records(request)
    if transactional and (
        transactional_id is None or not authorize.may_write_transaction(context, transactional_id)
    ):
        # Kafka's KafkaApis.handleProduceRequest fails the whole request,
        # every partition alike, before it authorizes or creates any topic:
        # transactional records need a transactional id the principal may
        # write. A request without transactional records is not asked for it.
        return _refused(context.version, request, KafkaCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    acks_error = None if request.acks in _ACKS else KafkaCode.INVALID_REQUIRED_ACKS
    refused = dict.fromkeys(
        authorize.refused_topics(context, AclOperation.WRITE, (t.name for t in request.topics)),
        KafkaCode.TOPIC_AUTHORIZATION_FAILED,
    )
    if engine.broker_configs.auto_create_topics and acks_error is None:
        # A topic whose every partition carries no records would only be
        # refused (INVALID_RECORD): it is not created for that.
        unknown = [
            t.name
            for t in request.topics
            if not engine.has_topic(t.name)
            and not is_internal_topic(t.name)  # refused below, never created
            and any(p.records is not None for p in t.partitions)
            and t.name not in refused
        ]
        if unknown:
            if auto_created is None:  # looked up since handle_produce: deleted meanwhile
                auto_created = auto_create_topics(context, list(dict.fromkeys(unknown)))
            # Created before, off the event loop (handle_produce): those it
            # refused. One deleted since is created again by its append,
            # where the principal may create it (Engine.submit_async).
            refused.update({n: auto_created[n] for n in unknown if n in auto_created})
    if transactional and transactional_id is not None and speaks_for_several(request, refused):
        return _refused(context.version, request, KafkaCode.INVALID_PRODUCER_ID_MAPPING)
    # Who sent it, for the partitions of stamp topics (one value per request).
    provenance = context.identity.provenance(context.header.client_id)
    # A topic deleted after the lookups above is created again by its
    # append only if the principal may create it, as it would have been
    # by the auto-creation above.
    may_create = partial(authorize.check_create_topic, context)
    for topic in request.topics:
        partitions: list[tuple[int, Outcome, str | None]] = []
        refused_code = refused.get(topic.name)
        for partition in topic.partitions:
            if refused_code is not None:
                partitions.append((partition.partition, refused_code, None))
                continue
            if partition.records is None:
                partitions.append((partition.partition, KafkaCode.INVALID_RECORD, "no record data"))
                continue
            if context.version < FIRST_ZSTD_VERSION:
                zstd = _zstd_before_v7(context, topic.name, partition.partition, partition.records)
                if zstd is not None:
                    partitions.append((partition.partition, zstd, None))
                    continue
            later = (
                acks_error
                or (
                    producer_refused(engine.transactions, transactional_id, partition.records)
                    if transactional
                    else None
                )
                or (preset.get(TopicPartition(topic.name, partition.partition)) if preset else None)
            )
            if later is not None:
                first = _refused_before_the_append(
                    context, topic.name, partition.partition, partition.records
                )
                partitions.append((partition.partition, first or later, None))
                continue
            # Nobody waits for an acks=0 answer: no prompt upload for it.
            remote = False if request.acks == 0 else None
            durable: asyncio.Future[AppendResult]
            try:
                if records_checked(engine, topic.name, partition.partition):
                    durable = asyncio.ensure_future(
                        submit_checked(
                            engine,
                            context.server.record_checks,
                            topic.name,
                            partition.partition,
                            partition.records,
                            remote,
                            provenance,
                            may_create,
                        )
                    )
                else:
                    # one_batch: a fetch answer carries at least the first
                    # append at its offset, whatever its max_bytes, so an
                    # append of many batches would be one indivisible answer
                    # of up to a whole request. Validation refuses a second
                    # batch before it checks anything else.
                    durable = engine.submit_async(
                        topic.name,
                        partition.partition,
                        partition.records,
                        remote=remote,
                        provenance=provenance,
                        one_batch=True,
                        may_create=may_create,
                    )
            except EngineError as error:
                partitions.append(
                    _refused_append(topic.name, partition.partition, partition.records, error)
                )
                continue
            waiting.append(durable)
            partitions.append((partition.partition, durable, None))
        results.append((topic.name, partitions))
    if request.acks == 0:
        for task in waiting:  # nobody waits for the answer; failures are still logged
            task.add_done_callback(_log_failure)
        closing = _close_if_refused(results)
        if closing is None and waiting and engine.store.past_unuploaded_bound():
            # No answer to delay, so the wait for room that paces acks=1 and
            # acks=all producers (their answers come once there is room)
            # would pace nothing: the connection reads no request after
            # this one until its appends are durable, after that wait.
            return OffLoop(_after_room(waiting))
        return closing
    if not waiting:
        return _response(context.version, results)
    if len(waiting) == 1:
        return _answer_when_durable(
            context.header, results, waiting[0], context.server.deadlines, request.timeout_ms
        )
    return _when_durable(context.version, results, waiting, request.timeout_ms)


def _refused_before_the_append(
    context: RequestContext, topic: str, partition: int, records: memoryview
) -> EngineError | None:
    """What Kafka's KafkaApis.handleProduceRequest answers a partition before
    ReplicaManager looks at the request's acks or verifies a transactional
    batch's producer: a partition its metadata does not have, then records
    ProduceRequest.validateRecords refuses. Read only for a partition
    already refused by one of those two."""
    if not is_internal_topic(topic):  # Kafka's exist; tidelog's are refused later
        try:
            context.engine.partition(topic, partition)
        except EngineError as error:
            return _kept(error)
    return produce_framing_refusal(records, topic, partition)


def _zstd_before_v7(
    context: RequestContext, topic: str, partition: int, records: memoryview
) -> UnsupportedCompressionType | None:
    """Kafka's ProduceRequest.validateRecords refuses a zstd batch in a
    Produce below v7 once it has framed the first batch and found it of
    magic 2, before it looks for a second; a partition Kafka does not know
    (an unknown topic or index) is refused before that, and any other
    framing fault is the append's to answer, which frames the records
    again (so this check costs old clients alone)."""
    refusal = produce_framing_refusal(records, topic, partition, allow_zstd=False)
    if not isinstance(refusal, UnsupportedCompressionType):
        return None
    if not is_internal_topic(topic):
        try:
            context.engine.partition(topic, partition)
        except EngineError:
            return None
    return UnsupportedCompressionType(
        f"Produce requests with version {context.version} are not allowed to use ZStandard"
        " compression"
    )


def _refused_append(
    topic: str, partition: int, records: memoryview, error: EngineError
) -> tuple[int, Outcome, str | None]:
    """An append the engine refused before validating it. Kafka's
    internal topics exist to its handleProduceRequest, which frames the
    records (ProduceRequest.validateRecords: a corrupt frame, no batch, a
    magic 0 or 1 batch, a second batch) before ReplicaManager refuses the
    append (INVALID_TOPIC_EXCEPTION); tidelog's are refused before
    validation, so that framing is done here."""
    if is_internal_topic(topic):
        error = produce_framing_refusal(records, topic, partition) or error
    return partition, _kept(error), None


def _kept(error: EngineError) -> EngineError:
    """``error`` without its traceback, to be kept in the answer's results.
    The traceback's frames hold the request (its records' buffer, up to a
    whole request) and the results that hold the error: a cycle that only
    the cyclic collector frees, after up to its young threshold's worth of
    objects (20,000 under ``serve``, docs/design/0152), where without it
    reference counting frees the request once answered. Nothing reads the
    traceback: the answer carries the error's code and message."""
    return error.with_traceback(None)


def _refused(version: int, request: ProduceRequest, code: KafkaCode) -> Response:
    """Every partition of the request answered ``code`` (acks=0: its
    connection closed instead)."""
    results: Results = [
        (t.name, [(p.partition, code, None) for p in t.partitions]) for t in request.topics
    ]
    return _close_if_refused(results) if request.acks == 0 else _response(version, results)


class AcksZeroRefused(ProtocolError):
    """An acks=0 Produce refused for some partition: it has no answer to
    carry the error, so its connection closes (Kafka's KafkaApis does the
    same, "Closing connection due to error during produce request")."""


def _close_if_refused(results: Results) -> Response:
    """None (no answer) if every partition's append was accepted; else an
    awaitable that fails, so the connection closes in its turn, after the
    answers to the requests before this one are written."""
    refused = [
        f"{topic}-{index}: {_code_name(outcome)}"
        for topic, partitions in results
        for index, outcome, _ in partitions
        if not isinstance(outcome, asyncio.Future)
    ]
    if not refused:
        return None
    return _close(AcksZeroRefused("an acks=0 produce was refused: " + ", ".join(refused)))


def _code_name(outcome: EngineError | int) -> str:
    code = error_code(outcome) if isinstance(outcome, EngineError) else outcome
    return KafkaCode.for_value(code).name


async def _close(error: ProtocolError) -> Body:
    raise error


async def _after_room(waiting: list[asyncio.Future[AppendResult]]) -> None:
    """An acks=0 Produce's no-answer once its appends are durable: while
    the object store is behind, acks=0 producers are paced by their
    connections."""
    await asyncio.wait(waiting)


def _log_failure(task: asyncio.Future[AppendResult]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("an acks=0 append failed: %s", task.exception())


async def _when_durable(
    version: int, results: Results, waiting: list[asyncio.Future[AppendResult]], timeout_ms: int
) -> Body:
    _, late = await asyncio.wait(waiting, timeout=timeout_ms / 1000 if timeout_ms > 0 else None)
    for task in late:  # answered REQUEST_TIMED_OUT; the append finishes on its own
        task.add_done_callback(_log_late_failure)
    return _response(version, results)


def _answer_when_durable(
    header: RequestHeader,
    results: Results,
    task: asyncio.Future[AppendResult],
    deadlines: RequestDeadlines,
    timeout_ms: int,
) -> asyncio.Future[Body | Encoded]:
    """_when_durable for a request of one append that _produce_one left to
    the general path (an older version, a transactional batch, a topic
    auto-created): a future settled by the append's callback or the
    server's timer (request_deadlines.py), not a coroutine of its own (a
    task) awaiting asyncio.wait."""
    return _DurableAnswer(header, results, task, deadlines, timeout_ms).answer


class _DurableAnswer:
    """The answer of _answer_when_durable, settled once."""

    __slots__ = ("_header", "_results", "_task", "_waiting", "answer")

    def __init__(
        self,
        header: RequestHeader,
        results: Results,
        task: asyncio.Future[AppendResult],
        deadlines: RequestDeadlines,
        timeout_ms: int,
    ) -> None:
        self._header = header
        self._results = results
        self._task = task
        self.answer: asyncio.Future[Body | Encoded] = asyncio.get_running_loop().create_future()
        self._waiting = deadlines.add(self, timeout_ms) if timeout_ms > 0 else None
        task.add_done_callback(self._settle)

    def time_out(self) -> None:
        self._settle()

    def _settle(self, _: object = None) -> None:
        # Off the deadlines first, as _OneAppend answers: a connection
        # closed answers without them.
        if self._waiting is not None:
            self._waiting.pop(self, None)
        if self.answer.done():  # answered at the timeout, or its connection closed
            return
        if not self._task.done():  # answered REQUEST_TIMED_OUT; the append finishes on its own
            self._task.add_done_callback(_log_late_failure)
        self.answer.set_result(_answer(self._header, self._results))


def _log_late_failure(task: asyncio.Future[AppendResult]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("an append answered REQUEST_TIMED_OUT failed later: %s", task.exception())


def _answer(header: RequestHeader, results: Results) -> Body | Encoded:
    """The answer to a request of one append: written whole from its
    topic's template when that one partition was accepted (the usual
    answer), else through the schema."""
    if len(results) == 1:
        name, partitions = results[0]
        if len(partitions) == 1:
            index, outcome, _ = partitions[0]
            if (
                isinstance(outcome, asyncio.Future)
                and outcome.done()
                and not outcome.cancelled()
                and outcome.exception() is None
            ):
                appended = outcome.result()
                encoded = accepted_answer(
                    header,
                    name,
                    index,
                    appended.base_offset,
                    appended.log_append_time,
                    appended.log_start_offset,
                )
                if encoded is not None:
                    return encoded
    return _response(header.api_version, results)


def _response(version: int, results: Results) -> Body:
    return {
        "responses": [
            {
                "name": name,
                "partition_responses": [_partition(version, i, r, m) for i, r, m in partitions],
            }
            for name, partitions in results
        ],
        "throttle_time": 0,
    }


_TIMED_OUT = (
    "not durable within the request's timeout_ms (the object store may be slow "
    "or unreachable); the append is kept: an idempotent producer's retry is "
    "answered once it is durable"
)


def _partition(version: int, index: int, result: Outcome, message: str | None) -> Any:
    if isinstance(result, int):
        return _failed(index, result, message)
    if isinstance(result, EngineError):
        return _failed(index, _code(version, result), error_message(result), _record_errors(result))
    if not result.done():
        return _failed(index, KafkaCode.REQUEST_TIMED_OUT, _TIMED_OUT)
    error = result.exception()
    if error is not None:
        return _failed(index, _code(version, error), error_message(error), _record_errors(error))
    appended = result.result()
    return accepted_entry(
        version,
        index,
        appended.base_offset,
        appended.log_append_time,
        appended.log_start_offset,
    )


FIRST_ABORTABLE_PRODUCE_VERSION = 11
"""Kafka answers a batch its transaction verification refuses
TRANSACTION_ABORTABLE from Produce v11 (KafkaApis.handleProduceRequest's
genericError), INVALID_TXN_STATE before."""


def _code(version: int, error: BaseException) -> int:
    return transactional_write_code(error, version >= FIRST_ABORTABLE_PRODUCE_VERSION)


def _failed(
    index: int, code: int, message: str | None, record_errors: list[Body] | None = None
) -> Body:
    return {
        "index": index,
        "error_code": code,
        "base_offset": -1,
        "log_append_time": -1,
        "log_start_offset": -1,
        "record_errors": record_errors or [],
        "error_message": message,
    }


def _record_errors(error: BaseException) -> list[Body]:
    """KIP-467 (Produce v8+): the records of the batch that caused the error."""
    if not isinstance(error, EngineError):
        return []
    return [
        {"batch_index": index, "batch_index_error_message": message}
        for index, message in error.record_errors
    ]


@handles(
    ApiKey.INIT_PRODUCER_ID,
    0,
    5,
    notes={
        0: "idempotent and transactional producers",
        2: "flexible encoding",
        3: "an existing producer bumps its epoch (KIP-360)",
        4: "PRODUCER_FENCED for a fenced epoch (KIP-588)",
        5: "the client knows TRANSACTION_ABORTABLE (KIP-890), which Kafka 4.0 never answers"
        " here: answered as v4 (v6, two-phase commit, is not served)",
    },
)
def handle_init_producer_id(context: RequestContext, request: InitProducerIdRequest) -> Response:
    """A new idempotent producer. (As in Kafka, a producer without a
    transactional id that asks to bump its epoch gets a new id instead.)
    A transactional id is the transaction coordinator's (transactions.py)."""
    if request.transactional_id is not None:
        return init_transactional_producer(context, request, request.transactional_id)
    if not authorize.may_write_idempotently(context):
        return {
            "throttle_time": 0,
            "error_code": KafkaCode.CLUSTER_AUTHORIZATION_FAILED,
            "producer_id": -1,
            "producer_epoch": -1,
        }
    try:
        producer_id, epoch = context.engine.init_producer_id()
    except EngineError as error:
        return {
            "throttle_time": 0,
            "error_code": error_code(error),
            "producer_id": -1,
            "producer_epoch": -1,
        }
    return {
        "throttle_time": 0,
        "error_code": KafkaCode.NONE,
        "producer_id": producer_id,
        "producer_epoch": epoch,
    }
