"""Delegation tokens (KIP-48): short-lived credentials a user hands to a
job, which logs in with SASL/SCRAM as the token (``tokenauth=true``) and
acts as the token's owner, as Kafka's DelegationTokenManager and its
controller's DelegationTokenControlManager keep them.

A token is its id (a random UUID) and the HMAC-SHA512 of that id under the
configured secret (``delegation.token.secret.key``): the HMAC, base64, is
the password. What is kept, in the catalog (``delegation_token`` records,
docs/engine-format.md), is the token's information (owner, requester,
renewers, issue, expiry and max timestamps) and the SCRAM credentials the
HMAC derives (salt, stored and server keys, as for a user), never the HMAC
itself: it is computed again from the secret whenever it is shown. Each
token also keeps a check of the secret it was made under; after the secret
changes, the tokens made before are void, as in Kafka, whose brokers then
derive other HMACs.

A token past its expiry (or its max timestamp) can no longer log in, be
renewed, expired or described, and is removed from the catalog by a sweep
every ``delegation.token.expiry.check.interval.ms``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from engine.config_ranges import DELEGATION_TOKEN_RANGES, DELEGATION_TOKEN_TEXTS
from engine.credentials import MIN_ITERATIONS, SCRAM_HASHES, ScramCredential, new_credential
from engine.errors import EngineError
from engine.protocol.kafka_code import KafkaCode
from s3stream.ranges import check_ranges, check_texts

log = logging.getLogger("tidelog.engine")

USER_TYPE = "User"
"""The one principal type a renewer may have (Kafka's KafkaPrincipal.USER_TYPE)."""
DEFAULT_EXPIRY_TIME_MS = 24 * 60 * 60 * 1000
"""Kafka's delegation.token.expiry.time.ms: a token lives this long unless renewed."""
DEFAULT_MAX_LIFETIME_MS = 7 * 24 * 60 * 60 * 1000
"""Kafka's delegation.token.max.lifetime.ms: no renewal takes a token past this."""
DEFAULT_EXPIRY_CHECK_INTERVAL_MS = 60 * 60 * 1000
"""Kafka's delegation.token.expiry.check.interval.ms: how often expired tokens are removed."""
MAX_TIMESTAMP_MS = 2**63 - 1
"""The latest timestamp the token APIs carry (an int64)."""
ERROR_TIMESTAMP = -1
"""The timestamps an answer carries with an error (Kafka's
DelegationTokenManager.ErrorTimestamp)."""


@dataclass(frozen=True)
class DelegationTokenConfig:
    """Kafka's delegation.token.* broker settings. No secret: tokens are
    off (DELEGATION_TOKEN_AUTH_DISABLED), as in Kafka."""

    secret_key: str | None = None
    expiry_time_ms: int = DEFAULT_EXPIRY_TIME_MS
    max_lifetime_ms: int = DEFAULT_MAX_LIFETIME_MS
    expiry_check_interval_ms: int = DEFAULT_EXPIRY_CHECK_INTERVAL_MS

    def __post_init__(self) -> None:
        check_texts(self, DELEGATION_TOKEN_TEXTS)
        check_ranges(self, DELEGATION_TOKEN_RANGES)

    @property
    def enabled(self) -> bool:
        return bool(self.secret_key)

    def __repr__(self) -> str:  # the secret never reaches a log
        shown = "set" if self.secret_key else None
        return (
            f"DelegationTokenConfig(secret_key={shown}, expiry_time_ms={self.expiry_time_ms},"
            f" max_lifetime_ms={self.max_lifetime_ms},"
            f" expiry_check_interval_ms={self.expiry_check_interval_ms})"
        )


class DelegationTokenAuthDisabled(EngineError):
    code = KafkaCode.DELEGATION_TOKEN_AUTH_DISABLED

    def __init__(self) -> None:
        super().__init__("delegation tokens are off: no delegation.token.secret.key is set")


class DelegationTokenNotFound(EngineError):
    code = KafkaCode.DELEGATION_TOKEN_NOT_FOUND

    def __init__(self, token_id: str | None = None) -> None:
        named = "that HMAC" if token_id is None else f"id {token_id}"
        super().__init__(f"no delegation token has {named}")


class DelegationTokenExpired(EngineError):
    code = KafkaCode.DELEGATION_TOKEN_EXPIRED

    def __init__(self, token_id: str) -> None:
        super().__init__(f"delegation token {token_id} has expired")
        self.token_id = token_id


class DelegationTokenOwnerMismatch(EngineError):
    code = KafkaCode.DELEGATION_TOKEN_OWNER_MISMATCH

    def __init__(self, principal: str, token_id: str) -> None:
        super().__init__(f"{principal} is neither the owner nor a renewer of token {token_id}")
        self.principal = principal


class InvalidPrincipalType(EngineError):
    code = KafkaCode.INVALID_PRINCIPAL_TYPE

    def __init__(self, principal: str) -> None:
        super().__init__(f"a renewer must be a {USER_TYPE} principal, not {principal!r}")
        self.principal = principal


def principal_type(principal: str) -> str:
    """``User`` of ``User:alice``."""
    return principal.split(":", 1)[0]


def principal_name(principal: str) -> str:
    """``alice`` of ``User:alice``."""
    return principal.split(":", 1)[1] if ":" in principal else principal


@dataclass(frozen=True)
class TokenInformation:
    """What Kafka's TokenInformation holds: principals as ``Type:name``,
    timestamps in ms since the epoch."""

    token_id: str
    owner: str
    requester: str
    renewers: tuple[str, ...]
    issue_timestamp_ms: int
    expiry_timestamp_ms: int
    max_timestamp_ms: int

    def owner_or_renewer(self, principal: str) -> bool:
        """Who may describe the token without an ACL (Kafka's ownerOrRenewer:
        the requester too)."""
        return principal in (self.owner, self.requester) or principal in self.renewers

    def any_of(self, principals: frozenset[str] | set[str]) -> bool:
        """Whether any of ``principals`` is the owner, requester or a renewer
        (Kafka's filterToken over the owners asked for): one pass over the
        renewers, however many principals are asked about."""
        return (
            self.owner in principals
            or self.requester in principals
            or not principals.isdisjoint(self.renewers)
        )

    def may_renew(self, principal: str) -> bool:
        """Who may renew or expire it (Kafka's allowedToRenew)."""
        return principal == self.owner or principal in self.renewers

    def expired(self, now_ms: int) -> bool:
        return self.max_timestamp_ms < now_ms or self.expiry_timestamp_ms < now_ms


class StoredToken(NamedTuple):
    """A token as the catalog keeps it."""

    info: TokenInformation
    secret_check: bytes
    """A check of the secret the token was made under (secret_check)."""
    credentials: Mapping[str, ScramCredential]
    """The SCRAM credentials its HMAC derives, by mechanism."""

    def to_wire(self) -> list[Any]:
        info = self.info
        return [
            info.token_id,
            info.owner,
            info.requester,
            list(info.renewers),
            info.issue_timestamp_ms,
            info.expiry_timestamp_ms,
            info.max_timestamp_ms,
            self.secret_check,
            {mechanism: c.to_wire() for mechanism, c in self.credentials.items()},
        ]

    @classmethod
    def from_wire(cls, raw: list[Any]) -> StoredToken:
        token_id, owner, requester, renewers, issued, expiry, max_ms, check, credentials = raw
        info = TokenInformation(token_id, owner, requester, tuple(renewers), issued, expiry, max_ms)
        return cls(
            info,
            bytes(check),
            {m: ScramCredential.from_wire(c) for m, c in credentials.items()},
        )


class TokenLogin(NamedTuple):
    """What a SCRAM login with a token needs: the credential to check, the
    principal the session takes, and when the token expires (ending the
    session, KIP-368)."""

    credential: ScramCredential
    owner: str
    expiry_timestamp_ms: int


def token_hmac(secret_key: str, token_id: str) -> bytes:
    """The token's HMAC: HMAC-SHA512 of its id under the secret, both as
    UTF-8 (Kafka's DelegationTokenManager.createHmac)."""
    return hmac.digest(secret_key.encode(), token_id.encode(), "sha512")


SECRET_CHECK_LABEL = b"tidelog delegation token secret"
SECRET_CHECK_ITERATIONS = MIN_ITERATIONS
"""As many as a token's credentials take: whoever reads the catalog may
test guesses of the secret against either, and a check of one HMAC
would make that 4096 times cheaper than against the credentials."""


def secret_check(secret_key: str) -> bytes:
    """A value that tells whether a token was made under ``secret_key``
    without keeping the secret: 16 bytes of PBKDF2-HMAC-SHA256 of the
    secret over a fixed label, computed once per engine."""
    derived = hashlib.pbkdf2_hmac(
        "sha256", secret_key.encode(), SECRET_CHECK_LABEL, SECRET_CHECK_ITERATIONS
    )
    return derived[:16]


def _digest_key(digest: bytes) -> bytes:
    """What the HMAC index keys a token by: a hash of its HMAC, not the HMAC."""
    return hashlib.sha256(digest).digest()


def delegation_token_record(tokens: Sequence[StoredToken]) -> list[Any]:
    """The catalog record setting tokens (a new one, or one renewed)."""
    return ["delegation_token", [token.to_wire() for token in tokens]]


def delegation_tokens_removed_record(token_ids: Sequence[str]) -> list[Any]:
    """The catalog record removing tokens (expired, or expired at once)."""
    return ["delegation_tokens_remove", list(token_ids)]


class DelegationTokens:
    """Every delegation token, read from the catalog's map and changed
    through ``write`` (a catalog append) before the change shows."""

    def __init__(
        self,
        tokens: Callable[[], Mapping[str, list[Any]]],
        write: Callable[[list[Any]], None],
        config: DelegationTokenConfig,
        now_ms: Callable[[], int],
    ) -> None:
        self._tokens = tokens
        """The catalog's map, replaced whole by each record applied."""
        self._write = write
        self.config = config
        self._now_ms = now_ms
        self._lock = threading.Lock()
        """Held from a token's read to the write of its change: a renewal
        and a sweep never both write from the same read."""
        self._check = secret_check(config.secret_key) if config.secret_key else b""
        self._by_digest: dict[bytes, str] = {}
        """Token ids by a hash of their HMAC (Kafka's tokenForHmac map), so
        that a Renew or Expire finds its token without an HMAC per token
        kept; the HMACs themselves are not kept, here either. Held with
        the lock. Ids of removed tokens stay until a rebuild: a lookup
        checks the id is still kept."""
        self._indexed: Mapping[str, list[Any]] | None = None
        """The catalog's map the index was last brought up to date with."""
        self._indexed_ids: set[str] = set()

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def _secret(self) -> str:
        secret = self.config.secret_key
        if not secret:
            raise DelegationTokenAuthDisabled
        return secret

    def _valid(self) -> dict[str, StoredToken]:
        """The tokens made under the secret in force, by id."""
        found = {}
        for token_id, raw in self._tokens().items():
            token = StoredToken.from_wire(raw)
            if hmac.compare_digest(token.secret_check, self._check):
                found[token_id] = token
        return found

    def hmac(self, token_id: str) -> bytes:
        return token_hmac(self._secret(), token_id)

    def create(
        self,
        owner: str,
        requester: str,
        renewers: Sequence[str],
        max_lifetime_ms: int = -1,
    ) -> tuple[TokenInformation, bytes]:
        """A new token of ``owner``, made by ``requester``; its HMAC. Its
        max lifetime is the configured one, or ``max_lifetime_ms`` when
        above 0 and shorter (Kafka's controller)."""
        secret = self._secret()
        for renewer in renewers:
            if principal_type(renewer) != USER_TYPE:
                raise InvalidPrincipalType(renewer)
        now = self._now_ms()
        lifetime = self.config.max_lifetime_ms
        if max_lifetime_ms > 0:
            lifetime = min(lifetime, max_lifetime_ms)
        # Kafka's setting takes any long; the timestamp is an int64 on the wire
        max_timestamp = min(now + lifetime, MAX_TIMESTAMP_MS)
        expiry = min(max_timestamp, now + self.config.expiry_time_ms)
        token_id = str(uuid.uuid4())
        digest = token_hmac(secret, token_id)
        # Kafka's ScramFormatter over the HMAC's base64 at the least
        # iterations: derived once here, on the admin thread, so that no
        # login has a key derivation run on the event loop.
        password = base64.b64encode(digest).decode()
        credentials = {
            mechanism: new_credential(mechanism, password, MIN_ITERATIONS)
            for mechanism in SCRAM_HASHES
        }
        info = TokenInformation(
            token_id, owner, requester, tuple(dict.fromkeys(renewers)), now, expiry, max_timestamp
        )
        with self._lock:
            self._write(delegation_token_record([StoredToken(info, self._check, credentials)]))
        return info, digest

    def _by_hmac(self, digest: bytes) -> StoredToken:
        """The token of ``digest``, made under the secret in force: one
        hash and one HMAC, however many tokens are kept (held with the lock)."""
        secret = self._secret()
        tokens = self._tokens()
        if tokens is not self._indexed:  # the catalog changed: index what is new
            self._index(secret, tokens)
        token_id = self._by_digest.get(_digest_key(digest))
        raw = None if token_id is None else tokens.get(token_id)
        if raw is None:
            raise DelegationTokenNotFound
        token = StoredToken.from_wire(raw)
        if not (
            hmac.compare_digest(token.secret_check, self._check)
            and hmac.compare_digest(token_hmac(secret, token.info.token_id), digest)
        ):
            raise DelegationTokenNotFound
        return token

    def _index(self, secret: str, tokens: Mapping[str, list[Any]]) -> None:
        if len(self._indexed_ids) > 2 * len(tokens) + 64:  # mostly removed ones: start over
            self._by_digest, self._indexed_ids = {}, set()
        for token_id in tokens.keys() - self._indexed_ids:
            self._by_digest[_digest_key(token_hmac(secret, token_id))] = token_id
            self._indexed_ids.add(token_id)
        self._indexed = tokens

    def _renewable(self, principal: str, digest: bytes) -> StoredToken:
        """The token of ``digest``, live, that ``principal`` may renew or
        expire, checked in Kafka's order (found, not expired, allowed)."""
        token = self._by_hmac(digest)
        if token.info.expired(self._now_ms()):
            raise DelegationTokenExpired(token.info.token_id)
        if not token.info.may_renew(principal):
            raise DelegationTokenOwnerMismatch(principal, token.info.token_id)
        return token

    def renew(self, principal: str, digest: bytes, renew_period_ms: int = -1) -> int:
        """Renews the token of ``digest`` for the configured expiry time, or
        ``renew_period_ms`` when above 0 and shorter, never past its max
        timestamp; returns its new expiry timestamp."""
        with self._lock:
            token = self._renewable(principal, digest)
            period = self.config.expiry_time_ms
            if renew_period_ms > 0:
                period = min(period, renew_period_ms)
            return self._set_expiry(token, self._now_ms() + period)

    def expire(self, principal: str, digest: bytes, expiry_period_ms: int) -> int:
        """Moves the token of ``digest``'s expiry to ``expiry_period_ms`` from
        now (never past its max timestamp), or removes it at once when that
        is negative; returns its new expiry (the period itself when removed,
        as Kafka answers)."""
        with self._lock:
            token = self._renewable(principal, digest)
            if expiry_period_ms < 0:
                self._write(delegation_tokens_removed_record([token.info.token_id]))
                return expiry_period_ms
            return self._set_expiry(token, self._now_ms() + expiry_period_ms)

    def _set_expiry(self, token: StoredToken, expiry: int) -> int:
        expiry = min(token.info.max_timestamp_ms, expiry)
        info = token.info
        renewed = TokenInformation(
            info.token_id,
            info.owner,
            info.requester,
            info.renewers,
            info.issue_timestamp_ms,
            expiry,
            info.max_timestamp_ms,
        )
        self._write(delegation_token_record([token._replace(info=renewed)]))
        return expiry

    def tokens(self) -> list[TokenInformation]:
        """The live tokens (made under the secret in force, not expired), by
        issue time."""
        self._secret()
        now = self._now_ms()
        live = [t.info for t in self._valid().values() if not t.info.expired(now)]
        return sorted(live, key=lambda info: (info.issue_timestamp_ms, info.token_id))

    def count(self) -> int:
        """How many tokens the catalog holds (expired ones not swept yet too)."""
        return len(self._tokens())

    def renewers_kept(self) -> int:
        """How many renewers the catalog's tokens name together: one look
        at each token, not at its renewers."""
        return sum(len(raw[3]) for raw in self._tokens().values())

    def stored(self) -> list[TokenInformation]:
        """Every token the catalog holds, expired or made under another
        secret too, by issue time: what an operator lists (no secret needed)."""
        found = [StoredToken.from_wire(raw).info for raw in self._tokens().values()]
        return sorted(found, key=lambda info: (info.issue_timestamp_ms, info.token_id))

    def remove(self, token_id: str) -> None:
        """Removes a token by its id, whatever its state: an operator's
        revocation, which needs neither the HMAC nor the secret."""
        with self._lock:
            if token_id not in self._tokens():
                raise DelegationTokenNotFound(token_id)
            self._write(delegation_tokens_removed_record([token_id]))

    def login(self, token_id: str, mechanism: str) -> TokenLogin | None:
        """What a SCRAM login as token ``token_id`` checks, or None: tokens
        off, no such live token, or none made under the secret in force."""
        if not self.config.secret_key:
            return None
        raw = self._tokens().get(token_id)
        if raw is None:
            return None
        token = StoredToken.from_wire(raw)
        credential = token.credentials.get(mechanism)
        if (
            credential is None
            or not hmac.compare_digest(token.secret_check, self._check)
            or token.info.expired(self._now_ms())
        ):
            return None
        return TokenLogin(credential, token.info.owner, token.info.expiry_timestamp_ms)

    def sweep(self) -> list[str]:
        """Removes the expired tokens as one catalog record; returns their
        ids (Kafka's sweepExpiredDelegationTokens). Tokens of another secret
        are left: the secret may be set back. Nothing without a secret."""
        if not self.config.secret_key:
            return []
        with self._lock:
            now = self._now_ms()
            expired = {}
            for token_id, raw in self._tokens().items():
                info = StoredToken.from_wire(raw).info
                if info.expired(now):
                    expired[token_id] = info.owner
            gone = list(expired)
            if gone:
                self._write(delegation_tokens_removed_record(gone))
            for token_id, owner in expired.items():  # as Kafka logs it; never the HMAC
                log.info("delegation token %s of %s expired and removed", token_id, owner)
            return gone
