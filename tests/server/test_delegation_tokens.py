"""Delegation tokens on the wire (KIP-48), over real sockets: each version
of CreateDelegationToken, RenewDelegationToken, ExpireDelegationToken and
DescribeDelegationToken with Kafka's answers and error codes, a SCRAM
login with a token (``tokenauth=true``) acting as the token's owner until
the token expires, the ACLs Kafka checks (CREATE_TOKENS and DESCRIBE_TOKENS
on users, DESCRIBE on tokens), tokens kept across a restart, and a store
failure answered as other admin writes answer it."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import hmac
import select
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kio.index import load_request_schema, load_response_schema

import engine
from engine.acl_bindings import AclBinding
from engine.authorization import AclOperation, AuthorizationConfig, ResourceType
from engine.clock import ManualClock
from engine.config import ConfigSource
from engine.delegation_tokens import DelegationTokenConfig
from engine.engine import Engine, EngineConfig
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server.config import ServerConfig
from engine.server.handlers.delegation_tokens import MANY_TOKENS
from engine.server.listeners import parse_listeners
from tests.server.catalog_faults import fail_next_catalog_write
from tests.server.certificates import Pem, Tls, issue_tls
from tests.server.in_process import InProcessServer
from tests.server.scram_client import scram_login, token_login
from tests.server.test_broker_configs import described
from tests.server.test_sasl import add_user, sasl_bootstrap, sasl_server
from tests.server.wire import Wire, build

SECRET = "the cluster's token secret"
PASSWORD = "correct horse battery staple"
USERS = ("alice", "bob", "carol", "admin")
TIMEOUT = 15.0
DAY_MS, WEEK_MS = 86_400_000, 604_800_000
CREATE, RENEW, EXPIRE, DESCRIBE = (
    ApiKey.CREATE_DELEGATION_TOKEN,
    ApiKey.RENEW_DELEGATION_TOKEN,
    ApiKey.EXPIRE_DELEGATION_TOKEN,
    ApiKey.DESCRIBE_DELEGATION_TOKEN,
)
LITERAL, ALLOW = 3, 3


@dataclass
class Node:
    engine: Engine
    server: InProcessServer
    clock: ManualClock

    def address(self, listener: str) -> str:
        return f"127.0.0.1:{self.server.server.ports[listener]}"

    @contextmanager
    def connect(self, user: str | None, mechanism: str = "SCRAM-SHA-512") -> Iterator[Wire]:
        """A connection on SASL_PLAINTEXT logged in as ``user``, or on
        PLAINTEXT for None."""
        with Wire(self.address("PLAINTEXT" if user is None else "SASL_PLAINTEXT")) as wire:
            if user is not None:
                _, final = scram_login(wire, mechanism, user, PASSWORD)
                assert final.error_code == KafkaCode.NONE, final
            yield wire


@contextmanager
def node(
    data_dir: Path,
    secret: str | None = SECRET,
    acls: bool = False,
    clock: ManualClock | None = None,
) -> Iterator[Node]:
    clock = clock or ManualClock(time_ms=int(time.time() * 1000))
    config = EngineConfig(
        delegation_tokens=DelegationTokenConfig(secret),
        authorization=AuthorizationConfig(super_users=("User:admin",)) if acls else None,
    )
    with engine.open(data_dir, config=config, clock=clock) as opened:
        for user in USERS:
            if opened.credentials.get(user, "SCRAM-SHA-512") is None:
                opened.credentials.add(user, "SCRAM-SHA-512", PASSWORD)
                opened.credentials.add(user, "SCRAM-SHA-256", PASSWORD)
        server_config = ServerConfig(
            listeners=parse_listeners("SASL_PLAINTEXT://127.0.0.1:0,PLAINTEXT://127.0.0.1:0")
        )
        server = InProcessServer(opened, config=server_config)
        try:
            yield Node(opened, server, clock)
        finally:
            server.stop()


@pytest.fixture
def tokens_node(tmp_path: Path) -> Iterator[Node]:
    with node(tmp_path / "node") as running:
        yield running


@pytest.fixture
def acl_node(tmp_path: Path) -> Iterator[Node]:
    with node(tmp_path / "node", acls=True) as running:
        yield running


def ms(value: int) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=value)


def uvarint(payload: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = payload[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, offset
        shift += 7


def timestamped_answer(wire: Wire, request: Any) -> Any:
    """The answer to a Create, Renew or Expire request, read field by field
    from the frame: kio refuses the -1 timestamps of an error answer (Kafka's
    ErrorTimestamp), which the server sends as Kafka does. Timestamps come
    back as ints (ms)."""
    correlation_id = wire.send(request)
    payload = wire.read_frame()
    schema: Any = load_response_schema(request.__api_key__, request.__version__)
    flexible = bool(schema.__flexible__)
    assert struct.unpack_from(">i", payload)[0] == correlation_id
    offset = 4
    if flexible:
        offset = uvarint(payload, offset)[1]  # the header's tagged fields
    values: dict[str, Any] = {}
    for field in dataclasses.fields(schema):
        kind = field.metadata["kafka_type"]
        if kind == "error_code":
            values[field.name] = struct.unpack_from(">h", payload, offset)[0]
            offset += 2
        elif kind in ("int64", "datetime_i64"):
            values[field.name] = struct.unpack_from(">q", payload, offset)[0]
            offset += 8
        elif kind == "timedelta_i32":
            values[field.name] = struct.unpack_from(">i", payload, offset)[0]
            offset += 4
        elif kind in ("string", "bytes"):
            if flexible:
                size, offset = uvarint(payload, offset)
                size -= 1
            elif kind == "string":
                size = struct.unpack_from(">h", payload, offset)[0]
                offset += 2
            else:
                size = struct.unpack_from(">i", payload, offset)[0]
                offset += 4
            raw = payload[offset : offset + size]
            offset += size
            values[field.name] = raw.decode() if kind == "string" else raw
        else:
            raise AssertionError(f"no reader for {kind}")
    if flexible:
        offset = uvarint(payload, offset)[1]
    assert offset == len(payload)
    return SimpleNamespace(**values)


def create(
    wire: Wire,
    version: int = 3,
    renewers: tuple[str, ...] = (),
    owner: str | None = None,
    max_lifetime_ms: int = -1,
) -> Any:
    fields: dict[str, Any] = {
        "renewers": [
            {"principal_type": r.split(":")[0], "principal_name": r.split(":")[1]} for r in renewers
        ],
        "max_lifetime": ms(max_lifetime_ms),
    }
    if version >= 3:
        fields["owner_principal_type"] = owner.split(":")[0] if owner else None
        fields["owner_principal_name"] = owner.split(":")[1] if owner else None
    return timestamped_answer(wire, build(load_request_schema(CREATE, version), **fields))


def renew(wire: Wire, digest: bytes, period_ms: int = -1, version: int = 2) -> Any:
    schema = load_request_schema(RENEW, version)
    return timestamped_answer(wire, build(schema, hmac=digest, renew_period=ms(period_ms)))


def expire(wire: Wire, digest: bytes, period_ms: int, version: int = 2) -> Any:
    schema = load_request_schema(EXPIRE, version)
    return timestamped_answer(wire, build(schema, hmac=digest, expiry_time_period=ms(period_ms)))


def describe(wire: Wire, owners: list[str] | None = None, version: int = 3) -> Any:
    asked = (
        None
        if owners is None
        else [
            {"principal_type": o.split(":")[0], "principal_name": o.split(":")[1]} for o in owners
        ]
    )
    return wire.request(build(load_request_schema(DESCRIBE, version), owners=asked))


def described_ids(answer: Any) -> set[str]:
    assert answer.error_code == KafkaCode.NONE, answer
    return {token.token_id for token in answer.tokens}


def described_off_the_loop(node: Node) -> Any:
    """alice's DescribeDelegationToken v3 of every owner, sent while the
    admin thread is busy: asserts it is not answered on the event loop,
    which serves another connection meanwhile; returns the answer the
    admin thread gives once it is free."""
    request = build(load_request_schema(DESCRIBE, 3), owners=None)
    release = threading.Event()
    busy = node.server.server.state.admin.submit(release.wait, 30)
    try:
        with node.connect("alice") as wire:
            wire.send(request)
            readable, _, _ = select.select([wire.sock], [], [], 0.5)
            assert not readable, "answered on the event loop"
            with node.connect(None) as other:  # the loop serves everyone else
                versions = other.request(build(load_request_schema(ApiKey.API_VERSIONS, 3)))
                assert versions.error_code == KafkaCode.NONE
            release.set()
            _, answer = wire.receive(load_response_schema(DESCRIBE, 3))
    finally:
        release.set()
        busy.result(30)
    return answer


def test_api_versions_lists_the_token_apis_at_kafka_4_0s_versions(tokens_node: Node) -> None:
    with tokens_node.connect(None) as wire:
        answer = wire.request(build(load_request_schema(ApiKey.API_VERSIONS, 3)))
    listed = {k.api_key: (k.min_version, k.max_version) for k in answer.api_keys}
    assert listed[CREATE] == (1, 3)
    assert listed[RENEW] == (1, 2)
    assert listed[EXPIRE] == (1, 2)
    assert listed[DESCRIBE] == (1, 3)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_create_at_each_version_answers_the_token_and_its_hmac(
    tokens_node: Node, version: int
) -> None:
    now = tokens_node.clock.time_ms()
    with tokens_node.connect("alice") as wire:
        answer = create(wire, version, renewers=("User:bob",))
    assert answer.error_code == KafkaCode.NONE
    assert (answer.principal_type, answer.principal_name) == ("User", "alice")
    if version >= 3:
        requester = (answer.token_requester_principal_type, answer.token_requester_principal_name)
        assert requester == ("User", "alice")
    assert int(answer.issue_timestamp) == now
    assert int(answer.expiry_timestamp) == now + DAY_MS
    assert int(answer.max_timestamp) == now + WEEK_MS
    expected = hmac.digest(SECRET.encode(), answer.token_id.encode(), hashlib.sha512)
    assert bytes(answer.hmac) == expected
    [info] = tokens_node.engine.delegation_tokens.tokens()
    assert (info.token_id, info.renewers) == (answer.token_id, ("User:bob",))


@pytest.mark.parametrize("version", [1, 2, 3])
def test_describe_at_each_version_shows_the_tokens_with_their_hmacs(
    tokens_node: Node, version: int
) -> None:
    with tokens_node.connect("alice") as wire:
        made = create(wire, renewers=("User:bob",))
        answer = describe(wire, version=version)
        assert answer.error_code == KafkaCode.NONE
        [token] = answer.tokens
        assert token.token_id == made.token_id
        assert bytes(token.hmac) == bytes(made.hmac)
        assert (token.principal_type, token.principal_name) == ("User", "alice")
        assert [(r.principal_type, r.principal_name) for r in token.renewers] == [("User", "bob")]
        assert token.expiry_timestamp == int(made.expiry_timestamp)
        assert token.max_timestamp == int(made.max_timestamp)
        if version >= 3:
            assert token.token_requester_principal_name == "alice"
        assert describe(wire, owners=[], version=version).tokens == ()  # an empty list: none
        assert described_ids(describe(wire, owners=["User:alice"], version=version)) == {
            made.token_id
        }
        assert described_ids(describe(wire, owners=["User:carol"], version=version)) == set()


@pytest.mark.parametrize("version", [1, 2])
def test_renew_and_expire_at_each_version(tokens_node: Node, version: int) -> None:
    clock = tokens_node.clock
    with tokens_node.connect("alice") as wire:
        made = create(wire, renewers=("User:bob",))
        digest = bytes(made.hmac)
    with tokens_node.connect("bob") as wire:
        renewed = renew(wire, digest, 60_000, version)
        assert renewed.error_code == KafkaCode.NONE
        assert int(renewed.expiry_timestamp) == clock.time_ms() + 60_000
        moved = expire(wire, digest, 1_000, version)
        assert moved.error_code == KafkaCode.NONE
        assert int(moved.expiry_timestamp) == clock.time_ms() + 1_000
        gone = expire(wire, digest, -1, version)
        assert gone.error_code == KafkaCode.NONE
        assert int(gone.expiry_timestamp) == -1
        assert renew(wire, digest, -1, version).error_code == KafkaCode.DELEGATION_TOKEN_NOT_FOUND
    assert tokens_node.engine.delegation_tokens.tokens() == []


def test_renewal_is_capped_by_the_max_timestamp(tokens_node: Node) -> None:
    with tokens_node.connect("alice") as wire:
        made = create(wire, max_lifetime_ms=3_600_000)
        assert int(made.expiry_timestamp) == int(made.max_timestamp)
        renewed = renew(wire, bytes(made.hmac))  # the default: 24 h asked
        assert int(renewed.expiry_timestamp) == int(made.max_timestamp)


def test_owner_mismatch_not_found_and_expired(tokens_node: Node) -> None:
    with tokens_node.connect("alice") as wire:
        digest = bytes(create(wire, max_lifetime_ms=60_000).hmac)
        assert renew(wire, bytes(64)).error_code == KafkaCode.DELEGATION_TOKEN_NOT_FOUND
        assert expire(wire, bytes(64), -1).error_code == KafkaCode.DELEGATION_TOKEN_NOT_FOUND
    with tokens_node.connect("carol") as wire:
        mismatch = renew(wire, digest)
        assert mismatch.error_code == KafkaCode.DELEGATION_TOKEN_OWNER_MISMATCH
        assert int(mismatch.expiry_timestamp) == -1
        refused = expire(wire, digest, -1).error_code
        assert refused == KafkaCode.DELEGATION_TOKEN_OWNER_MISMATCH
    tokens_node.clock.advance(61)
    with tokens_node.connect("alice") as wire:
        assert renew(wire, digest).error_code == KafkaCode.DELEGATION_TOKEN_EXPIRED
        assert expire(wire, digest, 0).error_code == KafkaCode.DELEGATION_TOKEN_EXPIRED
        assert described_ids(describe(wire)) == set()


def test_a_renewer_that_is_not_a_user_is_invalid_principal_type(tokens_node: Node) -> None:
    with tokens_node.connect("alice") as wire:
        answer = create(wire, renewers=("User:bob", "Group:ops"))
    assert answer.error_code == KafkaCode.INVALID_PRINCIPAL_TYPE
    assert (answer.token_id, bytes(answer.hmac)) == ("", b"")
    assert int(answer.issue_timestamp) == -1
    assert tokens_node.engine.delegation_tokens.tokens() == []


def every_api_answers(wire: Wire) -> dict[tuple[ApiKey, int], int]:
    """Each API's error code at each version (for Create, Renew and Expire,
    read with its -1 timestamps and empty fields, as Kafka answers an error)."""
    answers = {}
    for version in (1, 2, 3):
        made = create(wire, version)
        assert (made.token_id, made.hmac, made.max_timestamp) == ("", b"", -1)
        answers[CREATE, version] = made.error_code
        answers[DESCRIBE, version] = describe(wire, version=version).error_code
    for version in (1, 2):
        renewed = renew(wire, bytes(64), version=version)
        expired = expire(wire, bytes(64), -1, version=version)
        assert renewed.expiry_timestamp == expired.expiry_timestamp == -1
        answers[RENEW, version] = renewed.error_code
        answers[EXPIRE, version] = expired.error_code
    return answers


def test_without_a_secret_every_api_is_auth_disabled(tmp_path: Path) -> None:
    with node(tmp_path / "node", secret=None) as running, running.connect("alice") as wire:
        assert set(every_api_answers(wire).values()) == {KafkaCode.DELEGATION_TOKEN_AUTH_DISABLED}
        assert running.engine.catalog.state.delegation_tokens == {}


def test_a_plaintext_connection_may_not_request_tokens(tokens_node: Node) -> None:
    with tokens_node.connect(None) as wire:
        answers = every_api_answers(wire)
        assert set(answers.values()) == {KafkaCode.DELEGATION_TOKEN_REQUEST_NOT_ALLOWED}
        assert create(wire).principal_name == "ANONYMOUS"  # as Kafka: owner and requester
    assert tokens_node.engine.delegation_tokens.tokens() == []


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_a_token_logs_in_with_scram_as_its_owner(tokens_node: Node, mechanism: str) -> None:
    with tokens_node.connect("alice") as wire:
        made = create(wire, owner="User:bob")  # no ACLs: anyone may
    assert (made.principal_name, made.token_requester_principal_name) == ("bob", "alice")
    with Wire(tokens_node.address("SASL_PLAINTEXT"), timeout=TIMEOUT) as wire:
        first, final = token_login(wire, mechanism, made.token_id, bytes(made.hmac))
        assert b"i=4096" in bytes(first.auth_bytes)
        assert final.error_code == KafkaCode.NONE, final
        # The session ends with the token (KIP-368), as Kafka answers it.
        lifetime = final.session_lifetime.total_seconds() * 1000
        expiry = int(made.expiry_timestamp)
        assert expiry - tokens_node.clock.time_ms() - 1000 <= lifetime <= DAY_MS
        # The session is the owner's, and one made with a token may not
        # request tokens: the refusal names the session's principal.
        refused = create(wire)
        assert refused.error_code == KafkaCode.DELEGATION_TOKEN_REQUEST_NOT_ALLOWED
        assert (refused.principal_name, refused.token_requester_principal_name) == ("bob", "bob")
        answers = every_api_answers(wire)
        assert set(answers.values()) == {KafkaCode.DELEGATION_TOKEN_REQUEST_NOT_ALLOWED}
        metadata = build(load_request_schema(ApiKey.METADATA, 4), topics=None)
        assert wire.request(metadata).brokers


def test_a_token_login_with_a_wrong_hmac_an_unknown_id_or_no_extension_is_refused(
    tokens_node: Node,
) -> None:
    with tokens_node.connect("alice") as wire:
        made = create(wire)
    digest = bytes(made.hmac)
    attempts = {
        "wrong hmac": (made.token_id, bytes(64), True),
        "unknown id": ("no-such-token", digest, True),
        "a user's name as the id": ("alice", digest, True),
        "no tokenauth": (made.token_id, digest, False),
    }
    for what, (token_id, password, with_extension) in attempts.items():
        with Wire(tokens_node.address("SASL_PLAINTEXT"), timeout=TIMEOUT) as wire:
            if with_extension:
                first, final = token_login(wire, "SCRAM-SHA-512", token_id, password)
            else:
                secret = base64.b64encode(password).decode()
                first, final = scram_login(wire, "SCRAM-SHA-512", token_id, secret)
            answer = final if final is not None else first
            assert answer.error_code == KafkaCode.SASL_AUTHENTICATION_FAILED, what
            assert wire.closed_by_server(TIMEOUT), what


def test_an_expired_or_expired_at_once_token_no_longer_logs_in(tokens_node: Node) -> None:
    with tokens_node.connect("alice") as wire:
        short = create(wire, max_lifetime_ms=60_000)
        removed = create(wire)
        assert expire(wire, bytes(removed.hmac), -1).error_code == KafkaCode.NONE
    tokens_node.clock.advance(61)
    for made in (short, removed):
        with Wire(tokens_node.address("SASL_PLAINTEXT"), timeout=TIMEOUT) as wire:
            first, _ = token_login(wire, "SCRAM-SHA-512", made.token_id, bytes(made.hmac))
            assert first.error_code == KafkaCode.SASL_AUTHENTICATION_FAILED


def test_a_token_session_ends_when_the_token_expires(tokens_node: Node) -> None:
    # The session runs on real time from the login, and the test waits it
    # out: long enough that a loaded machine still sends the request within
    # it after the login (milliseconds at a load average of 15), no longer.
    with tokens_node.connect("alice") as wire:
        made = create(wire, max_lifetime_ms=4_000)
    metadata = build(load_request_schema(ApiKey.METADATA, 4), topics=None)
    with Wire(tokens_node.address("SASL_PLAINTEXT"), timeout=TIMEOUT) as wire:
        _, final = token_login(wire, "SCRAM-SHA-512", made.token_id, bytes(made.hmac))
        assert final.error_code == KafkaCode.NONE
        assert final.session_lifetime == datetime.timedelta(milliseconds=4_000)  # the clock stood
        assert wire.request(metadata).brokers
        time.sleep(final.session_lifetime.total_seconds() + 0.3)
        wire.send(metadata)  # past the session: closed, as Kafka closes it
        assert wire.closed_by_server(TIMEOUT)


def grant(opened: Engine, principal: str, operation: AclOperation, kind: int, name: str) -> None:
    opened.catalog.add_acls(
        [AclBinding(kind, name, LITERAL, principal, "*", int(operation), ALLOW)]
    )


def test_creating_for_another_owner_needs_create_tokens_on_that_user(acl_node: Node) -> None:
    with acl_node.connect("alice") as wire:
        refused = create(wire, owner="User:bob")
        assert refused.error_code == KafkaCode.DELEGATION_TOKEN_AUTHORIZATION_FAILED
        assert (refused.principal_name, refused.token_requester_principal_name) == ("bob", "alice")
        assert create(wire).error_code == KafkaCode.NONE  # one's own: no ACL needed
        grant(
            acl_node.engine, "User:alice", AclOperation.CREATE_TOKENS, ResourceType.USER, "User:bob"
        )
        made = create(wire, owner="User:bob")
        assert made.error_code == KafkaCode.NONE
        assert (made.principal_name, made.token_requester_principal_name) == ("bob", "alice")
        refused = create(wire, owner="User:carol")  # another user's right is not this one
        assert refused.error_code == KafkaCode.DELEGATION_TOKEN_AUTHORIZATION_FAILED
    with acl_node.connect("admin") as wire:  # a super user may
        assert create(wire, owner="User:carol").error_code == KafkaCode.NONE


def test_describing_others_tokens_needs_describe_tokens_or_describe_on_the_token(
    acl_node: Node,
) -> None:
    with acl_node.connect("alice") as wire:
        alices = create(wire).token_id
    with acl_node.connect("bob") as wire:
        bobs = create(wire, renewers=("User:alice",)).token_id
        bobs_other = create(wire).token_id
    with acl_node.connect("carol") as wire:
        assert described_ids(describe(wire)) == set()
        grant(
            acl_node.engine, "User:carol", AclOperation.DESCRIBE_TOKENS, ResourceType.USER,
            "User:bob",
        )  # fmt: skip
        assert described_ids(describe(wire)) == {bobs, bobs_other}
        grant(
            acl_node.engine, "User:carol", AclOperation.DESCRIBE, ResourceType.DELEGATION_TOKEN,
            alices,
        )  # fmt: skip
        assert described_ids(describe(wire)) == {alices, bobs, bobs_other}
        assert described_ids(describe(wire, owners=["User:alice"])) == {alices, bobs}
    with acl_node.connect("alice") as wire:  # her own, and the one she may renew
        assert described_ids(describe(wire)) == {alices, bobs}


def test_tokens_survive_a_restart_and_log_in_after_it(tmp_path: Path) -> None:
    clock = ManualClock(time_ms=int(time.time() * 1000))
    with node(tmp_path / "node", clock=clock) as first, first.connect("alice") as wire:
        made = create(wire, renewers=("User:bob",))
        renewed = renew(wire, bytes(made.hmac), 3_600_000)
    with node(tmp_path / "node", clock=clock) as again:
        with Wire(again.address("SASL_PLAINTEXT"), timeout=TIMEOUT) as wire:
            _, final = token_login(wire, "SCRAM-SHA-256", made.token_id, bytes(made.hmac))
            assert final.error_code == KafkaCode.NONE
        with again.connect("bob") as wire:
            [token] = describe(wire).tokens
            assert token.token_id == made.token_id
            assert bytes(token.hmac) == bytes(made.hmac)
            assert token.expiry_timestamp == int(renewed.expiry_timestamp)


def test_a_store_failure_is_a_storage_error_and_the_server_keeps_serving(
    tokens_node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tokens_node.connect("alice") as wire:
        fail_next_catalog_write(monkeypatch, tokens_node.engine.catalog)
        failed = create(wire)
        assert failed.error_code == KafkaCode.KAFKA_STORAGE_ERROR
        assert (failed.token_id, bytes(failed.hmac)) == ("", b"")
        assert tokens_node.engine.delegation_tokens.tokens() == []
        made = create(wire)
        assert made.error_code == KafkaCode.NONE
        assert described_ids(describe(wire)) == {made.token_id}


class TlsWire(Wire):
    """A TLS connection to the server, with a client certificate or none."""

    def __init__(self, address: str, tls: Tls, client: Pem | None) -> None:
        super().__init__(address, TIMEOUT)
        context = ssl.create_default_context(cafile=str(tls.authority.ca))
        if client is not None:
            context.load_cert_chain(str(client.certificate), str(client.key))
        self.sock = context.wrap_socket(self.sock, server_hostname="localhost")


def test_ssl_without_a_client_certificate_may_not_request_tokens_with_one_may(
    tmp_path: Path,
) -> None:
    """Kafka's allowTokenRequests: one-way SSL (the principal ANONYMOUS)
    may not; a client known by its certificate may."""
    tls = issue_tls(tmp_path)
    config = replace(tls.mutual_tls(), ssl_client_auth="requested")
    settings = EngineConfig(delegation_tokens=DelegationTokenConfig(SECRET))
    with engine.open(tmp_path / "node", config=settings) as opened:
        server = InProcessServer(opened, config=config)
        try:
            address = f"127.0.0.1:{server.server.ports['SSL']}"
            with TlsWire(address, tls, None) as wire:
                answers = every_api_answers(wire)
                assert set(answers.values()) == {KafkaCode.DELEGATION_TOKEN_REQUEST_NOT_ALLOWED}
            with TlsWire(address, tls, tls.alice) as wire:
                made = create(wire)
                assert made.error_code == KafkaCode.NONE
                assert made.principal_name.startswith("CN=alice")
        finally:
            server.stop()


@pytest.mark.slow  # a server process, as tests/server/test_sasl.py runs it
def test_tidelog_serve_takes_the_secret_from_its_file(tmp_path: Path) -> None:
    """``tidelog serve --config``: the secret read from
    delegation.token.secret.key.file, a token made and used over the
    server's SASL listener, and a secret file that cannot be read refusing
    the start (exit 2) rather than serving without tokens."""
    secret = tmp_path / "token-secret"
    secret.write_text(SECRET + "\n")
    process = sasl_server(tmp_path)
    add_user(process.data_dir, "alice", PASSWORD, "SCRAM-SHA-512")
    settings = tmp_path / "tidelog.toml"
    settings.write_text(
        f'[server]\n"delegation.token.secret.key.file" = "{secret}"\n'
        '"delegation.token.expiry.time.ms" = 3600000\n'
    )
    process.args += ["--config", str(settings)]
    process.start()
    try:
        with Wire(sasl_bootstrap(process), timeout=TIMEOUT) as wire:
            _, final = scram_login(wire, "SCRAM-SHA-512", "alice", PASSWORD)
            assert final.error_code == KafkaCode.NONE
            made = create(wire)
            assert made.error_code == KafkaCode.NONE
            assert made.expiry_timestamp - made.issue_timestamp == 3_600_000
            expected = hmac.digest(SECRET.encode(), made.token_id.encode(), hashlib.sha512)
            assert bytes(made.hmac) == expected
        with Wire(sasl_bootstrap(process), timeout=TIMEOUT) as wire:
            _, final = token_login(wire, "SCRAM-SHA-256", made.token_id, bytes(made.hmac))
            assert final.error_code == KafkaCode.NONE
    finally:
        assert process.stop() == 0, process.log()
    secret.unlink()
    refused = subprocess.run(
        [sys.executable, "-m", "engine", "serve", "--data-dir", str(process.data_dir),
         "--listen", "127.0.0.1:0", "--config", str(settings)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "token-secret" in refused.stderr
    assert SECRET not in refused.stderr


def test_describe_configs_lists_the_token_settings_as_kafka_does(tmp_path: Path) -> None:
    """The broker resource lists the delegation.token.* settings, read-only,
    a set one as STATIC_BROKER_CONFIG and the others as DEFAULT_CONFIG."""
    settings = EngineConfig(
        delegation_tokens=DelegationTokenConfig(SECRET, expiry_time_ms=3_600_000)
    )
    with engine.open(tmp_path / "node", config=settings) as opened:
        server = InProcessServer(opened)
        try:
            configs = described(server.bootstrap, 4, "1")
        finally:
            server.stop()
    expiry = configs["delegation.token.expiry.time.ms"]
    assert (expiry.value, expiry.config_source, expiry.read_only) == (
        "3600000",
        ConfigSource.STATIC_BROKER,
        True,
    )
    lifetime = configs["delegation.token.max.lifetime.ms"]
    assert (lifetime.value, lifetime.config_source) == ("604800000", ConfigSource.DEFAULT)
    interval = configs["delegation.token.expiry.check.interval.ms"]
    assert (interval.value, interval.config_source) == ("3600000", ConfigSource.DEFAULT)
    assert not any(SECRET in str(c.value) for c in configs.values())


def test_a_describe_of_many_tokens_is_answered_off_the_event_loop(tokens_node: Node) -> None:
    """Past MANY_TOKENS, each token read from its catalog form and
    authorized: on the admin thread, while the loop serves the others."""
    opened = tokens_node.engine
    made, _ = opened.delegation_tokens.create("User:alice", "User:alice", [])
    [raw] = opened.catalog.state.delegation_tokens.values()
    copies = [[f"{made.token_id}-{i}", *raw[1:]] for i in range(MANY_TOKENS)]
    opened.catalog.append(["delegation_token", copies])  # one record: quick to write
    answer = described_off_the_loop(tokens_node)
    assert answer.error_code == KafkaCode.NONE
    assert len(answer.tokens) == MANY_TOKENS + 1
