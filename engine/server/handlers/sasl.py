"""SaslHandshake and SaslAuthenticate: the SASL exchange of a connection on
a SASL_* listener (engine/server/authentication.py holds its state).

SaslHandshake v1 only: v0 sends the tokens unframed after it (the
pre-KIP-152 exchange), which every maintained client has replaced with
SaslAuthenticate. SaslAuthenticate v0-v2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server.context import RequestContext
from engine.server.handlers.registry import handles

if TYPE_CHECKING:
    from engine.server.handlers.requests import SaslAuthenticateRequest, SaslHandshakeRequest


@handles(
    ApiKey.SASL_HANDSHAKE,
    1,
    1,
    notes={1: "the mechanism; its tokens follow in SaslAuthenticate (KIP-152)"},
)
def handle_sasl_handshake(context: RequestContext, request: SaslHandshakeRequest) -> dict[str, Any]:
    authentication = context.authentication
    if authentication is None:
        return {"error_code": KafkaCode.ILLEGAL_SASL_STATE, "mechanisms": []}
    code = authentication.handshake(request.mechanism)
    return {"error_code": code, "mechanisms": list(authentication.mechanisms)}


@handles(
    ApiKey.SASL_AUTHENTICATE,
    0,
    2,
    notes={
        0: "one SASL token each way",
        1: "session_lifetime_ms: connections.max.reauth.ms (KIP-368), 0 for no limit",
        2: "flexible encoding",
    },
)
def handle_sasl_authenticate(
    context: RequestContext, request: SaslAuthenticateRequest
) -> dict[str, Any]:
    authentication = context.authentication
    if authentication is None:
        return {
            "error_code": KafkaCode.ILLEGAL_SASL_STATE,
            "error_message": "no SASL exchange outside a connection",
            "auth_bytes": b"",
            "session_lifetime": 0,
        }
    result = authentication.authenticate(bytes(request.auth_bytes))
    return {
        "error_code": result.error,
        "error_message": result.message,
        "auth_bytes": result.challenge,
        "session_lifetime": result.session_lifetime_ms,
    }
