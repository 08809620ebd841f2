"""SASL/PLAIN (RFC 4616) as Kafka's PlainSaslServer serves it: one message,
``authzid NUL authcid NUL password``, the authzid empty or the user's name;
the password is checked against the user's salted PLAIN credential, by a
PasswordCheck (off the event loop: see password_checks.py).

A user with no PLAIN credential has a password checked all the same,
against a stand-in credential no password derives, and is then refused:
refused at once, a login would tell whether a user name exists by how
soon its answer comes (a known user's wrong password costs a derivation)."""

from __future__ import annotations

from engine.credentials import PLAIN
from engine.server.sasl import CredentialLookup, PasswordCheck, SaslAuthenticationFailed
from engine.server.sasl.password_checks import NO_SUCH_USER

_INVALID = "Authentication failed: Invalid username or password"


class PlainServer:
    mechanism = PLAIN

    def __init__(self, lookup: CredentialLookup, check: PasswordCheck) -> None:
        self._lookup = lookup
        self._check = check
        self._user: str | None = None

    async def step(self, response: bytes) -> bytes:
        if self._user is not None:
            raise SaslAuthenticationFailed(
                "Authentication failed: SASL/PLAIN takes one message", "a second PLAIN message"
            )
        tokens = response.split(b"\0")
        if len(tokens) != 3:
            message = f"Invalid SASL/PLAIN response: expected 3 tokens, got {len(tokens)}"
            raise SaslAuthenticationFailed(message, message)
        authzid_raw, user_raw, password = tokens
        try:
            authzid, user = authzid_raw.decode(), user_raw.decode()
        except UnicodeDecodeError:
            raise SaslAuthenticationFailed(_INVALID, "a user name that is not UTF-8") from None
        if not user:
            message = "Authentication failed: username not specified"
            raise SaslAuthenticationFailed(message, message)
        if not password:
            message = "Authentication failed: password not specified"
            raise SaslAuthenticationFailed(message, f"{message} (user {user!r})")
        if authzid and authzid != user:
            message = (
                "Authentication failed: Client requested an authorization id that is"
                " different from username"
            )
            raise SaslAuthenticationFailed(message, f"{message} (user {user!r})")
        credential = self._lookup(user, PLAIN)
        if credential is None:
            await self._check(NO_SUCH_USER, PLAIN, password)  # as long as a known user's
            raise SaslAuthenticationFailed(_INVALID, f"no PLAIN credential for user {user!r}")
        if not await self._check(credential, PLAIN, password):
            raise SaslAuthenticationFailed(_INVALID, f"wrong PLAIN credentials for user {user!r}")
        self._user = user
        return b""

    @property
    def complete(self) -> bool:
        return self._user is not None

    token_authenticated = False
    """Never a delegation token: those log in with SCRAM only."""

    @property
    def principal(self) -> str:
        return f"User:{self.user}"

    @property
    def user(self) -> str:
        assert self._user is not None, "not authenticated"
        return self._user

    credential_expires_ms = None
    """A password does not expire with the session."""
