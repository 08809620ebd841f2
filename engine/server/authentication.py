"""One connection's authentication: on a SASL_* listener, the SASL exchange
(SaslHandshake then SaslAuthenticate, KIP-152 framing) that must succeed
before any other request, and the session's lifetime with re-authentication
(KIP-368), as Kafka's SaslServerAuthenticator keeps them.

Before authentication only ApiVersions, SaslHandshake and SaslAuthenticate
are served; any other request closes the connection, as in Kafka. A failed
exchange is answered (SASL_AUTHENTICATION_FAILED and Kafka's message) and
the connection is then closed. A session past connections.max.reauth.ms
serves only a re-authentication; any other request closes it. A
mechanism whose credential expires (an OAUTHBEARER token's ``exp``) ends
the session then, if that is sooner, as Kafka's
calcCompletionTimesAndReturnSessionLifetimeMs does, even with
connections.max.reauth.ms at 0.

A step is awaited: a PLAIN password is checked off the event loop
(sasl/password_checks.py). While it is, the connection reads nothing more,
so what a client sends after a SaslAuthenticate is read once its outcome
is known, as when the step ran at once. When too many checks wait already,
the step is not answered and the connection is closed, as Kafka closes a
connection it cannot authenticate: the client connects again after its
backoff, where a SASL_AUTHENTICATION_FAILED answer would end its attempts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from engine import clock
from engine.credentials import PLAIN, SCRAM_HASHES
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server.sasl import (
    CredentialLookup,
    PasswordCheck,
    SaslAuthenticationFailed,
    SaslServer,
    TokenLookup,
)
from engine.server.sasl.oauthbearer import OAUTHBEARER, OAuthBearerServer, TokenValidator
from engine.server.sasl.password_checks import PasswordChecksBusy
from engine.server.sasl.plain import PlainServer
from engine.server.sasl.scram import ScramServer

log = logging.getLogger("tidelog.server")

SASL_MAX_RECEIVE_BYTES = 524288
"""The largest request a connection may send before it authenticates
(Kafka's sasl.server.max.receive.size): a peer nobody knows yet cannot have
the server buffer max_request_bytes for it."""
SASL_KEYS = frozenset((ApiKey.API_VERSIONS, ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE))
"""What a connection may send before it authenticates (and to re-authenticate)."""


def server_for(
    mechanism: str,
    lookup: CredentialLookup,
    check: PasswordCheck,
    validator: TokenValidator | None = None,
    on_refused: Callable[[str], None] = lambda _: None,
    *,
    framed: bool,
    tokens: TokenLookup | None = None,
) -> SaslServer:
    """A fresh server side of ``mechanism`` (one of engine.credentials.MECHANISMS,
    PLAIN checking passwords with ``check``, or OAUTHBEARER with the token
    ``validator``, which tells ``on_refused`` why it refuses one), for tokens
    in SaslAuthenticate (``framed``) or in bare frames; SCRAM takes logins
    with delegation tokens from ``tokens``."""
    if mechanism == PLAIN:
        return PlainServer(lookup, check)
    if mechanism in SCRAM_HASHES:
        return ScramServer(mechanism, lookup, tokens=tokens)
    if mechanism == OAUTHBEARER and validator is not None:
        return OAuthBearerServer(validator, on_refused, framed=framed)
    raise ValueError(f"no SASL mechanism {mechanism!r}")


class SaslResult:
    """What one SaslAuthenticate answers."""

    __slots__ = ("challenge", "error", "message", "session_lifetime_ms")

    def __init__(
        self, challenge: bytes, error: KafkaCode, message: str | None, session_lifetime_ms: int
    ) -> None:
        self.challenge = challenge
        self.error = error
        self.message = message
        self.session_lifetime_ms = session_lifetime_ms


class Authentication:
    def __init__(
        self,
        *,
        mechanisms: Sequence[str],
        lookup: CredentialLookup,
        check: PasswordCheck,
        now: Callable[[], float],
        reauth_ms: int,
        peer: str,
        on_authenticated: Callable[[str, bool], None],
        validator: TokenValidator | None = None,
        wall_ms: Callable[[], int] = clock.time_ms,
        tokens: TokenLookup | None = None,
    ) -> None:
        self.mechanisms = tuple(mechanisms)
        self._validator = validator
        """OAUTHBEARER's token validator (None when no listener enables it)."""
        self._tokens = tokens
        """Delegation tokens' SCRAM logins (None: no login with a token succeeds)."""
        self._wall_ms = wall_ms
        self._lookup = lookup
        self._check = check
        self._now = now
        self._reauth_ms = reauth_ms
        self._peer = peer
        self._on_authenticated = on_authenticated
        self._server: SaslServer | None = None
        self._mechanism: str | None = None
        """The mechanism of the session (kept across re-authentication)."""
        self.user: str | None = None
        self.principal: str | None = None
        """The session's principal: ``User:<user>``, or a token's owner's;
        a re-authentication may not change it."""
        self.authenticated = False
        self.expires: float | None = None
        """When the session ends (monotonic seconds), or None for never."""
        self._session_bound = f"connections.max.reauth.ms {reauth_ms}"
        """What ended the session, for the log: the setting or the credential's expiry."""
        self.raw_tokens = False
        """After a SaslHandshake v0: the tokens come as bare frames (the
        connection reads them, see Connection._raw_token) until the exchange ends."""
        self.close_after_answer = False
        """Set when the exchange failed: the answer is written, then the connection closed."""

    def refusal(self, api_key: int) -> str | None:
        """Why a request with ``api_key`` closes the connection now, or None."""
        if not self.authenticated:
            if api_key in SASL_KEYS:
                return None
            return f"API key {api_key} before SASL authentication"
        if self.expires is not None and self._now() > self.expires and api_key not in SASL_KEYS:
            return (
                f"the SASL session of {self.user!r} expired ({self._session_bound}) and the"
                " client did not re-authenticate"
            )
        return None

    def handshake(self, mechanism: str, version: int) -> KafkaCode:
        """Starts an exchange with ``mechanism`` (a re-authentication on an
        authenticated connection, whose mechanism may not change); after
        ``version`` 0 the tokens come unframed."""
        if self._server is not None:
            self.close_after_answer = True
            return KafkaCode.ILLEGAL_SASL_STATE
        if mechanism not in self.mechanisms or (
            self.authenticated and mechanism != self._mechanism
        ):
            log.warning("%s: SASL mechanism %r refused", self._peer, mechanism)
            self.close_after_answer = True
            return KafkaCode.UNSUPPORTED_SASL_MECHANISM
        if version == 0 and self.authenticated:
            # Re-authentication (KIP-368) goes through SaslAuthenticate only.
            self.close_after_answer = True
            return KafkaCode.ILLEGAL_SASL_STATE
        self.raw_tokens = version == 0
        self._server = server_for(
            mechanism,
            self._lookup,
            self._check,
            self._validator,
            self._refused,
            framed=not self.raw_tokens,
            tokens=self._tokens,
        )
        return KafkaCode.NONE

    def _refused(self, detail: str) -> None:
        log.warning("%s: SASL authentication failed: %s", self._peer, detail)

    async def authenticate(self, token: bytes) -> SaslResult | None:
        """The answer to ``token``; None when it cannot be checked now (too
        many password checks wait): no answer, and the connection closes."""
        server = self._server
        if server is None:
            self.close_after_answer = True
            return SaslResult(
                b"",
                KafkaCode.ILLEGAL_SASL_STATE,
                "Unexpected SaslAuthenticate request: no SaslHandshake before it",
                0,
            )
        try:
            challenge = await server.step(token)
            if (
                server.complete
                and self.principal is not None
                and server.principal != self.principal
            ):
                raise SaslAuthenticationFailed(
                    "Cannot change principals during re-authentication",
                    f"re-authentication as {server.principal!r} on a connection of"
                    f" {self.principal!r}",
                )
        except SaslAuthenticationFailed as failure:
            # A warning, so that the repeat filter of ``tidelog serve`` holds
            # back a flood of guesses to a line per interval.
            if not failure.logged:
                self._refused(failure.detail)
            self._end_failed()
            return SaslResult(b"", KafkaCode.SASL_AUTHENTICATION_FAILED, failure.message, 0)
        except PasswordChecksBusy as busy:
            log.warning("%s: SASL authentication not attempted, closing: %s", self._peer, busy)
            self._end_failed()
            return None
        if not server.complete:
            return SaslResult(challenge, KafkaCode.NONE, None, 0)
        self._server = None
        self.raw_tokens = False
        again = self.authenticated
        self.user, self._mechanism, self.authenticated = server.user, server.mechanism, True
        self.principal = server.principal
        lifetime, self.expires = self._session_lifetime(server)
        log.debug(
            "%s: %s as %r with %s%s",
            self._peer,
            "re-authenticated" if again else "authenticated",
            server.principal,
            server.mechanism,
            f" (delegation token {server.user})" if server.token_authenticated else "",
        )
        self._on_authenticated(server.principal, server.token_authenticated)
        return SaslResult(challenge, KafkaCode.NONE, None, lifetime)

    def _end_failed(self) -> None:
        self._server = None
        self.raw_tokens = False
        self.close_after_answer = True

    def _session_lifetime(self, server: SaslServer) -> tuple[int, float | None]:
        """The session_lifetime_ms to answer and when the session ends
        (monotonic seconds, None for never): connections.max.reauth.ms, or
        the credential's expiry if sooner (Kafka's SaslServerAuthenticator)."""
        reauth_ms = self._reauth_ms
        expires_ms = server.credential_expires_ms
        if expires_ms is None:
            return reauth_ms, (self._now() + reauth_ms / 1000 if reauth_ms else None)
        lifetime = max(0, expires_ms - self._wall_ms())
        if reauth_ms and reauth_ms < lifetime:
            lifetime = reauth_ms
        else:
            self._session_bound = "its credential's expiry"
        return lifetime, self._now() + lifetime / 1000
