"""SASL/OAUTHBEARER (RFC 7628, KIP-255) as Kafka's OAuthBearerSaslServer
serves it: the client's initial response carries a bearer token, which a
validator (engine/server/sasl/jwt_validator.py) turns into a principal.

A refused token fails the exchange at once, SASL_AUTHENTICATION_FAILED
with RFC 7628's JSON error (``{"status":"invalid_token"}``) as the message:
what Kafka's own client ends with, one round trip sooner. Kafka's
OAuthBearerSaslServer first sends the JSON as a challenge with no error
and fails only after the client's lone ``\\x01``; a client that sends one
message and reads only the answer's error code (kafkajs) takes that
challenge for success, and against Kafka sees its connection closed
instead of the refusal. The challenge and ``\\x01`` are kept for tokens in
bare frames (after a SaslHandshake v0), whose failure has no error code to
carry a message. A malformed initial response fails at once with Kafka's
message for invalid credentials.

The initial response is parsed by hand, in one pass over bytes the peer
sent (bounded by the SASL frame limit and by ``MAX_INITIAL_RESPONSE_BYTES``
before any split), so nothing is sized by what the peer claims and no
pattern can backtrack on it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from engine.server.sasl import SaslAuthenticationFailed

OAUTHBEARER = "OAUTHBEARER"
MAX_INITIAL_RESPONSE_BYTES = 65536
"""A client's initial response longer than this is refused unread: a JWT
from any identity provider is a few kilobytes; 64 KiB leaves room for
many claims and still bounds the JSON the validator decodes."""
MAX_EXTENSIONS = 64
"""Key-value pairs besides ``auth`` an initial response may carry."""

_SEPARATOR = b"\x01"
_KEY = re.compile(rb"[A-Za-z]+")
_VALUE = re.compile(rb"[\x21-\x7e \t\r\n]+")
_SASL_NAME = re.compile(rb"(?:[\x01-\x2b\x2d-\x3c\x3e-\x7f]|=2C|=3D)+")
_BEARER = re.compile(rb"[Bb][Ee][Aa][Rr][Ee][Rr] +([-_.a-zA-Z0-9]+)")
"""Kafka's AUTH_PATTERN: the scheme ``Bearer`` (any case), spaces, then the
token in the characters of a JWS compact serialization."""


class MalformedInitialResponse(ValueError):
    """The bytes are not an OAUTHBEARER initial response; ``reason`` says
    which part is wrong (it never holds the token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid OAUTHBEARER initial response: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class InitialResponse:
    """RFC 7628's client initial response: ``n,[a=authzid],^Aauth=Bearer
    <token>^A[key=value^A]*^A``."""

    token: str
    authorization_id: str
    extensions: tuple[tuple[str, str], ...]


def parse_initial_response(response: bytes) -> InitialResponse:
    """The parts of ``response``; raises MalformedInitialResponse and nothing else."""
    if len(response) > MAX_INITIAL_RESPONSE_BYTES:
        raise MalformedInitialResponse(
            f"{len(response)} bytes, more than {MAX_INITIAL_RESPONSE_BYTES}"
        )
    head, separator, rest = response.partition(_SEPARATOR)
    if not separator:
        raise MalformedInitialResponse("no key-value pairs")
    authorization_id = _gs2_header(head)
    if not rest.endswith(_SEPARATOR + _SEPARATOR) and rest != _SEPARATOR:
        raise MalformedInitialResponse("it does not end with two separators")
    pairs = rest[:-2].split(_SEPARATOR) if rest != _SEPARATOR else []
    if len(pairs) > MAX_EXTENSIONS + 1:
        raise MalformedInitialResponse(f"more than {MAX_EXTENSIONS} extensions")
    token: str | None = None
    extensions: list[tuple[str, str]] = []
    for pair in pairs:
        key, equals, value = pair.partition(b"=")
        if not equals or _KEY.fullmatch(key) is None or _VALUE.fullmatch(value) is None:
            raise MalformedInitialResponse("a key-value pair that is not key=value")
        if key == b"auth":
            if token is not None:
                raise MalformedInitialResponse("two auth values")
            bearer = _BEARER.fullmatch(value)
            if bearer is None:
                raise MalformedInitialResponse("an auth value that is not 'Bearer <token>'")
            token = bearer[1].decode("ascii")
        else:
            extensions.append((key.decode("ascii"), value.decode("ascii")))
    if token is None:
        raise MalformedInitialResponse("no auth value")
    return InitialResponse(token, authorization_id, tuple(extensions))


def _gs2_header(head: bytes) -> str:
    """The authorization id of ``n,[a=authzid],`` (empty when absent)."""
    if not head.startswith(b"n,") or not head.endswith(b","):
        raise MalformedInitialResponse("the GS2 header is not 'n,[a=authzid],'")
    middle = head[2:-1]
    if not middle:
        return ""
    if not middle.startswith(b"a=") or _SASL_NAME.fullmatch(middle[2:]) is None:
        raise MalformedInitialResponse("an authorization id that is not a saslname")
    return middle[2:].decode("ascii").replace("=2C", ",").replace("=3D", "=")


@dataclass(frozen=True)
class ValidatedToken:
    """What a validator found in a token it accepts."""

    principal: str
    """The user name the token names (its subject claim)."""
    expires_ms: int
    """Its ``exp``, in milliseconds since the epoch."""
    scope: tuple[str, ...] = ()


class InvalidToken(Exception):
    """A token refused: ``detail`` says why, for the log; it never holds the token."""

    def __init__(self, detail: str, status: str = "invalid_token") -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


class TokenValidator(Protocol):
    def validate(self, token: str) -> ValidatedToken:
        """The token's principal and expiry; raises InvalidToken."""
        ...


class OAuthBearerServer:
    mechanism = OAUTHBEARER

    def __init__(
        self, validator: TokenValidator, on_refused: Callable[[str], None], *, framed: bool
    ) -> None:
        self._validator = validator
        self._on_refused = on_refused
        """Told why a token was refused when the refusal is a challenge (the
        client may never send the ``\\x01`` that ends the exchange)."""
        self._framed = framed
        """Whether the tokens come in SaslAuthenticate, whose answer carries
        an error code and message (not in bare frames)."""
        self._token: ValidatedToken | None = None
        self._error: bytes | None = None
        """The JSON error sent as a challenge, awaiting the client's ``\\x01``."""

    async def step(self, response: bytes) -> bytes:
        if self._token is not None:
            raise _failed("a message after the exchange completed")
        if self._error is not None:
            error, self._error = self._error, None
            if response == _SEPARATOR:
                # Kafka's OAuthBearerSaslServer: the JSON error is the message.
                message = error.decode()
                raise SaslAuthenticationFailed(
                    message, f"{OAUTHBEARER}: the client took {message}", logged=True
                )
            # Kafka would take it as a new initial response: here an exchange
            # tries one token, so a connection cannot be a loop of guesses.
            raise _failed("a message other than \\x01 after the server's error")
        try:
            initial = parse_initial_response(response)
        except MalformedInitialResponse as malformed:
            raise _failed(malformed.reason) from None
        try:
            token = self._validator.validate(initial.token)
        except InvalidToken as invalid:
            # One line per refusal, with why; never the token itself.
            error = b'{"status":"%s"}' % invalid.status.encode()
            if self._framed:
                raise SaslAuthenticationFailed(
                    error.decode(), f"{OAUTHBEARER}: {invalid.detail}"
                ) from None
            self._error = error
            self._on_refused(f"{OAUTHBEARER}: {invalid.detail}")
            return error
        if initial.authorization_id and initial.authorization_id != token.principal:
            message = (
                "Authentication failed: Client requested an authorization id"
                f" ({initial.authorization_id}) that is different from the token's principal"
                f" name ({token.principal})"
            )
            raise SaslAuthenticationFailed(message, f"{OAUTHBEARER}: {message}")
        self._token = token
        return b""

    @property
    def complete(self) -> bool:
        return self._token is not None

    token_authenticated = False
    """Never a delegation token: those log in with SCRAM only."""

    @property
    def principal(self) -> str:
        return f"User:{self.user}"

    @property
    def user(self) -> str:
        assert self._token is not None, "not authenticated"
        return self._token.principal

    @property
    def credential_expires_ms(self) -> int | None:
        """When the token expires (ms since the epoch): the session ends then (KIP-368)."""
        return self._token.expires_ms if self._token is not None else None


def _failed(detail: str) -> SaslAuthenticationFailed:
    message = (
        "Authentication failed during authentication due to invalid credentials with"
        f" SASL mechanism {OAUTHBEARER}"
    )
    return SaslAuthenticationFailed(message, f"{OAUTHBEARER}: {detail}")
