"""CreateDelegationToken, RenewDelegationToken, ExpireDelegationToken and
DescribeDelegationToken (KIP-48), at the versions Kafka 4.0 serves (v0 of
each was removed there, KIP-896), with the checks and error codes of
Kafka's KafkaApis and ControllerApis before a request reaches the token
manager (engine/delegation_tokens.py), and those of its controller's
DelegationTokenControlManager after.

Tokens are requested only on a connection that authenticated without a
token: never on PLAINTEXT, nor on SSL without a client certificate, nor
with a token (DELEGATION_TOKEN_REQUEST_NOT_ALLOWED, Kafka's
allowTokenRequests). Making a token for another owner needs CREATE_TOKENS
on that owner's User resource; describing tokens one neither owns, made nor
may renew needs DESCRIBE on the DelegationToken resource or DESCRIBE_TOKENS
on the owner's User resource.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.authorization import ANONYMOUS, AclOperation, ResourceType
from engine.delegation_tokens import (
    ERROR_TIMESTAMP,
    USER_TYPE,
    TokenInformation,
    principal_name,
    principal_type,
)
from engine.errors import EngineError
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server import authorize
from engine.server.context import Body, RequestContext, Response, off_loop
from engine.server.handlers.common import millis
from engine.server.handlers.registry import handles, handles_off_loop

if TYPE_CHECKING:
    from engine.server.handlers.requests import (
        CreateDelegationTokenRequest,
        DescribeDelegationTokenRequest,
        ExpireDelegationTokenRequest,
        RenewDelegationTokenRequest,
    )

MANY_TOKENS = 1_000
"""Past this many tokens, a Describe is answered on the admin thread: each
token is read from its catalog form and authorized."""
MANY_RENEWERS = 10_000
"""Past this many renewers among the tokens, too: each is matched, answered
and encoded, and a Create may name as many as its bytes hold."""


def tokens_allowed(context: RequestContext) -> bool:
    """Whether the connection may make, renew, expire or describe tokens
    (Kafka's allowTokenRequests): not with a token, not on PLAINTEXT, not
    on SSL without a client certificate."""
    identity = context.identity
    if identity.token_authenticated or identity.listener == "PLAINTEXT":
        return False
    return not (identity.listener == "SSL" and identity.principal == ANONYMOUS)


def _created(
    code: KafkaCode,
    owner: str,
    requester: str,
    info: TokenInformation | None = None,
    digest: bytes = b"",
) -> dict[str, Any]:
    """A CreateDelegationToken answer (Kafka's prepareResponse: the
    timestamps -1, an empty id and HMAC with an error)."""
    return {
        "throttle_time": 0,
        "error_code": code,
        "principal_type": principal_type(owner),
        "principal_name": principal_name(owner),
        "token_requester_principal_type": principal_type(requester),
        "token_requester_principal_name": principal_name(requester),
        "issue_timestamp": ERROR_TIMESTAMP if info is None else info.issue_timestamp_ms,
        "expiry_timestamp": ERROR_TIMESTAMP if info is None else info.expiry_timestamp_ms,
        "max_timestamp": ERROR_TIMESTAMP if info is None else info.max_timestamp_ms,
        "token_id": "" if info is None else info.token_id,
        "hmac": digest,
    }


@handles_off_loop(
    ApiKey.CREATE_DELEGATION_TOKEN,
    1,
    3,
    notes={
        1: "a token of the requester, with its renewers and max lifetime",
        2: "flexible encoding",
        3: "another owner than the requester (CREATE_TOKENS on it); the requester answered",
    },
)
def handle_create_delegation_token(
    context: RequestContext, request: CreateDelegationTokenRequest
) -> Body:
    requester = context.identity.principal
    owner = requester
    owner_name = getattr(request, "owner_principal_name", None)
    if owner_name:  # v3; null or empty: the requester, as Kafka
        owner_type = getattr(request, "owner_principal_type", None)
        if owner_type is None:
            # Kafka's ControllerApis makes a KafkaPrincipal of it, which
            # refuses a null type before any other check: the request fails
            # as a whole (CreateDelegationTokenRequest.getErrorResponse).
            # Taken as a type, "None:<name>" would log in as User:<name>
            # past any ACL on that user.
            return _created(KafkaCode.UNKNOWN_SERVER_ERROR, ANONYMOUS, ANONYMOUS)
        owner = f"{owner_type}:{owner_name}"
    if not tokens_allowed(context):
        return _created(KafkaCode.DELEGATION_TOKEN_REQUEST_NOT_ALLOWED, owner, requester)
    if owner != requester and not _may_create_for(context, owner):
        return _created(KafkaCode.DELEGATION_TOKEN_AUTHORIZATION_FAILED, owner, requester)
    renewers = [f"{r.principal_type}:{r.principal_name}" for r in request.renewers]
    try:
        info, digest = context.engine.delegation_tokens.create(
            owner, requester, renewers, millis(request.max_lifetime)
        )
    except EngineError as error:  # off, a renewer not a User, or the store failed
        return _created(error.code, owner, requester)
    return _created(KafkaCode.NONE, owner, requester, info, digest)


def _may_create_for(context: RequestContext, owner: str) -> bool:
    """CREATE_TOKENS on the owner's User resource (Kafka's check), and on
    User:<its name> when the owner is of another type: the token's session
    is that user's whatever the owner's type (Kafka's token cache names
    the owner, its principal builder makes a User of the name), so an
    ALLOW on every user with a DENY on User:bob must refuse Group:bob too,
    which Kafka's check alone lets through."""
    if not authorize.allowed(context, AclOperation.CREATE_TOKENS, ResourceType.USER, owner):
        return False
    session = f"{USER_TYPE}:{principal_name(owner)}"
    if principal_type(owner) == USER_TYPE or session == context.identity.principal:
        return True
    return authorize.allowed(context, AclOperation.CREATE_TOKENS, ResourceType.USER, session)


def _expiry(code: KafkaCode, expiry_ms: int = ERROR_TIMESTAMP) -> dict[str, Any]:
    return {"throttle_time": 0, "error_code": code, "expiry_timestamp": expiry_ms}


def _new_expiry(
    context: RequestContext,
    change: Callable[[str, bytes, int], int],
    hmac: bytes,
    period_ms: int,
) -> dict[str, Any]:
    """Renew's and Expire's answer: the token's new expiry, or the error
    Kafka answers (a token session may change no token)."""
    if not tokens_allowed(context):
        return _expiry(KafkaCode.DELEGATION_TOKEN_REQUEST_NOT_ALLOWED)
    try:
        expiry = change(context.identity.principal, hmac, period_ms)
    except EngineError as error:
        return _expiry(error.code)
    return _expiry(KafkaCode.NONE, expiry)


@handles_off_loop(
    ApiKey.RENEW_DELEGATION_TOKEN,
    1,
    2,
    notes={
        1: "by the owner or a renewer, at most to the token's max timestamp",
        2: "flexible encoding",
    },
)
def handle_renew_delegation_token(
    context: RequestContext, request: RenewDelegationTokenRequest
) -> Body:
    return _new_expiry(
        context,
        context.engine.delegation_tokens.renew,
        bytes(request.hmac),
        millis(request.renew_period),
    )


@handles_off_loop(
    ApiKey.EXPIRE_DELEGATION_TOKEN,
    1,
    2,
    notes={1: "a negative period removes the token at once", 2: "flexible encoding"},
)
def handle_expire_delegation_token(
    context: RequestContext, request: ExpireDelegationTokenRequest
) -> Body:
    return _new_expiry(
        context,
        context.engine.delegation_tokens.expire,
        bytes(request.hmac),
        millis(request.expiry_time_period),
    )


@handles(
    ApiKey.DESCRIBE_DELEGATION_TOKEN,
    1,
    3,
    notes={
        1: "the live tokens the principal owns, made, may renew, or may describe by ACL",
        2: "flexible encoding",
        3: "each token's requester",
    },
)
def handle_describe_delegation_token(
    context: RequestContext, request: DescribeDelegationTokenRequest
) -> Response:
    tokens = context.engine.delegation_tokens
    if tokens.count() > MANY_TOKENS or tokens.renewers_kept() > MANY_RENEWERS:
        return off_loop(context, lambda: _describe(context, request))
    return _describe(context, request)


def _described(code: KafkaCode, tokens: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"throttle_time": 0, "error_code": code, "tokens": tokens or []}


def _describe(context: RequestContext, request: DescribeDelegationTokenRequest) -> Body:
    if not tokens_allowed(context):
        return _described(KafkaCode.DELEGATION_TOKEN_REQUEST_NOT_ALLOWED)
    tokens = context.engine.delegation_tokens
    if not tokens.enabled:
        return _described(KafkaCode.DELEGATION_TOKEN_AUTH_DISABLED)
    if request.owners is not None and not request.owners:
        return _described(KafkaCode.NONE)  # an empty list asks for none (null: all)
    owners = (
        None
        if request.owners is None
        else {f"{o.principal_type}:{o.principal_name}" for o in request.owners}
    )
    principal = context.identity.principal
    described = []
    for info in tokens.tokens():
        if owners is not None and not info.any_of(owners):
            continue  # Kafka's filterToken: not among those asked for
        if not (
            info.owner_or_renewer(principal)
            or authorize.allowed(
                context, AclOperation.DESCRIBE, ResourceType.DELEGATION_TOKEN, info.token_id
            )
            or authorize.allowed(
                context, AclOperation.DESCRIBE_TOKENS, ResourceType.USER, info.owner
            )
        ):
            continue
        described.append(
            {
                "principal_type": principal_type(info.owner),
                "principal_name": principal_name(info.owner),
                "token_requester_principal_type": principal_type(info.requester),
                "token_requester_principal_name": principal_name(info.requester),
                "issue_timestamp": info.issue_timestamp_ms,
                "expiry_timestamp": info.expiry_timestamp_ms,
                "max_timestamp": info.max_timestamp_ms,
                "token_id": info.token_id,
                "hmac": tokens.hmac(info.token_id),
                "renewers": [
                    {"principal_type": principal_type(r), "principal_name": principal_name(r)}
                    for r in info.renewers
                ],
            }
        )
    return _described(KafkaCode.NONE, described)
