"""A transactional Produce's implicit add to its transaction (transactions
v2, KIP-890 part 2).

From Produce v12 a transactional producer sends no AddPartitionsToTxn:
Kafka's ReplicaManager asks the coordinator to add each partition whose
first batch is transactional (AddPartitionsToTxnManager with the
addPartition operation) before it appends. Here the coordinator is in
process: the add is one state write for the whole request, started before
the handler returns so that a request read after this one cannot append
ahead of it (the coordinator refuses a second add while the first is
written, and needs_add sends a later request to the add while it is).

Only partitions the request could append to are added: the request must
speak for one producer of a transactional id its principal may write,
and each partition must exist, be writable by the principal and not be
internal; anything else is refused by the Produce handler as before,
with nothing added. With auto-creation on, the Produce handler would
create an unknown topic and then append to it: the topic is created here
first, so that its partitions are added like any other (else the append
would find a partition outside the transaction, TRANSACTION_ABORTABLE).

An add refused CONCURRENT_TRANSACTIONS (the producer's previous
transaction still being completed, which a transactions v2 client meets
at its next transaction's first Produce) is asked again, as Kafka 4's
ReplicaManager does (KAFKA-18654: the client's produce back-off and a
whole Produce sent again cost more than a short wait here): every
``add_partitions_to_txn_retry_backoff_ms`` until
``add_partitions_to_txn_retry_backoff_max_ms`` have passed since the
first ask, then the last refusal is the answer. The waits are the event
loop's timers, so everyone else is served meanwhile.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

from engine import clock
from engine.errors import ConcurrentTransactions, EngineError
from engine.internal_topics import is_internal_topic
from engine.protocol.produce import ProduceRequest
from engine.server import authorize
from engine.server.authorizer import AclOperation
from engine.server.context import RequestContext
from engine.server.handlers.common import auto_create_topics
from engine.server.transactional_produce import transactional_producer
from engine.transactions.metadata import TV_2
from engine.types import TopicPartition

FIRST_TV2_PRODUCE_VERSION = 12
"""Produce's first version under transactions v2 (Kafka's ProduceRequest:
v12 adds the transaction's partitions implicitly)."""


def implicit_add(
    context: RequestContext, request: ProduceRequest, transactional_id: str
) -> tuple[Future[None], list[TopicPartition]] | None:
    """The add of the request's transactional partitions to its producer's
    transaction, started now, and the partitions it adds; None when there
    is nothing to add (no transactional batch, partitions already in the
    open transaction) or the request is refused before any add."""
    producers = set()
    wanted: list[TopicPartition] = []
    for topic in request.topics:
        for partition in topic.partitions:
            producer = transactional_producer(partition.records)
            if producer is not None:
                producers.add(producer)
                wanted.append(TopicPartition(topic.name, partition.partition))
    if len(producers) != 1 or not authorize.may_write_transaction(context, transactional_id):
        return None
    ((producer_id, producer_epoch),) = producers
    names = {tp.topic for tp in wanted if not is_internal_topic(tp.topic)}
    names -= authorize.refused_topics(context, AclOperation.WRITE, names)
    _create_unknown(context, request, [tp.topic for tp in wanted if tp.topic in names])
    existing = set(context.engine.topic_partitions(names))
    partitions = [tp for tp in dict.fromkeys(wanted) if tp in existing]
    transactions = context.engine.transactions
    if not partitions or not transactions.needs_add(
        transactional_id, producer_id, producer_epoch, partitions
    ):
        return None
    try:
        added = transactions.add_partitions(
            transactional_id, producer_id, producer_epoch, partitions, TV_2
        )
    except EngineError as error:  # refused at once: answered per partition
        added = Future()
        added.set_exception(error)
    return added, partitions


async def added_within_window(
    context: RequestContext,
    request: ProduceRequest,
    transactional_id: str,
    added: Future[None],
    partitions: list[TopicPartition],
) -> tuple[EngineError | None, list[TopicPartition]]:
    """Waits for the add ``implicit_add`` started; while the coordinator
    refuses it CONCURRENT_TRANSACTIONS and the window is open, pauses and
    asks again. Returns the refusal (None once added, or when asking again
    finds nothing to add) and the partitions the last ask named."""
    config = context.engine.config.transactions
    window_s = config.add_partitions_to_txn_retry_backoff_max_ms / 1000
    pause_s = config.add_partitions_to_txn_retry_backoff_ms / 1000
    started = clock.monotonic()
    while True:
        try:
            await asyncio.wrap_future(added)
            return None, partitions
        except ConcurrentTransactions as error:
            # Kafka's ReplicaManager (maybeRetryOnConcurrentTransactions)
            # answers what it has once the window has passed at an answer.
            if clock.monotonic() - started >= window_s:
                return error, partitions
        except EngineError as error:
            return error, partitions
        await asyncio.sleep(pause_s)
        try:
            again = implicit_add(context, request, transactional_id)
        except EngineError as error:  # the engine closed meanwhile: answered as refused
            return error, partitions
        if again is None:  # added meanwhile, or refused before any add
            return None, partitions
        added, partitions = again


_VALID_ACKS = (-1, 0, 1)
"""A request with other acks is refused whole by the Produce handler,
which then creates no topic either."""


def _create_unknown(context: RequestContext, request: ProduceRequest, names: list[str]) -> None:
    """Creates the topics among ``names`` (writable, not internal, named by
    a transactional batch) that do not exist, as the Produce handler's
    auto-creation would (common.auto_create_topics), before they are added.
    A topic it cannot create stays unknown: the handler tries again and
    answers why."""
    engine = context.engine
    if not engine.broker_configs.auto_create_topics or request.acks not in _VALID_ACKS:
        return
    unknown = [name for name in dict.fromkeys(names) if not engine.has_topic(name)]
    if unknown:
        auto_create_topics(context, unknown)
