"""Transactions over the wire: InitProducerId for transactional ids,
AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn, and the
admin APIs DescribeTransactions, ListTransactions and DescribeProducers.

Each handler is a thin layer over the engine's transaction coordinator
(engine/transactions/); its state writes are awaited without
blocking the event loop. Versions older than KIP-588 do not know
PRODUCER_FENCED and get INVALID_PRODUCER_EPOCH instead, as from Kafka.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from engine.errors import EngineError, error_code
from engine.internal_topics import internal_partition_count, is_internal_topic
from engine.linear_regex import InvalidPattern, compile_linear
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server import authorize
from engine.server.authorizer import AclOperation
from engine.server.context import RequestContext, Response, off_loop
from engine.server.handlers.common import (
    distinct,
    implicit_add_code,
    millis,
    transactional_write_code,
)
from engine.server.handlers.registry import handles
from engine.transactions.metadata import TV_2, TransactionMetadata, TxnState
from engine.types import OffsetAndMetadata, TopicPartition

if TYPE_CHECKING:
    # The kio request classes, for the handlers' annotations only: importing
    # every version's class costs the server's start hundreds of modules.
    from engine.server.handlers.requests import (
        AddOffsetsToTxnRequest,
        AddPartitionsToTxnRequest,
        BrokerAddPartitionsToTxnRequest,
        ClientAddPartitionsToTxnRequest,
        DescribeProducersRequest,
        DescribeTransactionsRequest,
        EndTxnRequest,
        InitProducerIdRequest,
        ListTransactionsRequest,
        TxnOffsetCommitRequest,
    )

# The first version of each API whose clients know PRODUCER_FENCED (KIP-588).
_FENCED_SINCE = {"init_producer_id": 4, "add_partitions": 2, "add_offsets": 2, "end_txn": 2}


def _code(context: RequestContext, error: BaseException, api: str) -> KafkaCode:
    code = error_code(error)
    if code == KafkaCode.PRODUCER_FENCED and context.version < _FENCED_SINCE[api]:
        return KafkaCode.INVALID_PRODUCER_EPOCH
    return code


_FIRST_ABORTABLE_TXN_OFFSET_COMMIT = 4
"""Kafka answers a commit its transaction's verification refuses
TRANSACTION_ABORTABLE from TxnOffsetCommit v4 (CoordinatorPartitionWriter's
genericError), INVALID_TXN_STATE before; a commit voided after the check
passed (docs/design/0048) is INVALID_TXN_STATE at every version."""


def _wait(future: Any) -> Awaitable[Any]:
    return asyncio.wrap_future(future)


# -- InitProducerId ------------------------------------------------------------------------


async def init_transactional_producer(
    context: RequestContext, request: InitProducerIdRequest, transactional_id: str
) -> dict[str, Any]:
    """InitProducerId with a transactional id (the idempotent case is in
    produce.py)."""
    if not authorize.may_write_transaction(context, transactional_id):
        return {
            "throttle_time": 0,
            "error_code": KafkaCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            "producer_id": -1,
            "producer_epoch": -1,
        }
    try:
        producer_id, epoch = await _wait(
            context.engine.transactions.init_producer_id(
                transactional_id,
                millis(request.transaction_timeout),
                getattr(request, "producer_id", -1),
                getattr(request, "producer_epoch", -1),
            )
        )
    except EngineError as error:
        return {
            "throttle_time": 0,
            "error_code": _code(context, error, "init_producer_id"),
            "producer_id": -1,
            "producer_epoch": -1,
        }
    return {
        "throttle_time": 0,
        "error_code": KafkaCode.NONE,
        "producer_id": producer_id,
        "producer_epoch": epoch,
    }


# -- the transaction's contents --------------------------------------------------------------


@handles(
    ApiKey.ADD_PARTITIONS_TO_TXN,
    0,
    5,
    notes={
        3: "flexible encoding",
        4: "many transactional ids, each added or (verify_only) checked; Kafka's broker to"
        " broker verification, so CLUSTER_ACTION first and no WRITE asked (clients send v3"
        " and below); an add that is not verify_only records transaction version 2 in the"
        " transaction's state (Kafka's transactionVersionForAddPartitionsToTxn)",
        5: "a partition verify_only finds outside its transaction is TRANSACTION_ABORTABLE"
        " (KIP-890), INVALID_TXN_STATE at v4",
    },
)
async def handle_add_partitions_to_txn(
    context: RequestContext, request: AddPartitionsToTxnRequest
) -> dict[str, Any]:
    """Adds partitions to the transaction; if any is refused or does not
    exist, none is added (see _refused_partitions), as Kafka does."""
    if context.version >= FIRST_BATCHED_ADD:
        return await _add_partitions_batched(
            context, cast("BrokerAddPartitionsToTxnRequest", request)
        )
    single = cast("ClientAddPartitionsToTxnRequest", request)
    wanted = [(topic.name, list(topic.partitions)) for topic in single.v3_and_below_topics]
    codes = await _add_partitions(
        context,
        single.v3_and_below_transactional_id,
        single.v3_and_below_producer_id,
        single.v3_and_below_producer_epoch,
        wanted,
        client=True,
    )
    return {"throttle_time": 0, "results_by_topic_v3_and_below": _by_topic(wanted, codes)}


FIRST_BATCHED_ADD = 4
"""AddPartitionsToTxn's first version of many transactional ids, sent by
brokers (Kafka's AddPartitionsToTxnManager)."""

FIRST_ABORTABLE_ADD = 5
"""AddPartitionsToTxn's first version that knows TRANSACTION_ABORTABLE."""


async def _add_partitions(
    context: RequestContext,
    transactional_id: str,
    producer_id: int,
    producer_epoch: int,
    wanted: Sequence[tuple[str, Sequence[int]]],
    client: bool,
    verify_only: bool = False,
) -> dict[TopicPartition, int]:
    """One transaction's codes, by partition, as Kafka's
    handleAddPartitionsToTxnRequest answers them: a client (v3 and below)
    must be allowed to WRITE the transactional id and the topics; a broker
    (v4+) was allowed CLUSTER_ACTION instead."""
    engine = context.engine
    codes = _refused_partitions(context, transactional_id, wanted, client)
    if codes:
        return codes
    partitions = [TopicPartition(name, p) for name, ps in wanted for p in ps]
    try:
        if verify_only:
            found = engine.transactions.verify_partitions(
                transactional_id, producer_id, producer_epoch, partitions
            )
            outside = (
                KafkaCode.TRANSACTION_ABORTABLE
                if context.version >= FIRST_ABORTABLE_ADD
                else KafkaCode.INVALID_TXN_STATE
            )
            return {tp: KafkaCode.NONE if inside else outside for tp, inside in found.items()}
        # Kafka's TransactionVersion.transactionVersionForAddPartitionsToTxn:
        # a v4+ add comes from a broker's AddPartitionsToTxnManager, for a
        # Produce of a transactions v2 client, so the state records TV_2.
        version = TV_2 if context.version >= FIRST_BATCHED_ADD else 0
        await _wait(
            engine.transactions.add_partitions(
                transactional_id, producer_id, producer_epoch, partitions, version
            )
        )
        code = KafkaCode.NONE
    except EngineError as error:
        code = _code(context, error, "add_partitions")
    return dict.fromkeys(partitions, code)


async def _add_partitions_batched(
    context: RequestContext, request: BrokerAddPartitionsToTxnRequest
) -> dict[str, Any]:
    """v4+: each transaction of the request on its own, as Kafka answers
    them; without CLUSTER_ACTION the whole request is
    CLUSTER_AUTHORIZATION_FAILED with no results."""
    if not authorize.allowed_on_cluster(context, AclOperation.CLUSTER_ACTION):
        return {
            "throttle_time": 0,
            "error_code": KafkaCode.CLUSTER_AUTHORIZATION_FAILED,
            "results_by_transaction": [],
        }
    results = []
    for transaction in request.transactions:
        wanted = [(topic.name, list(topic.partitions)) for topic in transaction.topics]
        codes = await _add_partitions(
            context,
            transaction.transactional_id,
            transaction.producer_id,
            transaction.producer_epoch,
            wanted,
            client=False,
            verify_only=transaction.verify_only,
        )
        results.append(
            {
                "transactional_id": transaction.transactional_id,
                "topic_results": _by_topic(wanted, codes),
            }
        )
    return {"throttle_time": 0, "error_code": KafkaCode.NONE, "results_by_transaction": results}


def _by_topic(
    wanted: Sequence[tuple[str, Sequence[int]]], codes: dict[TopicPartition, int]
) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "results_by_partition": [
                {"partition_index": p, "partition_error_code": codes[TopicPartition(name, p)]}
                for p in dict.fromkeys(partitions)
            ],
        }
        for name, partitions in _merged(wanted)
    ]


def _refused_partitions(
    context: RequestContext,
    transactional_id: str,
    wanted: Sequence[tuple[str, Sequence[int]]],
    client: bool = True,
) -> dict[TopicPartition, int]:
    """Kafka's handleAddPartitionsToTxnRequest, partition by partition: no
    WRITE on the transactional id refuses them all; else no WRITE on the
    topic (never granted on an internal topic, which takes no transactional
    records) TOPIC_AUTHORIZATION_FAILED, a writable topic or partition that
    does not exist UNKNOWN_TOPIC_OR_PARTITION. If any is refused, the
    others are OPERATION_NOT_ATTEMPTED; if none, the answer is empty."""
    partitions = [TopicPartition(name, p) for name, ps in wanted for p in ps]
    if client and not authorize.may_write_transaction(context, transactional_id):
        return dict.fromkeys(partitions, KafkaCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    names = {tp.topic for tp in partitions}
    unwritable = {name for name in names if is_internal_topic(name)}
    if client:  # a broker (v4+) was allowed CLUSTER_ACTION, which stands for WRITE
        unwritable |= authorize.refused_topics(context, AclOperation.WRITE, names - unwritable)
    existing = set(context.engine.topic_partitions(names - unwritable))
    codes: dict[TopicPartition, int] = {}
    for tp in partitions:
        if tp.topic in unwritable:
            codes[tp] = KafkaCode.TOPIC_AUTHORIZATION_FAILED
        elif tp not in existing:
            codes[tp] = KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
    if not codes:
        return {}
    return {tp: codes.get(tp, KafkaCode.OPERATION_NOT_ATTEMPTED) for tp in partitions}


def _merged(wanted: Iterable[tuple[str, Sequence[int]]]) -> list[tuple[str, list[int]]]:
    """A topic named twice in a request is answered once."""
    merged: dict[str, list[int]] = {}
    for name, partitions in wanted:
        merged.setdefault(name, []).extend(partitions)
    return list(merged.items())


@handles(
    ApiKey.ADD_OFFSETS_TO_TXN,
    0,
    4,
    notes={
        3: "flexible encoding",
        4: "the client knows TRANSACTION_ABORTABLE (KIP-890), which Kafka 4.0 never answers"
        " here: answered as v3",
    },
)
async def handle_add_offsets_to_txn(
    context: RequestContext, request: AddOffsetsToTxnRequest
) -> dict[str, Any]:
    if not authorize.may_write_transaction(context, request.transactional_id):
        return {"throttle_time": 0, "error_code": KafkaCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED}
    if not authorize.may_read_group(context, request.group_id):
        return {"throttle_time": 0, "error_code": KafkaCode.GROUP_AUTHORIZATION_FAILED}
    try:
        await _wait(
            context.engine.transactions.add_offsets(
                request.transactional_id,
                request.producer_id,
                request.producer_epoch,
                request.group_id,
            )
        )
        code = KafkaCode.NONE
    except EngineError as error:
        code = _code(context, error, "add_offsets")
    return {"throttle_time": 0, "error_code": code}


@handles(
    ApiKey.TXN_OFFSET_COMMIT,
    0,
    5,
    notes={
        0: "offsets held by the group coordinator until the transaction ends",
        2: "committed leader epoch",
        3: "flexible encoding; group metadata (KIP-447)",
        4: "a commit outside the producer's open transaction when checked (no"
        " AddOffsetsToTxn for the group, or the transaction ended) is TRANSACTION_ABORTABLE,"
        " as Kafka 4.0's verification answers it (KIP-890), where v3 answers"
        " INVALID_TXN_STATE; one voided after its check (docs/design/0048) is"
        " INVALID_TXN_STATE, as Kafka's verification guard answers it",
        5: "transactions v2 (KIP-890 part 2): the group is added to the transaction"
        " implicitly (no AddOffsetsToTxn), a fenced producer INVALID_PRODUCER_EPOCH, a"
        " transaction being completed COORDINATOR_NOT_AVAILABLE (docs/design/0076)",
    },
)
async def handle_txn_offset_commit(
    context: RequestContext, request: TxnOffsetCommitRequest
) -> dict[str, Any]:
    """Offsets committed in the transaction: checked against it here, kept
    by the group coordinator until the transaction ends."""
    engine = context.engine
    names = {topic.name for topic in request.topics}
    existing = set(engine.topic_partitions(names))
    # Kafka's metadata has the internal topics' partitions: their offsets
    # are committed like any other's.
    existing.update(
        TopicPartition(name, p)
        for name in names
        for p in range(internal_partition_count(name) or 0)
    )
    codes: dict[TopicPartition, int] = {}
    offsets: dict[TopicPartition, OffsetAndMetadata] = {}
    refused: dict[str, KafkaCode]
    if not authorize.may_write_transaction(context, request.transactional_id):
        refused = dict.fromkeys(names, KafkaCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    else:
        refused = authorize.offset_commit_refused(context, request.group_id, names)
    for topic in request.topics:
        for partition in topic.partitions:
            tp = TopicPartition(topic.name, partition.partition_index)
            if topic.name in refused:
                codes[tp] = refused[topic.name]
                continue
            if tp not in existing:
                codes[tp] = KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            offsets[tp] = OffsetAndMetadata(
                partition.committed_offset,
                getattr(partition, "committed_leader_epoch", -1),
                partition.committed_metadata or "",
            )
    if offsets and context.version >= FIRST_TV2_TXN_OFFSET_COMMIT:
        try:
            await _wait(
                engine.transactions.add_offsets(
                    request.transactional_id,
                    request.producer_id,
                    request.producer_epoch,
                    request.group_id,
                    TV_2,
                )
            )
        except EngineError as error:
            codes.update(dict.fromkeys(offsets, implicit_add_code(error, produce=False)))
            offsets = {}
    if offsets:
        check = functools.partial(
            engine.transactions.check_offset_commit,
            request.transactional_id,
            request.producer_id,
            request.producer_epoch,
            request.group_id,
        )
        try:
            groups = getattr(engine, "groups", None)
            if groups is None:
                check()
                codes.update(dict.fromkeys(offsets, KafkaCode.COORDINATOR_NOT_AVAILABLE))
            else:
                committed = await _wait(
                    groups.commit_transactional_offsets(
                        request.group_id,
                        request.producer_id,
                        request.producer_epoch,
                        getattr(request, "member_id", ""),
                        getattr(request, "generation_id", -1),
                        getattr(request, "group_instance_id", None),
                        offsets,
                        # Run by the group coordinator once the commit is
                        # registered, so a transaction ending after the
                        # check voids it (docs/design/0048).
                        check=check,
                    )
                )
                codes.update({tp: committed.get(tp, KafkaCode.NONE) for tp in offsets})
        except EngineError as error:
            knows_abortable = context.version >= _FIRST_ABORTABLE_TXN_OFFSET_COMMIT
            code = transactional_write_code(error, knows_abortable)
            codes.update(dict.fromkeys(offsets, code))
    topics: dict[str, list[dict[str, Any]]] = {}
    for topic in request.topics:
        results = topics.setdefault(topic.name, [])
        for partition in topic.partitions:
            tp = TopicPartition(topic.name, partition.partition_index)
            results.append({"partition_index": tp.partition, "error_code": codes[tp]})
    return {
        "throttle_time": 0,
        "topics": [{"name": name, "partitions": results} for name, results in topics.items()],
    }


FIRST_TV2_TXN_OFFSET_COMMIT = 5
"""TxnOffsetCommit's first version under transactions v2: it adds its group
to the transaction itself (Kafka's addPartition verification)."""


# -- EndTxn ----------------------------------------------------------------------------------


@handles(
    ApiKey.END_TXN,
    0,
    5,
    notes={
        0: "answered once every partition has its marker, durably",
        3: "flexible encoding",
        4: "the client knows TRANSACTION_ABORTABLE (KIP-890), which Kafka 4.0 never answers"
        " here: answered as v3",
        5: "transactions v2 (KIP-890 part 2): every commit or abort bumps the epoch (past"
        " the last one, a new producer id at epoch 0), written in the markers and answered"
        " with the producer id; a retry of the last end is told apart from a fenced producer;"
        " an abort with nothing added ends an empty transaction (docs/design/0076)",
    },
)
async def handle_end_txn(context: RequestContext, request: EndTxnRequest) -> dict[str, Any]:
    """Answered once the transaction is complete: every partition has its
    marker, durably (so a read_committed consumer sees the outcome at once)."""
    v2 = context.version >= FIRST_TV2_END_TXN
    if not authorize.may_write_transaction(context, request.transactional_id):
        return _ended(v2, KafkaCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    try:
        producer_id, producer_epoch = await _wait(
            context.engine.transactions.end_transaction(
                request.transactional_id,
                request.producer_id,
                request.producer_epoch,
                request.committed,
                TV_2 if v2 else 0,
            )
        )
    except EngineError as error:
        return _ended(v2, _code(context, error, "end_txn"))
    return _ended(v2, KafkaCode.NONE, producer_id, producer_epoch)


FIRST_TV2_END_TXN = 5
"""EndTxn's first version under transactions v2 (Kafka's EndTxnRequest
maps v5 to TransactionVersion.TV_2)."""


def _ended(
    v2: bool, code: KafkaCode, producer_id: int = -1, producer_epoch: int = -1
) -> dict[str, Any]:
    """EndTxn's answer; from v5 with the producer id and epoch to go on
    with (-1 and -1 with an error, as Kafka answers)."""
    if not v2:
        return {"throttle_time": 0, "error_code": code}
    return {
        "throttle_time": 0,
        "error_code": code,
        "producer_id": producer_id,
        "producer_epoch": producer_epoch,
    }


# -- admin -----------------------------------------------------------------------------------


@handles(
    ApiKey.DESCRIBE_TRANSACTIONS,
    0,
    0,
    notes={
        0: "a transaction's state, producer and partitions",
    },
)
def handle_describe_transactions(
    context: RequestContext, request: DescribeTransactionsRequest
) -> dict[str, Any]:
    """As Kafka's TransactionCoordinator.handleDescribeTransactions: an empty
    id is INVALID_REQUEST, an unknown (or expiring) one
    TRANSACTIONAL_ID_NOT_FOUND, each beside the schema's defaults."""
    coordinator = context.engine.transactions
    states = []
    # Each id once (see distinct): a transaction's answer lists its partitions.
    for transactional_id in distinct(request.transactional_ids):
        if coordinator.closed:
            # Kafka's coordinator, no longer active, answers before it looks.
            states.append(_not_described(transactional_id, KafkaCode.COORDINATOR_NOT_AVAILABLE))
            continue
        if not transactional_id:
            states.append(_not_described(transactional_id, KafkaCode.INVALID_REQUEST))
            continue
        if not authorize.allowed(
            context, AclOperation.DESCRIBE, authorize.TRANSACTIONAL_ID, transactional_id
        ):
            denied = KafkaCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
            states.append(_not_described(transactional_id, denied))
            continue
        try:
            meta = coordinator.describe(transactional_id)
        except EngineError as error:
            states.append(_not_described(transactional_id, error_code(error)))
            continue
        # As Kafka: only the partitions of topics the principal may DESCRIBE.
        hidden = authorize.refused_topics(
            context, AclOperation.DESCRIBE, (tp.topic for tp in meta.partitions)
        )
        states.append(_described(meta, hidden))
    return {"throttle_time": 0, "transaction_states": states}


def _not_described(transactional_id: str, code: int) -> dict[str, Any]:
    return {
        "error_code": code,
        "transactional_id": transactional_id,
        "transaction_state": "",
        "transaction_timeout": 0,
        "transaction_start_time": 0,
        "producer_id": 0,
        "producer_epoch": 0,
        "topics": [],
    }


def _described(meta: TransactionMetadata, hidden: set[str]) -> dict[str, Any]:
    topics: dict[str, list[int]] = {}
    for tp in sorted(meta.partitions):
        if tp.topic not in hidden:
            topics.setdefault(tp.topic, []).append(tp.partition)
    return {
        "error_code": KafkaCode.NONE,
        "transactional_id": meta.transactional_id,
        "transaction_state": meta.state.value,
        "transaction_timeout": meta.timeout_ms,
        "transaction_start_time": meta.start_ms,
        "producer_id": meta.producer_id,
        "producer_epoch": meta.producer_epoch,
        "topics": [{"topic": name, "partitions": ps} for name, ps in topics.items()],
    }


_STATE_NAMES = {state.value: state for state in TxnState}


@handles(
    ApiKey.LIST_TRANSACTIONS,
    0,
    2,
    notes={
        0: "filters by state and producer id",
        1: "filter by duration",
        2: "filter by transactional id pattern (KIP-1152)",
    },
)
def handle_list_transactions(context: RequestContext, request: ListTransactionsRequest) -> Response:
    if context.engine.transactions.count() > MANY_TRANSACTIONS:
        return off_loop(context, lambda: _list_transactions(context, request))
    return _list_transactions(context, request)


MANY_TRANSACTIONS = 1_000
"""Past this many transactional ids, a ListTransactions is answered on the
admin thread: each id is matched and authorized, and any client with a
transactional id makes one."""


def _list_transactions(context: RequestContext, request: ListTransactionsRequest) -> dict[str, Any]:
    """Kafka's filters: states by name (names it does not know are listed
    back), producer ids, (v1) transactions running longer than
    ``duration_filter`` ms, and (v2) ids a regular expression matches
    whole; an empty or null pattern is no filter, one that does not
    compile is INVALID_REGULAR_EXPRESSION, as Kafka answers."""
    if context.engine.transactions.closed:
        # Kafka's TransactionCoordinator.handleListTransactions, no longer active.
        return _not_listed(KafkaCode.COORDINATOR_NOT_AVAILABLE)
    known = [_STATE_NAMES[s] for s in request.state_filters if s in _STATE_NAMES]
    unknown = [s for s in request.state_filters if s not in _STATE_NAMES]
    # RE2, as Kafka's RE2/J: matched against every transactional id, a
    # pattern must not backtrack (engine/linear_regex.py).
    text = getattr(request, "transactional_id_pattern", None)
    try:
        pattern = compile_linear(text) if text else None
    except InvalidPattern:
        return _not_listed(KafkaCode.INVALID_REGULAR_EXPRESSION)
    found = context.engine.transactions.listing(
        # Filters naming only unknown states match nothing, as in Kafka.
        known if request.state_filters else None,
        request.producer_id_filters,
        getattr(request, "duration_filter", -1),
        pattern,
    )
    listed = [
        {
            "transactional_id": meta.transactional_id,
            "producer_id": meta.producer_id,
            "transaction_state": meta.state.value,
        }
        for meta in found
        # As Kafka: only the transactional ids the principal may describe
        if authorize.allowed(
            context, AclOperation.DESCRIBE, authorize.TRANSACTIONAL_ID, meta.transactional_id
        )
    ]
    return {
        "throttle_time": 0,
        "error_code": KafkaCode.NONE,
        "unknown_state_filters": unknown,
        "transaction_states": listed,
    }


def _not_listed(code: KafkaCode) -> dict[str, Any]:
    return {
        "throttle_time": 0,
        "error_code": code,
        "unknown_state_filters": [],
        "transaction_states": [],
    }


@handles(
    ApiKey.DESCRIBE_PRODUCERS,
    0,
    0,
    notes={
        0: "a partition's producers and open transactions",
    },
)
def handle_describe_producers(
    context: RequestContext, request: DescribeProducersRequest
) -> dict[str, Any]:
    """The active producers of each partition, from its producer state."""
    engine = context.engine
    existing = set(engine.topic_partitions({topic.name for topic in request.topics}))
    unreadable = authorize.refused_topics(
        context, AclOperation.READ, (t.name for t in request.topics)
    )
    topics = []
    # Each partition once (see distinct): its answer lists every producer
    # that wrote to it, as many as asked InitProducerId.
    asked: set[TopicPartition] = set()
    for topic in request.topics:
        partitions: list[dict[str, Any]] = []
        for index in topic.partition_indexes:
            if TopicPartition(topic.name, index) in asked:
                continue
            asked.add(TopicPartition(topic.name, index))
            if topic.name in unreadable:
                partitions.append(
                    {
                        "partition_index": index,
                        "error_code": KafkaCode.TOPIC_AUTHORIZATION_FAILED,
                        "error_message": None,
                        "active_producers": [],
                    }
                )
                continue
            if TopicPartition(topic.name, index) not in existing:
                partitions.append(
                    {
                        "partition_index": index,
                        "error_code": KafkaCode.UNKNOWN_TOPIC_OR_PARTITION,
                        "error_message": None,  # as from Kafka
                        "active_producers": [],
                    }
                )
                continue
            try:
                producers = engine.partition(topic.name, index).describe_producers()
            except EngineError as error:
                partitions.append(
                    {
                        "partition_index": index,
                        "error_code": error_code(error),
                        "error_message": str(error),
                        "active_producers": [],
                    }
                )
                continue
            partitions.append(
                {
                    "partition_index": index,
                    "error_code": KafkaCode.NONE,
                    "error_message": None,
                    "active_producers": [p._asdict() for p in producers],
                }
            )
        if partitions or not topic.partition_indexes:
            topics.append({"name": topic.name, "partitions": partitions})
    return {"throttle_time": 0, "topics": topics}
