"""SaslHandshake and SaslAuthenticate: the SASL exchange of a connection on
a SASL_* listener (engine/server/authentication.py holds its state).

SaslHandshake v0-v1: after v0 the tokens follow as bare size-prefixed
frames, no request header (the exchange before KIP-152; librdkafka only
takes a broker for a SASL one if it lists v0), which the connection reads
itself; after v1 they come in SaslAuthenticate requests, v0-v2.

SaslAuthenticate is answered once the step is done (a PLAIN password is
checked off the event loop); no answer when it cannot be checked now, and
the connection then closes (authentication.py).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server.context import RequestContext
from engine.server.handlers.registry import handles

if TYPE_CHECKING:
    from engine.server.authentication import Authentication
    from engine.server.handlers.requests import SaslAuthenticateRequest, SaslHandshakeRequest


@handles(
    ApiKey.SASL_HANDSHAKE,
    0,
    1,
    notes={
        0: "the mechanism; its tokens follow as bare size-prefixed frames",
        1: "its tokens follow in SaslAuthenticate requests (KIP-152)",
    },
)
def handle_sasl_handshake(context: RequestContext, request: SaslHandshakeRequest) -> dict[str, Any]:
    authentication = context.authentication
    if authentication is None:
        return {"error_code": KafkaCode.ILLEGAL_SASL_STATE, "mechanisms": []}
    code = authentication.handshake(request.mechanism, context.version)
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
) -> dict[str, Any] | Awaitable[dict[str, Any] | None]:
    authentication = context.authentication
    if authentication is None:
        return {
            "error_code": KafkaCode.ILLEGAL_SASL_STATE,
            "error_message": "no SASL exchange outside a connection",
            "auth_bytes": b"",
            "session_lifetime": 0,
        }
    return _answer(authentication, bytes(request.auth_bytes))


async def _answer(authentication: Authentication, token: bytes) -> dict[str, Any] | None:
    result = await authentication.authenticate(token)
    if result is None:
        return None
    return {
        "error_code": result.error,
        "error_message": result.message,
        "auth_bytes": result.challenge,
        "session_lifetime": result.session_lifetime_ms,
    }
