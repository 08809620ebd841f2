"""SASL/SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka's
ScramSaslServer serves them: client-first (``n,,n=user,r=nonce``), the
server's first (its nonce appended, the salt, the iterations), client-final
(channel binding, the whole nonce, the proof), and the server's signature.

The client-final message's nonce is the whole nonce of the server's first
message, or that nonce after the client's own once more: librdkafka before
2.6.1 (kcat as distributions ship it, among others) writes it so, and
Kafka 3.8.1 to 3.9 accept it (its ScramSaslServer checks that the nonce
ends with the server's). Nothing else before it is accepted; the proof
covers the message as sent, so the form does not weaken it.

A client-first message with the ``tokenauth=true`` extension logs in
with a delegation token (KIP-48): the user name is the token's id, the
password the base64 of its HMAC, and the session's principal the token's
owner; the token's expiry ends the session (KIP-368), as Kafka's
ScramSaslServer and its DelegationTokenCredentialCallback do. Other
extensions are ignored, as Kafka ignores them.

No channel binding is offered (the gs2 flag must be ``n`` or ``y``; ``p=``
is refused), the authorization id must be empty or the user's own, and the
proof is compared in constant time. A failure at any step answers Kafka's
one message for invalid SCRAM credentials.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re

from engine.credentials import SCRAM_HASHES, ScramCredential
from engine.delegation_tokens import principal_name
from engine.server.sasl import CredentialLookup, SaslAuthenticationFailed, TokenLookup

_CLIENT_FIRST = re.compile(
    rb"(?P<gs2>(?P<flag>[ny]),(?:a=(?P<authzid>[^,]*))?,)"
    rb"(?P<bare>n=(?P<user>[^,]*),r=(?P<nonce>[\x21-\x2b\x2d-\x7e]+)(?:,(?P<extensions>.*))?)",
    re.DOTALL,
)
"""RFC 5802's client-first-message (Kafka's ClientFirstMessage pattern):
extensions after the nonce, of which only ``tokenauth`` is read."""
_CLIENT_FINAL = re.compile(
    rb"(?P<without_proof>c=(?P<binding>[A-Za-z0-9+/=]*),r=(?P<nonce>[\x21-\x2b\x2d-\x7e]+)"
    rb"(?:,[a-zA-Z]=[^,]*)*?),p=(?P<proof>[A-Za-z0-9+/=]+)",
    re.DOTALL,
)
SERVER_NONCE_BYTES = 24
TOKEN_AUTH = b"tokenauth"
"""The extension that marks a login with a delegation token (Kafka's
ScramLoginModule.TOKEN_AUTH_CONFIG)."""


def token_authenticated(extensions: bytes | None) -> bool:
    """Whether the client-first message's extensions carry
    ``tokenauth=true`` (any case, as Kafka's ScramExtensions reads it; of
    a name given twice the last value, as its map keeps)."""
    value = b""
    for extension in (extensions or b"").split(b","):
        name, _, given = extension.partition(b"=")
        if name == TOKEN_AUTH:
            value = given
    return value.lower() == b"true"


def _sasl_name(raw: bytes) -> str:
    """A saslname (``=2C`` is a comma, ``=3D`` an equals sign) as text."""
    text = raw.decode()
    if re.search(r"=(?!2C|3D)", text):
        raise ValueError("a lone '=' in a saslname")
    return text.replace("=2C", ",").replace("=3D", "=")


class ScramServer:
    def __init__(
        self,
        mechanism: str,
        lookup: CredentialLookup,
        nonce: bytes | None = None,
        tokens: TokenLookup | None = None,
    ) -> None:
        self.mechanism = mechanism
        self._hash = SCRAM_HASHES[mechanism]
        self._lookup = lookup
        self._tokens = tokens
        """Delegation tokens' logins (None: no login with a token succeeds)."""
        self._principal = ""
        self.token_authenticated = False
        self.credential_expires_ms: int | None = None
        """A token's expiry ends the session; a password does not expire with it."""
        self._server_nonce = nonce
        """Fixed only by tests (RFC test vectors); random otherwise."""
        self._state = "client-first"
        self._user = ""
        self._gs2 = b""
        self._client_nonce = b""
        self._nonce = b""
        self._auth_start = b""
        self._credential: ScramCredential | None = None

    def _fail(self, detail: str) -> SaslAuthenticationFailed:
        self._state = "failed"
        self._credential = None
        message = (
            "Authentication failed during authentication due to invalid credentials with"
            f" SASL mechanism {self.mechanism}"
        )
        return SaslAuthenticationFailed(message, f"{self.mechanism}: {detail}")

    async def step(self, response: bytes) -> bytes:
        if self._state == "client-first":
            return self._client_first(response)
        if self._state == "client-final":
            return self._client_final(response)
        raise self._fail(f"a message in state {self._state}")

    def _client_first(self, message: bytes) -> bytes:
        found = _CLIENT_FIRST.fullmatch(message)
        if found is None:
            raise self._fail("a malformed client-first message")
        try:
            user = _sasl_name(found["user"])
            authzid = _sasl_name(found["authzid"]) if found["authzid"] is not None else ""
        except (UnicodeDecodeError, ValueError):
            raise self._fail("a user name that is not a valid saslname") from None
        if authzid and authzid != user:
            raise self._fail(f"authorization id {authzid!r} is not user {user!r}")
        credential: ScramCredential | None
        if token_authenticated(found["extensions"]):
            login = self._tokens(user, self.mechanism) if self._tokens is not None else None
            if login is None:
                raise self._fail(f"no live delegation token {user!r}")
            # Kafka's token cache hands its principal builder the owner's
            # name, which makes a User of it whatever the owner's type.
            credential, self._principal = login.credential, f"User:{principal_name(login.owner)}"
            self.credential_expires_ms = login.expiry_timestamp_ms
            self.token_authenticated = True
        else:
            credential = self._lookup(user, self.mechanism)
            if credential is None:
                raise self._fail(f"no {self.mechanism} credential for user {user!r}")
            self._principal = f"User:{user}"
        server_nonce = self._server_nonce
        if server_nonce is None:
            server_nonce = base64.b64encode(os.urandom(SERVER_NONCE_BYTES))
        self._user, self._gs2, self._credential = user, found["gs2"], credential
        self._client_nonce = found["nonce"]
        self._nonce = self._client_nonce + server_nonce
        server_first = b"r=%s,s=%s,i=%d" % (
            self._nonce,
            base64.b64encode(credential.salt),
            credential.iterations,
        )
        self._auth_start = found["bare"] + b"," + server_first
        self._state = "client-final"
        return server_first

    def _client_final(self, message: bytes) -> bytes:
        credential = self._credential
        assert credential is not None
        found = _CLIENT_FINAL.fullmatch(message)
        if found is None:
            raise self._fail("a malformed client-final message")
        try:
            binding = base64.b64decode(found["binding"], validate=True)
            proof = base64.b64decode(found["proof"], validate=True)
        except binascii.Error:
            raise self._fail("client-final message's base64 is invalid") from None
        if not hmac.compare_digest(binding, self._gs2):
            raise self._fail("the channel binding differs from the client-first gs2 header")
        nonce = found["nonce"]
        if not (
            hmac.compare_digest(nonce, self._nonce)
            or hmac.compare_digest(nonce, self._client_nonce + self._nonce)
        ):
            raise self._fail("invalid client nonce in the final client message")
        auth_message = self._auth_start + b"," + found["without_proof"]
        signature = hmac.digest(credential.stored_key, auth_message, self._hash)
        if len(proof) != len(signature):
            raise self._fail("a client proof of the wrong length")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(
            hashlib.new(self._hash, client_key).digest(), credential.stored_key
        ):
            raise self._fail(f"invalid client credentials for user {self._user!r}")
        server_signature = hmac.digest(credential.server_key, auth_message, self._hash)
        self._state = "complete"
        self._credential = None
        return b"v=" + base64.b64encode(server_signature)

    @property
    def complete(self) -> bool:
        return self._state == "complete"

    @property
    def user(self) -> str:
        assert self._state == "complete", "not authenticated"
        return self._user

    @property
    def principal(self) -> str:
        """``User:<user>``, or a token's owner."""
        assert self._state == "complete", "not authenticated"
        return self._principal
