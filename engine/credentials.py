"""Users and their credentials, as the SASL mechanisms check them.

A SCRAM credential is what RFC 5802 has a server keep: a salt, an
iteration count, and the stored and server keys derived from the salted
password, never the password itself (Kafka's ScramCredential, shaped by
ScramFormatter). A PLAIN user's password is kept the same way, a
SCRAM-SHA-512-shaped record under the mechanism name ``PLAIN``: checking a
password derives its salted keys again and compares them.

Credentials live in the catalog (``user_credentials`` records, see
docs/engine-format.md), so a process opening the same bucket keeps them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import EngineError
from engine.protocol.kafka_code import KafkaCode

SCRAM_HASHES: Mapping[str, str] = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
"""Each SCRAM mechanism's hash function (hashlib's name)."""
PLAIN = "PLAIN"
PLAIN_HASH = "sha512"
"""How a PLAIN user's password is kept: salted and iterated with SHA-512."""
MECHANISMS = (*SCRAM_HASHES, PLAIN)
MIN_ITERATIONS = 4096
"""Kafka's least iteration count (ScramMechanism.minIterations)."""
MAX_ITERATIONS = 16384
"""Kafka's greatest (ScramMechanism.maxIterations)."""
SALT_BYTES = 32


class UnsupportedSaslMechanism(EngineError):
    code = KafkaCode.UNSUPPORTED_SASL_MECHANISM

    def __init__(self, mechanism: str) -> None:
        super().__init__(f"unknown SASL mechanism {mechanism!r}: one of {', '.join(MECHANISMS)}")
        self.mechanism = mechanism


class UnacceptableCredential(EngineError):
    code = KafkaCode.UNACCEPTABLE_CREDENTIAL


class UserNotFound(EngineError):
    code = KafkaCode.RESOURCE_NOT_FOUND

    def __init__(self, user: str, mechanism: str | None = None) -> None:
        what = f"a {mechanism} credential" if mechanism else "credentials"
        super().__init__(f"user {user!r} has no {what}")
        self.user = user


@dataclass(frozen=True)
class ScramCredential:
    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int

    def to_wire(self) -> list[Any]:
        return [self.salt, self.stored_key, self.server_key, self.iterations]

    @classmethod
    def from_wire(cls, raw: list[Any]) -> ScramCredential:
        salt, stored_key, server_key, iterations = raw
        return cls(bytes(salt), bytes(stored_key), bytes(server_key), int(iterations))


def hash_of(mechanism: str) -> str:
    """The hash function a mechanism's credentials are derived with."""
    if mechanism == PLAIN:
        return PLAIN_HASH
    found = SCRAM_HASHES.get(mechanism)
    if found is None:
        raise UnsupportedSaslMechanism(mechanism)
    return found


def salted_password(hash_name: str, password: bytes, salt: bytes, iterations: int) -> bytes:
    """RFC 5802's Hi(password, salt, i): PBKDF2 with HMAC of the hash."""
    return hashlib.pbkdf2_hmac(hash_name, password, salt, iterations)


def from_salted_password(
    hash_name: str, salted: bytes, salt: bytes, iterations: int
) -> ScramCredential:
    """The credential kept for a salted password (RFC 5802: StoredKey is
    H(HMAC(SaltedPassword, "Client Key")), ServerKey HMAC(SaltedPassword,
    "Server Key"))."""
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    stored_key = hashlib.new(hash_name, client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", hash_name)
    return ScramCredential(salt, stored_key, server_key, iterations)


def check_iterations(iterations: int) -> None:
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise UnacceptableCredential(
            f"iterations must be from {MIN_ITERATIONS} to {MAX_ITERATIONS}, not {iterations}"
        )


def new_credential(
    mechanism: str, password: str, iterations: int = MIN_ITERATIONS, salt: bytes | None = None
) -> ScramCredential:
    """A credential for ``password`` under ``mechanism``, with a fresh salt."""
    check_iterations(iterations)
    hash_name = hash_of(mechanism)
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    salted = salted_password(hash_name, password.encode(), salt, iterations)
    return from_salted_password(hash_name, salted, salt, iterations)


def password_matches(credential: ScramCredential, mechanism: str, password: bytes) -> bool:
    """Whether ``password`` derives ``credential``'s keys (constant time)."""
    hash_name = hash_of(mechanism)
    salted = salted_password(hash_name, password, credential.salt, credential.iterations)
    derived = from_salted_password(hash_name, salted, credential.salt, credential.iterations)
    return hmac.compare_digest(derived.stored_key, credential.stored_key)


CredentialChange = tuple[str, str, list[Any] | None]
"""A user, a mechanism, and the credential to set there (its catalog form)
or None to delete it."""


def user_credentials_record(changes: Sequence[CredentialChange]) -> list[Any]:
    """The catalog record of one request's credential changes
    (docs/engine-format.md): ``user_credentials`` for one,
    ``user_credentials_many`` for more."""
    if len(changes) == 1:
        [(user, mechanism, credential)] = changes
        return ["user_credentials", user, mechanism, credential]
    return ["user_credentials_many", [list(change) for change in changes]]


class Credentials:
    """Every user's credentials, by user then mechanism; each change is
    made durable through ``write`` (one catalog append for all the changes
    of a call) before it shows."""

    def __init__(
        self,
        users: Callable[[], Mapping[str, Mapping[str, list[Any]]]],
        write: Callable[[list[CredentialChange]], None],
    ) -> None:
        self._users = users
        """The catalog's map, replaced whole by each record applied: a
        reader sees all of one record's changes or none."""
        self._write = write
        self._lock = threading.Lock()

    def get(self, user: str, mechanism: str) -> ScramCredential | None:
        raw = self._users().get(user, {}).get(mechanism)
        return None if raw is None else ScramCredential.from_wire(raw)

    def mechanisms(self, user: str) -> dict[str, ScramCredential]:
        return {m: ScramCredential.from_wire(r) for m, r in self._users().get(user, {}).items()}

    def users(self) -> list[str]:
        return sorted(self._users())

    def count(self) -> int:
        """How many users have credentials."""
        return len(self._users())

    def set(self, user: str, mechanism: str, credential: ScramCredential) -> None:
        self.alter_many([(user, mechanism, credential)])

    def add(self, user: str, mechanism: str, password: str) -> None:
        """Sets ``user``'s password for ``mechanism`` (kept salted, never clear)."""
        self.set(user, mechanism, new_credential(mechanism, password))

    def delete(self, user: str, mechanism: str) -> None:
        self.alter_many([(user, mechanism, None)])

    def alter_many(self, changes: Sequence[tuple[str, str, ScramCredential | None]]) -> None:
        """Sets (a credential) or deletes (None) credentials, of one user or
        several, as one catalog record, as Kafka's controller commits one
        AlterUserScramCredentials' records in one atomic batch: after a
        crash, and to any reader meanwhile, all of them are in force or
        none is. Raises (before anything is written) for a change Kafka
        refuses or a deletion of a credential that does not exist."""
        for user, mechanism, credential in changes:
            hash_of(mechanism)
            if credential is not None:
                check_iterations(credential.iterations)
            if not user:
                raise UnacceptableCredential("a user name may not be empty")
        with self._lock:
            for user, mechanism, credential in changes:
                if credential is None and mechanism not in self._users().get(user, {}):
                    raise UserNotFound(user, mechanism)
            if changes:
                self._write([(u, m, None if c is None else c.to_wire()) for u, m, c in changes])

    def remove_user(self, user: str) -> None:
        """Deletes every credential of ``user``, as one catalog record."""
        found = list(self._users().get(user, {}))
        if not found:
            raise UserNotFound(user)
        self.alter_many([(user, mechanism, None) for mechanism in found])
