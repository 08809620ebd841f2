"""SASL on the server side: one module per mechanism, each behind the same
small interface (``SaslServer``), chosen by name in authentication.py.

A mechanism is a step function from the client's bytes to the server's
bytes, awaited (PLAIN's check of a password runs off the event loop, see
password_checks.py); once ``complete`` it names the authenticated user. A step that
refuses the client raises ``SaslAuthenticationFailed`` with the message
Kafka sends (SaslServerAuthenticator) and a detail for the log, which never
holds a secret.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from engine.credentials import ScramCredential
from engine.delegation_tokens import TokenLogin

CredentialLookup = Callable[[str, str], ScramCredential | None]
"""A user's credential for a mechanism, or None: (user, mechanism)."""
TokenLookup = Callable[[str, str], TokenLogin | None]
"""A live delegation token's login for a SCRAM mechanism, or None:
(token id, mechanism)."""
PasswordCheck = Callable[[ScramCredential, str, bytes], Awaitable[bool]]
"""Whether a password derives a credential's keys: (credential, mechanism,
password); raises password_checks.PasswordChecksBusy when it cannot now."""


class SaslAuthenticationFailed(Exception):
    """The client failed to authenticate: ``message`` goes to it, ``detail`` to the log."""

    def __init__(self, message: str, detail: str, *, logged: bool = False) -> None:
        super().__init__(detail)
        self.message = message
        self.detail = detail
        self.logged = logged
        """Whether the mechanism already logged why (the failure is then only counted)."""


class SaslServer(Protocol):
    mechanism: str

    async def step(self, response: bytes) -> bytes:
        """The server's challenge to the client's ``response`` (raises
        SaslAuthenticationFailed)."""
        ...

    @property
    def complete(self) -> bool: ...

    @property
    def user(self) -> str:
        """The authenticated user's name (once complete)."""
        ...

    @property
    def principal(self) -> str:
        """The session's principal (once complete): ``User:<user>``, or
        the owner of the delegation token it logged in with."""
        ...

    @property
    def token_authenticated(self) -> bool:
        """Whether it logged in with a delegation token (KIP-48)."""
        ...

    @property
    def credential_expires_ms(self) -> int | None:
        """When the credential expires (ms since the epoch), ending the
        session (KIP-368); None for never."""
        ...
