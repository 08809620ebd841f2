"""Whom a Produce's transactional batches speak for.

Kafka's KafkaApis.handleProduceRequest asks WRITE on the request's
transactional id whenever a partition's first batch is transactional, and a
request naming no transactional id is refused outright; its transaction
verification then refuses a batch whose producer id is not that
transactional id's (INVALID_PRODUCER_ID_MAPPING). Without both, a
principal allowed to write a topic could append to another producer's open
transaction there (its producer id, epoch and sequence are what
DescribeProducers shows), and the owner's commit would commit it too.

The batch header is read where it lies in the request (nothing is
validated here: a batch too short to say is refused by validation later).
"""

from __future__ import annotations

import struct
from collections.abc import Container

from engine.errors import EngineError, InvalidProducerIdMapping
from engine.protocol.produce import ProduceRequest
from engine.transactions.coordinator import TransactionCoordinator
from native.records import HEADER_SIZE, MAX_MAGIC, TRANSACTIONAL_BIT

_MAGIC_AT = 16
_ATTRIBUTES = struct.Struct(">h")
_ATTRIBUTES_AT = 21
_PRODUCER = struct.Struct(">qh")
_PRODUCER_AT = 43
"""The producer id and epoch."""


def transactional_producer(records: memoryview | None) -> tuple[int, int] | None:
    """The producer id and epoch of ``records``' first batch if that batch is
    a transactional v2 batch, else None (Kafka's RequestUtils looks at the
    first batch of each partition too)."""
    if records is None or len(records) < HEADER_SIZE or records[_MAGIC_AT] != MAX_MAGIC:
        return None
    (attributes,) = _ATTRIBUTES.unpack_from(records, _ATTRIBUTES_AT)
    if not attributes & TRANSACTIONAL_BIT:
        return None
    producer_id, producer_epoch = _PRODUCER.unpack_from(records, _PRODUCER_AT)
    return int(producer_id), int(producer_epoch)


def has_transactional_records(request: ProduceRequest) -> bool:
    """Whether some partition's first batch is transactional."""
    return any(
        transactional_producer(partition.records) is not None
        for topic in request.topics
        for partition in topic.partitions
    )


def speaks_for_several(request: ProduceRequest, refused: Container[str]) -> bool:
    """Whether the first batches of the partitions of topics not ``refused``
    are transactional batches of more than one producer (id and epoch):
    Kafka's ReplicaManager.handleProduceAppend then refuses the whole
    request (InvalidPidMappingException) before it verifies any."""
    producers = {
        producer
        for topic in request.topics
        if topic.name not in refused
        for partition in topic.partitions
        if (producer := transactional_producer(partition.records)) is not None
    }
    return len(producers) > 1


def producer_refused(
    transactions: TransactionCoordinator, transactional_id: str | None, records: memoryview | None
) -> EngineError | None:
    """Why a partition's records may not be appended under the request's
    ``transactional_id``: their first batch is transactional and its
    producer is not that transactional id's. None if they may."""
    producer = transactional_producer(records)
    if producer is None:
        return None
    producer_id = producer[0]
    try:
        if transactional_id is None:  # refused for the whole request before this
            raise InvalidProducerIdMapping("transactional records need a transactional id")
        transactions.check_producer(transactional_id, producer_id)
    except EngineError as error:
        return error
    return None
