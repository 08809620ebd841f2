"""CreateTopics, DeleteTopics and CreatePartitions.

These run on the server's admin thread, not the event loop (each is
registered with handles_off_loop): creating or deleting thousands of topics
takes a second or two, during which the event loop keeps serving every
other connection."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from engine.authorization import TopicAuthorizationFailed
from engine.config import ConfigEntry
from engine.errors import EngineError, error_code
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server import authorize
from engine.server.authorizer import AclOperation
from engine.server.context import Body, RequestContext, error_message
from engine.server.handlers import replica_assignments, topic_deletions
from engine.server.handlers.common import (
    MAX_RECORDS_PER_REQUEST,
    TOO_LARGE_BATCH_OPERATION,
    topic_names_by_id,
    uuid_bytes,
)
from engine.server.handlers.configs import config_type_code
from engine.server.handlers.registry import handles_off_loop
from engine.server.mutation_quotas import Mutations, ThrottlingQuotaExceeded
from engine.types import NewTopic, TopicDescription

if TYPE_CHECKING:
    # The kio request classes, for the handlers' annotations only: importing
    # every version's class costs the server's start hundreds of modules.
    from engine.server.handlers.requests import (
        CreatePartitionsRequest,
        CreateTopicsRequest,
        DeleteTopicsRequest,
    )


class _Config(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> str | None: ...


class _CreatableTopic(Protocol):
    """A topic as every version of CreateTopics asks for it."""

    @property
    def name(self) -> str: ...
    @property
    def num_partitions(self) -> int: ...
    @property
    def replication_factor(self) -> int: ...
    @property
    def assignments(self) -> Sequence[replica_assignments.TopicAssignment]: ...
    @property
    def configs(self) -> Sequence[_Config]: ...


def _partitions_wanted(context: RequestContext, topic: _CreatableTopic) -> int:
    count = len(topic.assignments) or topic.num_partitions
    return context.engine.broker_configs.num_partitions if count == -1 else max(count, 0)


def _mutations(context: RequestContext, strict_from: int) -> Mutations:
    """The request's controller mutation quota (KIP-599): strict from the
    version that knows THROTTLING_QUOTA_EXCEEDED, permissive before it."""
    quotas = context.server.mutations
    strict = context.version >= strict_from
    if quotas is None:
        return Mutations(None, None, strict)
    return quotas.for_request(context.identity.principal, context.header.client_id, strict)


@handles_off_loop(
    ApiKey.CREATE_TOPICS,
    2,
    7,
    notes={
        2: "replication factor 1, or assignments naming this broker",
        4: "default partitions and replication factor (-1)",
        5: "flexible encoding; configs in the answer",
        7: "topic ids in the answer",
    },
)
def handle_create_topics(context: RequestContext, request: CreateTopicsRequest) -> Body:
    """Creates every topic it may with one manifest commit and one catalog
    record."""
    records = sum(1 + _partitions_wanted(context, topic) for topic in request.topics)
    if records > MAX_RECORDS_PER_REQUEST:
        refused = {
            "topic_id": bytes(16),
            "error_code": KafkaCode.POLICY_VIOLATION,
            "error_message": TOO_LARGE_BATCH_OPERATION,
            "num_partitions": -1,
            "replication_factor": -1,
            "configs": None,
        }
        return {"throttle_time": 0, "topics": [{"name": t.name, **refused} for t in request.topics]}
    # As Kafka's ControllerApis: a name given more than once is answered
    # once, INVALID_REQUEST, and none of its entries is created.
    counts = Counter(topic.name for topic in request.topics)
    duplicates = [name for name, count in counts.items() if count > 1]
    unique = [topic for topic in request.topics if counts[topic.name] == 1]
    mutations = _mutations(context, strict_from=6)
    return _create_topics(
        context, unique, duplicates, request.validate_only, mutations, _timeout_ms(request)
    )


def _timeout_ms(request: Any) -> int | None:
    """The request's timeout_ms, which bounds how long its change waits for
    an object store failing transiently, as Kafka's controller bounds it
    (REQUEST_TIMED_OUT past it: engine.AdminTimedOut). None (unbounded, the
    store's own retries) for 0 or less: Kafka's clients send 0 to mean
    "do not wait for the change to spread", not "give up at once"."""
    timeout_ms = round(request.timeout.total_seconds() * 1000)
    return timeout_ms if timeout_ms > 0 else None


def _create_topics(
    context: RequestContext,
    requested: Sequence[_CreatableTopic],
    duplicates: Sequence[str],
    validate_only: bool,
    mutations: Mutations,
    timeout_ms: int | None = None,
) -> Body:
    node = context.server.broker.node_id
    results: dict[str, dict[str, Any]] = {}
    wanted: list[NewTopic] = []
    may_create_any = authorize.allowed_on_cluster(context, AclOperation.CREATE)
    for topic in requested:
        if not may_create_any and not authorize.may_create_topic(context, topic.name):
            refused = TopicAuthorizationFailed(
                context.identity.principal, AclOperation.CREATE, topic.name
            )
            results[topic.name] = _create_failed(topic.name, refused)
            continue
        try:
            replica_assignments.check_new_topic(
                topic.assignments, topic.num_partitions, topic.replication_factor, node
            )
        except EngineError as error:
            results[topic.name] = _create_failed(topic.name, error)
            continue
        if mutations.refused():
            results[topic.name] = _create_failed(topic.name, ThrottlingQuotaExceeded())
            continue
        if not validate_only:
            mutations.record(_partitions_wanted(context, topic))
        partitions = len(topic.assignments) or topic.num_partitions
        configs = {c.name: c.value for c in topic.configs}
        wanted.append(NewTopic(topic.name, partitions, configs, topic.replication_factor))
    created: list[TopicDescription | EngineError]
    try:
        created = list(
            context.engine.create_topics(
                wanted,
                validate_only=validate_only,
                principal=authorize.actor(context),
                timeout_ms=timeout_ms,
            )
        )
    except EngineError as error:  # the store failed: none was created
        created = [error] * len(wanted)
    for new, outcome in zip(wanted, created, strict=True):
        if isinstance(outcome, EngineError):
            results[new.name] = _create_failed(new.name, outcome)
        else:
            # As Kafka's controller (authorizedToReturnConfigs): the configs,
            # partition count and replication factor only to whom
            # DescribeConfigs would show them; to others their defaults, -1.
            described = authorize.allowed(
                context, AclOperation.DESCRIBE_CONFIGS, authorize.TOPIC, new.name
            )
            results[new.name] = {
                "name": new.name,
                "topic_id": outcome.topic_id,
                "error_code": KafkaCode.NONE,
                "error_message": None,
                "num_partitions": len(outcome.partitions) if described else -1,
                "replication_factor": 1 if described else -1,
                "configs": [_created_config(entry) for entry in outcome.configs]
                if described
                else [],
                "topic_config_error_code": KafkaCode.NONE
                if described
                else KafkaCode.TOPIC_AUTHORIZATION_FAILED,
            }
    topics = [results[topic.name] for topic in requested]
    topics += [
        _create_failed(name, _DuplicateTopic("Duplicate topic name.")) for name in duplicates
    ]
    return {"throttle_time": mutations.throttle_ms(), "topics": topics}


def _create_failed(name: str, error: EngineError) -> dict[str, Any]:
    return {
        "name": name,
        "topic_id": bytes(16),
        "error_code": error_code(error),
        "error_message": error_message(error),
        "num_partitions": -1,
        "replication_factor": -1,
        "configs": None,
    }


class _DuplicateTopic(EngineError):
    code = KafkaCode.INVALID_REQUEST


def _created_config(entry: ConfigEntry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "value": entry.value,
        "read_only": entry.read_only,
        "config_source": int(entry.source),
        "is_sensitive": entry.sensitive,
        "config_type": config_type_code(entry),
    }


@handles_off_loop(
    ApiKey.DELETE_TOPICS,
    1,
    6,
    notes={
        4: "flexible encoding",
        5: "error messages",
        6: "topics by id",
    },
)
def handle_delete_topics(context: RequestContext, request: DeleteTopicsRequest) -> Body:
    # Imported on the first DeleteTopics, not at start.
    from kio.schema.delete_topics.v6.request import (  # noqa: PLC0415
        DeleteTopicsRequest as DeleteTopicsRequestV6,
    )

    wanted: list[tuple[str | None, bytes]]
    if isinstance(request, DeleteTopicsRequestV6):  # topics by name or id
        wanted = [(t.name, uuid_bytes(t.topic_id)) for t in request.topics]
    else:
        wanted = [(name, bytes(16)) for name in request.topic_names]
    wanted, malformed = topic_deletions.malformed(wanted)
    answer = _delete_topics(
        context, wanted, _mutations(context, strict_from=5), _timeout_ms(request)
    )
    return {**answer, "responses": [*answer["responses"], *malformed]}


def _delete_topics(
    context: RequestContext,
    wanted: list[tuple[str | None, bytes]],
    mutations: Mutations,
    timeout_ms: int | None = None,
) -> Body:
    """Deletes every named topic with one catalog record and one manifest
    commit; answers in the request's order."""
    engine = context.engine
    by_id: dict[bytes, str] | None = None
    named: list[tuple[str | None, bytes]] = []
    for given, given_id in wanted:
        name = given
        if name is None:
            by_id = by_id if by_id is not None else topic_names_by_id(context)
            name = by_id.get(given_id)
        named.append((name, given_id))
    refused = authorize.refused_topics(
        context, AclOperation.DELETE, (name for name, _ in named if name is not None)
    )
    # As Kafka: a name and an id of the same topic, to one who may delete it;
    # by the topic's id, which the entry by id gave
    twice = {n for n, count in Counter(n for n, _ in named).items() if n and count > 1}
    given_twice = {n: i for n, i in named if n in twice and i != topic_deletions.ZERO_ID}
    names: list[str] = []
    throttled: set[str] = set()
    ids: dict[str, bytes] = {}
    # Each name once here: topic_deletions refused the others.
    skipped = refused | set(given_twice)
    for name in (n for n, _ in named if n is not None and n not in skipped):
        if mutations.refused():
            throttled.add(name)
            continue
        with contextlib.suppress(EngineError):  # an unknown topic fails below
            ids[name] = engine.topic_id(name)
            mutations.record(engine.topic_shape(name)[1])
        names.append(name)
    outcomes: list[EngineError | None]
    try:
        outcomes = list(
            engine.delete_topics(names, principal=authorize.actor(context), timeout_ms=timeout_ms)
        )
    except EngineError as error:
        outcomes = [error] * len(names)
    deleted = iter(outcomes)
    responses = []
    for name, given_id in named:
        if name is None:
            responses.append(
                {
                    "name": None,
                    "topic_id": given_id,
                    "error_code": KafkaCode.UNKNOWN_TOPIC_ID,
                    "error_message": "no topic has this id",
                }
            )
            continue
        if name in refused:
            denied = TopicAuthorizationFailed(context.identity.principal, AclOperation.DELETE, name)
            # By id, the name is not told to one who may not delete it.
            responses.append(
                {
                    "name": name if given_id == bytes(16) else None,
                    "topic_id": given_id,
                    "error_code": denied.code,
                    "error_message": error_message(denied),
                }
            )
            continue
        if name in given_twice:
            # Kafka's ControllerApis.deleteTopics answers the entry by name
            # alone, with the id, and drops the entry by id
            if given_id == topic_deletions.ZERO_ID:
                topic_id = given_twice[name]
                responses.append(
                    topic_deletions.refusal(name, topic_id, topic_deletions.MAPS_TO_A_GIVEN_ID)
                )
            continue
        outcome = ThrottlingQuotaExceeded() if name in throttled else next(deleted)
        code = KafkaCode.NONE if outcome is None else error_code(outcome)
        message = None if outcome is None else error_message(outcome)
        responses.append(
            {
                "name": name,
                "topic_id": ids.get(name, given_id),
                "error_code": code,
                "error_message": message,
            }
        )
    return {"throttle_time": mutations.throttle_ms(), "responses": responses}


@handles_off_loop(
    ApiKey.CREATE_PARTITIONS,
    0,
    3,
    notes={
        0: "grows a topic",
        2: "flexible encoding",
    },
)
def handle_create_partitions(context: RequestContext, request: CreatePartitionsRequest) -> Body:
    mutations = _mutations(context, strict_from=3)
    # As Kafka's ControllerApis.createPartitions: a name given more than
    # once is answered once, INVALID_REQUEST, and that topic does not grow.
    counts = Counter(topic.name for topic in request.topics)
    duplicates = [
        _grown(name, KafkaCode.INVALID_REQUEST, "Duplicate topic name.")
        for name, count in counts.items()
        if count > 1
    ]
    unique = [topic for topic in request.topics if counts[topic.name] == 1]
    refused = authorize.refused_topics(context, AclOperation.ALTER, (t.name for t in unique))
    if refused:
        code = KafkaCode.TOPIC_AUTHORIZATION_FAILED
        allowed = [t for t in unique if t.name not in refused]
        answer = (
            _grow(context, allowed, request.validate_only, mutations, _timeout_ms(request))
            if allowed
            else []
        )
        by_name = {r["name"]: r for r in answer}
        results = [by_name.get(t.name) or _grown(t.name, code, None) for t in unique]
    else:
        results = _grow(context, unique, request.validate_only, mutations, _timeout_ms(request))
    return {"throttle_time": mutations.throttle_ms(), "results": results + duplicates}


def _grow(
    context: RequestContext,
    topics: Sequence[Any],
    validate_only: bool,
    mutations: Mutations,
    timeout_ms: int | None = None,
) -> list[dict[str, Any]]:
    engine = context.engine
    added: dict[str, int] = {}
    for topic in topics:
        with contextlib.suppress(EngineError):  # an unknown topic fails on its own below
            added[topic.name] = max(topic.count - engine.topic_shape(topic.name)[1], 0)
    if sum(added.values()) > MAX_RECORDS_PER_REQUEST:
        too_large = TOO_LARGE_BATCH_OPERATION
        return [_grown(t.name, KafkaCode.POLICY_VIOLATION, too_large) for t in topics]
    refused: list[dict[str, Any]] = []
    valid = []
    node = context.server.broker.node_id
    for topic in topics:
        try:
            if added.get(topic.name, 0) > 0:  # else the engine answers why it does not grow
                replica_assignments.check_added_partitions(
                    topic.assignments, added[topic.name], node
                )
        except EngineError as invalid:
            refused.append(_grown(topic.name, error_code(invalid), error_message(invalid)))
            continue
        valid.append(topic)
    topics = valid
    throttled: list[dict[str, Any]] = []
    if mutations.strict or not validate_only:
        kept = []
        for topic in topics:
            if mutations.refused():
                error = ThrottlingQuotaExceeded()
                throttled.append(_grown(topic.name, error_code(error), error_message(error)))
                continue
            kept.append(topic)
            if not validate_only:
                mutations.record(added.get(topic.name, 0))
        topics = kept
    outcomes: list[EngineError | None]
    try:
        outcomes = engine.create_partitions_many(
            [(topic.name, topic.count) for topic in topics],
            validate_only=validate_only,
            timeout_ms=timeout_ms,
        )
    except EngineError as error:  # the store failed: no topic grew
        outcomes = [error] * len(topics)
    results = []
    names = [topic.name for topic in topics]
    for name, outcome in zip(names, outcomes, strict=True):
        code = KafkaCode.NONE if outcome is None else error_code(outcome)
        message = None if outcome is None else error_message(outcome)
        results.append(_grown(name, code, message))
    return results + throttled + refused


def _grown(name: str, code: int, message: str | None) -> dict[str, Any]:
    return {"name": name, "error_code": code, "error_message": message}
