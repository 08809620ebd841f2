"""CreateAcls, DescribeAcls and DeleteAcls: the ACL bindings the ACL
authorizer decides by, kept in the catalog (engine/acl_bindings.py), as
Kafka's AclControlManager serves them.

Versions: v1-v3 of each (Kafka 4's range; v1 adds pattern types, v2 is
flexible, v3 the USER resource type). ACLs are stored whatever the
server's authorizer; they are enforced only with ``authorizer = "acl"``, so
no request is answered SECURITY_DISABLED. Describing needs DESCRIBE on the
cluster, creating and deleting ALTER (CLUSTER_AUTHORIZATION_FAILED).
A binding or filter with an unknown or unusable code is answered
INVALID_REQUEST, the others of the request are carried out.

As Kafka's controller, one request adds or removes at most
MAX_RECORDS_PER_REQUEST bindings (its MAX_RECORDS_PER_USER_OP): a
CreateAcls adding more is refused whole, POLICY_VIOLATION; a DeleteAcls
filter that would carry the request's removals past it is refused,
POLICY_VIOLATION, and removes nothing (Kafka answers UNKNOWN_SERVER_ERROR
there, and removes what the filter matched up to the bound).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.acl_bindings import AclBinding, AclFilter, binding_invalid
from engine.errors import EngineError, error_code
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server import authorize
from engine.server.authorizer import AclOperation
from engine.server.context import Body, RequestContext, error_message
from engine.server.handlers.common import MAX_RECORDS_PER_REQUEST, TOO_LARGE_BATCH_OPERATION
from engine.server.handlers.registry import handles_off_loop
from engine.store_errors import store_errors

if TYPE_CHECKING:
    from engine.server.handlers.requests import (
        CreateAclsRequest,
        DeleteAclsRequest,
        DescribeAclsRequest,
    )

_NOTES = {
    1: "pattern types (LITERAL, PREFIXED; ANY and MATCH in filters)",
    2: "flexible encoding",
    3: "the USER resource type (KIP-373)",
}


@handles_off_loop(ApiKey.CREATE_ACLS, 1, 3, notes=_NOTES)
def handle_create_acls(context: RequestContext, request: CreateAclsRequest) -> Body:
    if not authorize.allowed_on_cluster(context, AclOperation.ALTER):
        failed = _result(KafkaCode.CLUSTER_AUTHORIZATION_FAILED, None)
        return {"throttle_time": 0, "results": [failed for _ in request.creations]}
    results: list[dict[str, Any]] = []
    valid: list[AclBinding] = []
    for creation in request.creations:
        acl = AclBinding(
            creation.resource_type,
            creation.resource_name,
            creation.resource_pattern_type,
            creation.principal,
            creation.host,
            creation.operation,
            creation.permission_type,
        )
        invalid = binding_invalid(acl)
        if invalid is not None:
            results.append(_result(KafkaCode.INVALID_REQUEST, invalid))
        else:
            valid.append(acl)
            results.append(_result(KafkaCode.NONE, None))
    stored = context.engine.catalog.state.acls
    if len({acl for acl in valid if acl not in stored}) > MAX_RECORDS_PER_REQUEST:
        failed = _result(KafkaCode.POLICY_VIOLATION, TOO_LARGE_BATCH_OPERATION)
        return {"throttle_time": 0, "results": [failed for _ in request.creations]}
    if valid:
        try:
            # The store's refusals (no room, too large for one record) as
            # the engine's errors: a request's answer, never its connection's end.
            with store_errors():
                context.engine.catalog.add_acls(valid)
        except EngineError as error:
            failed = _result(error_code(error), error_message(error))
            results = [failed if r["error_code"] == KafkaCode.NONE else r for r in results]
    return {"throttle_time": 0, "results": results}


@handles_off_loop(ApiKey.DESCRIBE_ACLS, 1, 3, notes=_NOTES)
def handle_describe_acls(context: RequestContext, request: DescribeAclsRequest) -> Body:
    if not authorize.allowed_on_cluster(context, AclOperation.DESCRIBE):
        return _described(KafkaCode.CLUSTER_AUTHORIZATION_FAILED, None, [])
    wanted = _filter(request)
    invalid = wanted.invalid()
    if invalid is not None:
        return _described(KafkaCode.INVALID_REQUEST, invalid, [])
    found = [acl for acl in context.engine.catalog.state.acls if wanted.matches(acl)]
    return _described(KafkaCode.NONE, None, found)


@handles_off_loop(ApiKey.DELETE_ACLS, 1, 3, notes=_NOTES)
def handle_delete_acls(context: RequestContext, request: DeleteAclsRequest) -> Body:
    if not authorize.allowed_on_cluster(context, AclOperation.ALTER):
        failed = _filter_result(KafkaCode.CLUSTER_AUTHORIZATION_FAILED, None, [])
        return {"throttle_time": 0, "filter_results": [failed for _ in request.filters]}
    stored = list(context.engine.catalog.state.acls)
    results: list[dict[str, Any]] = []
    doomed: dict[AclBinding, None] = {}
    for raw in request.filters:
        wanted = _filter(raw)
        invalid = wanted.invalid()
        if invalid is not None:
            results.append(_filter_result(KafkaCode.INVALID_REQUEST, invalid, []))
            continue
        matching = [acl for acl in stored if wanted.matches(acl)]
        if len(doomed.keys() | matching) > MAX_RECORDS_PER_REQUEST:
            too_many = _filter_result(KafkaCode.POLICY_VIOLATION, TOO_LARGE_BATCH_OPERATION, [])
            results.append(too_many)
            continue
        doomed.update(dict.fromkeys(matching))
        results.append(_filter_result(KafkaCode.NONE, None, matching))
    if doomed:
        try:
            with store_errors():
                context.engine.catalog.remove_acls(list(doomed))
        except EngineError as error:
            failed = _filter_result(error_code(error), error_message(error), [])
            results = [failed if r["error_code"] == KafkaCode.NONE else r for r in results]
    return {"throttle_time": 0, "filter_results": results}


def _filter(raw: Any) -> AclFilter:
    """DescribeAcls' request and DeleteAcls' filters carry the same fields."""
    return AclFilter(
        raw.resource_type_filter,
        raw.resource_name_filter,
        raw.pattern_type_filter,
        raw.principal_filter,
        raw.host_filter,
        raw.operation,
        raw.permission_type,
    )


def _result(code: KafkaCode, message: str | None) -> dict[str, Any]:
    return {"error_code": code, "error_message": message}


def _described(code: KafkaCode, message: str | None, found: list[AclBinding]) -> Body:
    by_resource: dict[tuple[int, str, int], list[dict[str, Any]]] = {}
    for acl in found:
        key = (acl.resource_type, acl.name, acl.pattern_type)
        by_resource.setdefault(key, []).append(
            {
                "principal": acl.principal,
                "host": acl.host,
                "operation": acl.operation,
                "permission_type": acl.permission,
            }
        )
    return {
        "throttle_time": 0,
        "error_code": code,
        "error_message": message,
        "resources": [
            {"resource_type": rt, "resource_name": name, "pattern_type": pattern, "acls": acls}
            for (rt, name, pattern), acls in by_resource.items()
        ],
    }


def _filter_result(
    code: KafkaCode, message: str | None, matching: list[AclBinding]
) -> dict[str, Any]:
    return {
        "error_code": code,
        "error_message": message,
        "matching_acls": [
            {
                "error_code": KafkaCode.NONE,
                "error_message": None,
                "resource_type": acl.resource_type,
                "resource_name": acl.name,
                "pattern_type": acl.pattern_type,
                "principal": acl.principal,
                "host": acl.host,
                "operation": acl.operation,
                "permission_type": acl.permission,
            }
            for acl in matching
        ],
    }
