"""DescribeClientQuotas and AlterClientQuotas (KIP-546): the client quotas
of user and client-id entities, described by filter and altered as Kafka's
controller does (ClientQuotasImage's matching, ClientQuotaControlManager's
checks and errors).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engine.errors import EngineError
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.quota_entities import (
    Entity,
    InvalidClientQuota,
    check_quota,
    entity_of,
)
from engine.server import authorize
from engine.server.authorizer import AclOperation
from engine.server.context import Body, RequestContext, Response, off_loop
from engine.server.handlers.common import MAX_RECORDS_PER_REQUEST, TOO_LARGE_BATCH_OPERATION
from engine.server.handlers.registry import handles, handles_off_loop

if TYPE_CHECKING:
    from engine.server.handlers.requests import (
        AlterClientQuotasRequest,
        DescribeClientQuotasRequest,
    )

MATCH_EXACT, MATCH_DEFAULT, MATCH_SPECIFIED = 0, 1, 2
"""The DescribeClientQuotas filter's match types."""


def _filter(
    request: DescribeClientQuotasRequest,
) -> dict[str, tuple[int, str | None]]:
    """The request's filter by entity type, checked as Kafka's
    ClientQuotasImage checks it."""
    components: dict[str, tuple[int, str | None]] = {}
    for component in request.components:
        entity_type, match_type = component.entity_type, int(component.match_type)
        if not entity_type:
            raise InvalidClientQuota("Invalid empty entity type.")
        if entity_type in components:
            raise InvalidClientQuota(
                f"Entity type {entity_type} cannot appear more than once in the filter."
            )
        if match_type == MATCH_EXACT and component.match is None:
            raise InvalidClientQuota(
                "Request specified MATCH_TYPE_EXACT, but set match string to null."
            )
        if match_type == MATCH_DEFAULT and component.match is not None:
            raise InvalidClientQuota(
                "Request specified MATCH_TYPE_DEFAULT, but also specified a match string."
            )
        if match_type == MATCH_SPECIFIED and component.match is not None:
            raise InvalidClientQuota(
                "Request specified MATCH_TYPE_SPECIFIED, but also specified a match string."
            )
        if match_type not in (MATCH_EXACT, MATCH_DEFAULT, MATCH_SPECIFIED):
            raise InvalidClientQuota(f"Unknown match type {match_type}")
        components[entity_type] = (match_type, component.match)
    return components


def matches(entity: Entity, components: dict[str, tuple[int, str | None]], strict: bool) -> bool:
    """Whether ``entity`` is one the filter asks for: every component
    matches its part, and under ``strict`` the entity has no other part."""
    names = dict(entity)
    if strict and set(names) != set(components):
        return False
    for entity_type, (match_type, match) in components.items():
        if entity_type not in names:
            return False
        name = names[entity_type]
        if match_type == MATCH_EXACT and name != match:
            return False
        if match_type == MATCH_DEFAULT and name is not None:
            return False
        if match_type == MATCH_SPECIFIED and name is None:
            return False
    return True


def _entity_data(entity: Entity) -> list[dict[str, Any]]:
    return [{"entity_type": t, "entity_name": name} for t, name in entity]


@handles(
    ApiKey.DESCRIBE_CLIENT_QUOTAS,
    0,
    1,
    notes={
        0: "user and client-id entities, their defaults and combinations",
        1: "flexible versions",
    },
)
def handle_describe_client_quotas(
    context: RequestContext, request: DescribeClientQuotasRequest
) -> Response:
    if len(context.engine.client_quotas.state) > MANY_ENTITIES:
        return off_loop(context, lambda: _describe_client_quotas(context, request))
    return _describe_client_quotas(context, request)


MANY_ENTITIES = 1_000
"""Past this many entities with quotas, a DescribeClientQuotas is answered on
the admin thread: 100,000 took the event loop about a second."""


def _describe_client_quotas(
    context: RequestContext, request: DescribeClientQuotasRequest
) -> dict[str, Any]:
    def refused(code: KafkaCode, message: str) -> dict[str, Any]:
        return {"throttle_time": 0, "error_code": code, "error_message": message, "entries": None}

    if not authorize.allowed_on_cluster(context, AclOperation.DESCRIBE_CONFIGS):
        return refused(KafkaCode.CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed.")
    try:
        components = _filter(request)
    except InvalidClientQuota as error:
        return refused(error.code, str(error))
    entries = [
        {
            "entity": _entity_data(entity),
            "values": [
                {"key": key, "value": float(value)} for key, value in sorted(quotas.items())
            ],
        }
        for entity, quotas in sorted(
            context.engine.client_quotas.entities().items(), key=lambda item: repr(item[0])
        )
        if matches(entity, components, request.strict)
    ]
    return {
        "throttle_time": 0,
        "error_code": KafkaCode.NONE,
        "error_message": None,
        "entries": entries,
    }


@handles_off_loop(
    ApiKey.ALTER_CLIENT_QUOTAS,
    0,
    1,
    notes={
        0: "producer_byte_rate, consumer_byte_rate, request_percentage, controller_mutation_rate",
        1: "flexible versions",
    },
)
def handle_alter_client_quotas(context: RequestContext, request: AlterClientQuotasRequest) -> Body:
    allowed = authorize.allowed_on_cluster(context, AclOperation.ALTER_CONFIGS)
    if allowed and sum(len(entry.ops) for entry in request.entries) > MAX_RECORDS_PER_REQUEST:
        # Kafka's ClientQuotaControlManager, once KafkaApis has authorized
        # the request: a record per quota changed, at most
        # MAX_RECORDS_PER_USER_OP for one request, else the whole of it is
        # refused; here each request is also a catalog write.
        return {
            "throttle_time": 0,
            "entries": [
                _entry_result(entry, KafkaCode.POLICY_VIOLATION, TOO_LARGE_BATCH_OPERATION)
                for entry in request.entries
            ],
        }
    # Every valid entry is written in one catalog record (Kafka's
    # controller commits one request's quota records as one atomic batch):
    # a reader never sees part of the request, nor does a restart.
    entries, duplicated = _distinct_entities(request.entries) if allowed else (request.entries, ())
    outcomes: list[tuple[KafkaCode, str | None]] = []
    alterations: list[tuple[int, Entity, dict[str, float | None]]] = []
    for index, entry in enumerate(entries):
        code, message = KafkaCode.NONE, None
        try:
            if index in duplicated:
                code, message = (
                    KafkaCode.INVALID_REQUEST,
                    f"Ignoring duplicate entity {_kafka_entity(entry)}",
                )
            elif not allowed:
                code, message = (
                    KafkaCode.CLUSTER_AUTHORIZATION_FAILED,
                    "Cluster authorization failed.",
                )
            else:
                entity = entity_of([(e.entity_type, e.entity_name) for e in entry.entity])
                changes = _checked_changes(entry.ops)
                if changes:
                    alterations.append((len(outcomes), entity, changes))
        except EngineError as error:
            code, message = error.code, str(error)
        outcomes.append((code, message))
    if alterations and not request.validate_only:
        try:
            context.engine.client_quotas.alter_many([(e, c) for _, e, c in alterations])
        except EngineError as error:  # the store failed: none was written
            for index, _, _ in alterations:
                outcomes[index] = (error.code, str(error))
    results = [
        _entry_result(entry, code, message)
        for entry, (code, message) in zip(entries, outcomes, strict=True)
    ]
    return {"throttle_time": 0, "entries": results}


def _distinct_entities(entries: Sequence[Any]) -> tuple[list[Any], set[int]]:
    """Each entity the request names, once, in the order first named, and
    the indexes (in that list) of those it names more than once. Kafka's
    ClientQuotaControlManager answers by entity (a map: one result each)
    and an entity named again INVALID_REQUEST "Ignoring duplicate entity";
    it still commits the first naming's records, which its answer then
    calls refused. Here none of a duplicated entity's entries is applied,
    so that the answer is the truth."""
    first: dict[frozenset[tuple[str, str | None]], int] = {}
    distinct: list[Any] = []
    duplicated: set[int] = set()
    for entry in entries:
        key = frozenset((e.entity_type, e.entity_name) for e in entry.entity)
        if key in first:
            duplicated.add(first[key])
        else:
            first[key] = len(distinct)
            distinct.append(entry)
    return distinct, duplicated


def _kafka_entity(entry: Any) -> str:
    """An entity as Kafka's ClientQuotaEntity.toString writes it."""
    names = ", ".join(f"{e.entity_type}={e.entity_name}" for e in entry.entity)
    return f"ClientQuotaEntity(entries={{{names}}})"


def _checked_changes(ops: Any) -> dict[str, float | None]:
    """An entry's operations as quotas to set (a value) or remove (None);
    raises InvalidClientQuota for one Kafka refuses."""
    changes: dict[str, float | None] = {}
    for op in ops:
        if op.key in changes:
            raise InvalidClientQuota(f"Duplicate quota key {op.key}")
        if op.remove:
            check_quota(op.key, 1.0)  # an unknown key is refused, removed or not
            changes[op.key] = None
        else:
            check_quota(op.key, float(op.value))
            changes[op.key] = float(op.value)
    return changes


def _entry_result(entry: Any, code: KafkaCode, message: str | None) -> dict[str, Any]:
    return {
        "error_code": code,
        "error_message": message,
        "entity": [
            {"entity_type": e.entity_type, "entity_name": e.entity_name} for e in entry.entity
        ],
    }
