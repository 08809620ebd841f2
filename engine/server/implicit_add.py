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
"""

from __future__ import annotations

from concurrent.futures import Future

from engine.errors import EngineError
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
