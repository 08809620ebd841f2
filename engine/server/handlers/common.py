"""Small pieces several handlers share."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from engine.engine import READ_COMMITTED, READ_UNCOMMITTED
from engine.errors import EngineError, InvalidTopic, NotInTransaction, TopicExists, error_code
from engine.internal_topics import INTERNAL_TOPIC_IDS, internal_partition_exists, is_internal_topic
from engine.partition import Partition
from engine.protocol.kafka_code import KafkaCode
from engine.server import authorize, authorizer
from engine.server.authorizer import AUTHORIZED_OPERATIONS_OMITTED, ResourceType
from engine.server.context import NOBODY, RequestContext
from engine.types import NewTopic

log = logging.getLogger("tidelog.server")


MAX_RECORDS_PER_REQUEST = 10_000
"""Kafka's controller refuses an operation that would write more metadata
records than this (one per topic, one per partition) with POLICY_VIOLATION
(QuorumController's MAX_RECORDS_PER_USER_OP); the bound also keeps one
request from holding this server for long."""
TOO_LARGE_BATCH_OPERATION = "Unable to perform excessively large batch operation."
"""The message Kafka's controller refuses such an operation with."""


def distinct(names: Iterable[str]) -> list[str]:
    """Each name once, in the order first given: what a describe request
    naming groups answers. The answer about a group is the size of the
    group (its members' metadata and assignments, as large as requests
    that set them), so a request naming a large group a thousand times
    would be answered with a thousand copies; Kafka's clients never name
    one twice (the Java admin client asks by a set, librdkafka refuses
    duplicates)."""
    return list(dict.fromkeys(names))


def millis(value: Any) -> int:
    """A kio duration (timedelta) or plain number as whole milliseconds."""
    if isinstance(value, datetime.timedelta):
        return round(value.total_seconds() * 1000)
    return int(value)


UNKNOWN_ISOLATION_LEVEL = KafkaCode.UNKNOWN_SERVER_ERROR
"""What a Fetch or ListOffsets naming an isolation level other than 0 and 1
is answered, for the whole request: Kafka's IsolationLevel.forId throws an
IllegalArgumentException, which KafkaApis.handle answers with the request's
error response, and Errors.forException maps any exception that is not an
ApiException to UNKNOWN_SERVER_ERROR."""


def isolation_level(request: Any) -> str | None:
    """The request's isolation level (read_uncommitted before the field
    existed), None for an id Kafka does not know."""
    wire_id = getattr(request, "isolation_level", 0)
    return {0: READ_UNCOMMITTED, 1: READ_COMMITTED}.get(wire_id)


def leader_epoch_error(context: RequestContext, current_leader_epoch: int) -> KafkaCode:
    """The error for a request made under another leader epoch (KIP-320):
    -1 means the client does not know the epoch and skips the check."""
    ours = context.engine.leader_epoch
    if current_leader_epoch < 0 or current_leader_epoch == ours:
        return KafkaCode.NONE
    if current_leader_epoch < ours:
        return KafkaCode.FENCED_LEADER_EPOCH
    return KafkaCode.UNKNOWN_LEADER_EPOCH


def leader_or_error(
    context: RequestContext, topic: str, partition: int, current_leader_epoch: int
) -> tuple[KafkaCode, Partition | None]:
    """A partition's leader (None for an internal topic's, which has no
    log) with NONE, or the error Kafka's ReplicaManager answers first: a
    partition that does not exist, then a request made under another leader
    epoch. Fetch, ListOffsets and OffsetForLeaderEpoch alike."""
    leader = None
    if is_internal_topic(topic):
        if not internal_partition_exists(partition):
            return KafkaCode.UNKNOWN_TOPIC_OR_PARTITION, None
    else:
        try:
            leader = context.engine.partition(topic, partition)
        except EngineError as error:
            return error_code(error), None
    return leader_epoch_error(context, current_leader_epoch), leader


def transactional_write_code(error: BaseException, knows_abortable: bool) -> int:
    """The code of a refused transactional write (Produce, TxnOffsetCommit)
    for a client that knows TRANSACTION_ABORTABLE (``knows_abortable``: the
    request's version says so) or not: a write outside its producer's open
    transaction is refused by Kafka's verification, TRANSACTION_ABORTABLE
    to the first, INVALID_TXN_STATE to the second (NotInTransaction)."""
    if knows_abortable and isinstance(error, NotInTransaction):
        return KafkaCode.TRANSACTION_ABORTABLE
    return error_code(error)


def implicit_add_code(error: BaseException, produce: bool) -> int:
    """The code of a refused implicit add to a transaction (transactions
    v2: Produce v12 adds its partitions, TxnOffsetCommit v5 its group), as
    Kafka's AddPartitionsToTxnManager and ReplicaManager convert the
    coordinator's answer for a write: a fenced producer is
    INVALID_PRODUCER_EPOCH, and a coordinator busy with the transaction
    (or not there) asks for a retry: to a producer CONCURRENT_TRANSACTIONS
    as it is (Kafka 4 keeps it for a transactions v2 Produce, KAFKA-18662:
    its client retries it, and it is the answer while a transaction
    completes) and the others NOT_ENOUGH_REPLICAS; to an offset commit
    COORDINATOR_NOT_AVAILABLE (as the group coordinator normalizes
    NOT_ENOUGH_REPLICAS)."""
    code = error_code(error)
    if code == KafkaCode.PRODUCER_FENCED:
        return KafkaCode.INVALID_PRODUCER_EPOCH
    if code in _RETRIED_ADD_CODES:
        if not produce:
            return KafkaCode.COORDINATOR_NOT_AVAILABLE
        if code != KafkaCode.CONCURRENT_TRANSACTIONS:
            return KafkaCode.NOT_ENOUGH_REPLICAS
    return code


_RETRIED_ADD_CODES = frozenset(
    {
        KafkaCode.CONCURRENT_TRANSACTIONS,
        KafkaCode.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaCode.COORDINATOR_NOT_AVAILABLE,
        KafkaCode.NOT_COORDINATOR,
    }
)


def topic_names_by_id(context: RequestContext) -> dict[bytes, str]:
    engine = context.engine
    by_id = {engine.topic_id(name): name for name in engine.list_topics()}
    by_id.update((topic_id, name) for name, topic_id in INTERNAL_TOPIC_IDS.items())
    return by_id


def authorized_operations(
    context: RequestContext, resource_type: ResourceType, name: str, requested: bool
) -> int:
    """KIP-430: the operations the connection may perform on the resource
    (a bitfield of AclOperation codes) when the request asks for them, else
    Kafka's sentinel."""
    if not requested:
        return AUTHORIZED_OPERATIONS_OMITTED
    identity = context.identity
    return authorizer.authorized_operations(
        context.server.authorizer, identity.principal, resource_type, name, identity.host
    )


def client_host(context: RequestContext) -> str:
    """A group member's host as Kafka records it: the peer's address as
    Java prints an InetAddress ("/127.0.0.1"); empty in-process."""
    host = context.identity.host
    return "" if host == NOBODY.host else f"/{host}"


def uuid_bytes(value: Any) -> bytes:
    """kio decodes UUID fields as uuid.UUID (or None for the zero UUID)."""
    if value is None:
        return bytes(16)
    return bytes(value.bytes) if hasattr(value, "bytes") else bytes(value)


AUTO_CREATE_TIMEOUT_MS = 1000
"""How long an auto-creation retries an object store failing transiently:
Kafka's broker answers the request at once and leaves the creation to its
controller; here it runs on the one admin thread, where a creation retried
through an outage would hold up every admin request behind it (and their
timeout_ms). Past it, the topic is answered UNKNOWN_TOPIC_OR_PARTITION and
the client's next request tries again (a write that is only slow is not
cut short: the bound is on retries)."""


def auto_create_topics(context: RequestContext, names: list[str]) -> dict[str, KafkaCode]:
    """Creates unknown topics a request names (with the broker's default
    partition count, all in one step); returns the error code of each one
    that was not created. As in Kafka 4, where the broker asks the
    controller to create them all in one request: beyond the controller's
    bound of metadata records (MAX_RECORDS_PER_REQUEST) none is created and
    each is answered UNKNOWN_TOPIC_OR_PARTITION. Creating one needs CREATE
    on the cluster or the topic (TOPIC_AUTHORIZATION_FAILED)."""
    engine = context.engine
    refused = {
        name: KafkaCode.TOPIC_AUTHORIZATION_FAILED
        for name in names
        if not authorize.may_create_topic(context, name)
    }
    if refused:
        names = [name for name in names if name not in refused]
        if not names:
            return refused
        return refused | auto_create_topics(context, names)
    records = len(names) * (1 + engine.broker_configs.num_partitions)
    if records > MAX_RECORDS_PER_REQUEST:
        code = KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
        log.warning(
            "not creating %d topics at once (%d metadata records, more than %d)",
            len(names),
            records,
            MAX_RECORDS_PER_REQUEST,
        )
        return dict.fromkeys(names, code)
    try:
        # The asker's: a topic the defaults govern has its creation recorded.
        outcomes: Sequence[object] = engine.create_topics(
            [NewTopic(name) for name in names],
            principal=authorize.actor(context),
            timeout_ms=AUTO_CREATE_TIMEOUT_MS,
        )
    except EngineError as error:
        outcomes = [error] * len(names)
    return {
        name: _failed_creation(name, outcome)
        for name, outcome in zip(names, outcomes, strict=True)
        # created meanwhile by another request: described as it is
        if isinstance(outcome, EngineError) and not isinstance(outcome, TopicExists)
    }


def _failed_creation(name: str, error: EngineError) -> KafkaCode:
    """What Kafka 4 answers for a topic whose auto-creation failed: a name
    it refuses is INVALID_TOPIC_EXCEPTION (DefaultAutoTopicCreationManager
    checks names before asking the controller); any other topic is
    answered UNKNOWN_TOPIC_OR_PARTITION, in every Metadata version, whatever
    the controller then makes of the creation (its failure is only
    logged): the client asks again, and the next request tries again. A
    refused object-store write (KAFKA_STORAGE_ERROR elsewhere) is one."""
    if isinstance(error, InvalidTopic):
        return error.code
    log.warning("auto-creation of topic %r failed: %s", name, error)
    return KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
