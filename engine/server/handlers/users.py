"""DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554):
users' SCRAM credentials as Kafka's controller keeps them (its
ScramControlManager's checks and errors). The client sends the salted
password; the server keeps only the keys derived from it.

Only SCRAM credentials are described and altered here; PLAIN passwords are
set with ``tidelog users add --mechanism PLAIN``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.credentials import (
    MAX_ITERATIONS,
    MIN_ITERATIONS,
    SCRAM_HASHES,
    from_salted_password,
)
from engine.errors import EngineError
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server import authorize
from engine.server.authorizer import AclOperation
from engine.server.context import Body, RequestContext, Response, off_loop
from engine.server.handlers.common import MAX_RECORDS_PER_REQUEST, TOO_LARGE_BATCH_OPERATION
from engine.server.handlers.registry import handles, handles_off_loop

if TYPE_CHECKING:
    from engine.server.handlers.requests import (
        AlterUserScramCredentialsRequest,
        DescribeUserScramCredentialsRequest,
    )

SCRAM_TYPES: Mapping[str, int] = {"SCRAM-SHA-256": 1, "SCRAM-SHA-512": 2}
"""Kafka's ScramMechanism type codes."""
_BY_TYPE = {code: name for name, code in SCRAM_TYPES.items()}


@handles(
    ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS,
    0,
    0,
    notes={0: "each user's SCRAM mechanisms and iterations; none named: every user"},
)
def handle_describe_user_scram_credentials(
    context: RequestContext, request: DescribeUserScramCredentialsRequest
) -> Response:
    described = len(request.users) if request.users else context.engine.credentials.count()
    if described > MANY_USERS:
        return off_loop(context, lambda: _describe_user_scram_credentials(context, request))
    return _describe_user_scram_credentials(context, request)


MANY_USERS = 1_000
"""Past this many users described, the answer is made on the admin thread:
each user's credentials are read from the catalog's form."""


def _describe_user_scram_credentials(
    context: RequestContext, request: DescribeUserScramCredentialsRequest
) -> dict[str, Any]:
    if not authorize.allowed_on_cluster(context, AclOperation.DESCRIBE):
        # Kafka's KafkaApis: DESCRIBE on the cluster, else the whole answer refused
        return {
            "throttle_time": 0,
            "error_code": KafkaCode.CLUSTER_AUTHORIZATION_FAILED,
            "error_message": "Cluster authorization failed.",
            "results": [],
        }
    credentials = context.engine.credentials
    results: list[dict[str, Any]] = []
    if not request.users:
        names = credentials.users()
        described = [(name, False) for name in names]
    else:
        seen: dict[str, int] = {}
        for user in request.users:
            seen[user.name] = seen.get(user.name, 0) + 1
        described = [(name, count > 1) for name, count in seen.items()]
    for name, twice in described:
        infos = [
            {"mechanism": SCRAM_TYPES[mechanism], "iterations": credential.iterations}
            for mechanism, credential in sorted(credentials.mechanisms(name).items())
            if mechanism in SCRAM_TYPES
        ]
        if twice:
            error, message = (
                KafkaCode.DUPLICATE_RESOURCE,
                "Cannot describe SCRAM credentials for the same user twice in a single request",
            )
        elif not infos:
            if not request.users:
                continue  # a PLAIN-only user has no SCRAM credentials to list
            error, message = (
                KafkaCode.RESOURCE_NOT_FOUND,
                "Attempt to describe a user credential that does not exist",
            )
        else:
            error, message = KafkaCode.NONE, None
        results.append(
            {
                "user": name,
                "error_code": error,
                "error_message": message,
                "credential_infos": infos if error == KafkaCode.NONE else [],
            }
        )
    return {
        "throttle_time": 0,
        "error_code": KafkaCode.NONE,
        "error_message": None,
        "results": results,
    }


@handles_off_loop(
    ApiKey.ALTER_USER_SCRAM_CREDENTIALS,
    0,
    0,
    notes={0: "upsertions carry the client's salt and salted password; deletions by mechanism"},
)
def handle_alter_user_scram_credentials(
    context: RequestContext, request: AlterUserScramCredentialsRequest
) -> Body:
    credentials = context.engine.credentials
    errors: dict[str, tuple[KafkaCode, str]] = {}
    order: list[str] = []
    if not authorize.allowed_on_cluster(context, AclOperation.ALTER):
        # Kafka's KafkaApis: ALTER on the cluster, else every user refused
        return _refused_whole(
            request, KafkaCode.CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed."
        )
    if len(request.deletions) + len(request.upsertions) > MAX_RECORDS_PER_REQUEST:
        # Kafka's controller cannot commit more records than that at once
        # (QuorumController, an atomic batch: UNKNOWN_SERVER_ERROR there).
        return _refused_whole(request, KafkaCode.POLICY_VIOLATION, TOO_LARGE_BATCH_OPERATION)
    changes: list[tuple[str, str, Any]] = []
    seen: set[tuple[str, int]] = set()
    duplicates: set[str] = set()
    named = [(d.name, int(d.mechanism)) for d in request.deletions]
    named += [(u.name, int(u.mechanism)) for u in request.upsertions]
    for key in named:
        if key[0] not in order:
            order.append(key[0])
        if key in seen:
            duplicates.add(key[0])
        seen.add(key)
    for name in duplicates:
        errors[name] = (
            KafkaCode.DUPLICATE_RESOURCE,
            "A user credential cannot be altered twice in the same request",
        )

    def refuse(name: str, code: KafkaCode, message: str) -> None:
        errors.setdefault(name, (code, message))

    for deletion in request.deletions:
        name, mechanism = deletion.name, _BY_TYPE.get(int(deletion.mechanism))
        if not name:
            refuse(name, KafkaCode.UNACCEPTABLE_CREDENTIAL, "Username must not be empty")
        elif mechanism is None:
            refuse(name, KafkaCode.UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism")
        elif credentials.get(name, mechanism) is None:
            refuse(
                name,
                KafkaCode.RESOURCE_NOT_FOUND,
                "Attempt to delete a user credential that does not exist",
            )
        else:
            changes.append((name, mechanism, None))
    for upsertion in request.upsertions:
        name, mechanism = upsertion.name, _BY_TYPE.get(int(upsertion.mechanism))
        iterations = int(upsertion.iterations)
        if not name:
            refuse(name, KafkaCode.UNACCEPTABLE_CREDENTIAL, "Username must not be empty")
        elif mechanism is None:
            refuse(name, KafkaCode.UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism")
        elif iterations < MIN_ITERATIONS:
            refuse(name, KafkaCode.UNACCEPTABLE_CREDENTIAL, "Too few iterations")
        elif iterations > MAX_ITERATIONS:
            refuse(name, KafkaCode.UNACCEPTABLE_CREDENTIAL, "Too many iterations")
        elif not upsertion.salt or not upsertion.salted_password:
            refuse(
                name, KafkaCode.UNACCEPTABLE_CREDENTIAL, "A salt and a salted password are needed"
            )
        else:
            credential = from_salted_password(
                SCRAM_HASHES[mechanism],
                bytes(upsertion.salted_password),
                bytes(upsertion.salt),
                iterations,
            )
            changes.append((name, mechanism, credential))
    # A user's changes are all or nothing, as in Kafka; and the request's
    # valid changes are one catalog record, as Kafka's controller commits
    # them in one atomic batch: no SASL handshake, describe or restart sees
    # part of them.
    valid = [change for change in changes if change[0] not in errors]
    try:
        credentials.alter_many(valid)
    except EngineError as error:  # the store failed: none was written
        for name, _, _ in valid:
            refuse(name, error.code, str(error))
    return {
        "throttle_time": 0,
        "results": [
            {
                "user": name,
                "error_code": errors.get(name, (KafkaCode.NONE, None))[0],
                "error_message": errors.get(name, (KafkaCode.NONE, None))[1],
            }
            for name in order
        ],
    }


def _refused_whole(
    request: AlterUserScramCredentialsRequest, code: KafkaCode, message: str
) -> Body:
    """Every user the request names refused, each once."""
    names = dict.fromkeys(
        [d.name for d in request.deletions] + [u.name for u in request.upsertions]
    )
    return {
        "throttle_time": 0,
        "results": [{"user": name, "error_code": code, "error_message": message} for name in names],
    }
