"""Re-authentication (KIP-368) with connections.max.reauth.ms: the session
lifetime SaslAuthenticate v1+ answers, re-authentication on a live
connection (by hand and by librdkafka), and a connection whose session
expired refused its next request."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from kio.index import load_request_schema

import engine
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server.authentication import SASL_MAX_RECEIVE_BYTES
from engine.server.config import ServerConfig
from engine.server.listeners import parse_listeners
from tests.server.conftest import quiet_librdkafka
from tests.server.in_process import InProcessServer
from tests.server.server_closes import server_closes
from tests.server.wire import Wire, build, encode_request

LIFETIME_MS = 1500
TIMEOUT = 30.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[InProcessServer]:
    config = ServerConfig(
        listeners=parse_listeners("SASL_PLAINTEXT://127.0.0.1:0"),
        connections_max_reauth_ms=LIFETIME_MS,
    )
    with engine.open(tmp_path / "node") as opened:
        opened.credentials.add("alice", "PLAIN", "pw-a")
        opened.credentials.add("bob", "PLAIN", "pw-b")
        opened.create_topic("reauth", 1)
        wire = InProcessServer(opened, config=config)
        try:
            yield wire
        finally:
            wire.stop()


def login(wire: Wire, user: str, password: str) -> Any:
    handshake = build(load_request_schema(ApiKey.SASL_HANDSHAKE, 1), mechanism="PLAIN")
    assert wire.request(handshake).error_code == KafkaCode.NONE
    token = b"\0" + user.encode() + b"\0" + password.encode()
    return wire.request(build(load_request_schema(ApiKey.SASL_AUTHENTICATE, 1), auth_bytes=token))


METADATA = build(load_request_schema(ApiKey.METADATA, 4), topics=None)


def test_the_session_lifetime_is_answered_and_re_authentication_extends_it(
    server: InProcessServer,
) -> None:
    with Wire(server.bootstrap) as wire:
        first = login(wire, "alice", "pw-a")
        assert first.error_code == KafkaCode.NONE
        assert first.session_lifetime.total_seconds() * 1000 == LIFETIME_MS
        assert wire.request(METADATA).brokers
        again = login(wire, "alice", "pw-a")  # re-authentication on the live connection
        assert (again.error_code, again.session_lifetime.total_seconds() * 1000) == (
            KafkaCode.NONE,
            LIFETIME_MS,
        )
        assert wire.request(METADATA).brokers


def test_re_authentication_may_not_change_the_principal(server: InProcessServer) -> None:
    with Wire(server.bootstrap) as wire:
        assert login(wire, "alice", "pw-a").error_code == KafkaCode.NONE
        other = login(wire, "bob", "pw-b")
        assert other.error_code == KafkaCode.SASL_AUTHENTICATION_FAILED
        assert other.error_message == "Cannot change principals during re-authentication"
        assert wire.closed_by_server(TIMEOUT)


def test_an_expired_session_closes_on_its_next_request(server: InProcessServer) -> None:
    with Wire(server.bootstrap) as wire:
        assert login(wire, "alice", "pw-a").error_code == KafkaCode.NONE
        time.sleep(LIFETIME_MS / 1000 + 0.3)  # past the session's end
        wire.send(METADATA)
        assert wire.closed_by_server(TIMEOUT)


def test_librdkafka_re_authenticates_on_its_connection(server: InProcessServer) -> None:
    reports: list[Any] = []
    producer = Producer(
        {
            "bootstrap.servers": server.bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN",
            "sasl.username": "alice",
            "sasl.password": "pw-a",
            **quiet_librdkafka(),
        }
    )
    producer.produce("reauth", b"first", on_delivery=lambda e, m: reports.append(e))
    assert producer.flush(TIMEOUT) == 0
    before = session_ends(server)
    with server_closes() as closes:
        time.sleep(3 * LIFETIME_MS / 1000)  # two sessions' worth: it must re-authenticate
        producer.produce("reauth", b"second", on_delivery=lambda e, m: reports.append(e))
        assert producer.flush(TIMEOUT) == 0
    assert reports == [None, None]
    # Re-authenticated, not reconnected: the server closes an expired
    # session's connection at its next request. (Not the count of
    # connections: librdkafka may open one of its own accord.)
    assert closes.closes == []
    after = session_ends(server)
    kept = [peer for peer in before if peer in after]  # a client may close one of its own
    assert kept and all(after[peer] > before[peer] for peer in kept), "no session was renewed"


def session_ends(server: InProcessServer) -> dict[str, float]:
    """When each authenticated connection's session ends, by peer."""
    ends = {}
    for connection in list(server.server.connections):
        authentication = connection.authentication
        if authentication is not None and authentication.expires is not None:
            ends[connection.peer] = authentication.expires
    return ends


def test_a_large_request_before_authentication_closes_the_connection(
    server: InProcessServer,
) -> None:
    """Kafka's sasl.server.max.receive.size: 512 KiB until authenticated,
    max_request_bytes after."""
    with Wire(server.bootstrap) as wire:
        wire.send_raw((SASL_MAX_RECEIVE_BYTES + 1).to_bytes(4, "big") + b"\0" * 64)
        assert wire.closed_by_server(TIMEOUT)
    names = [{"name": f"absent-topic-{i:020d}"} for i in range(SASL_MAX_RECEIVE_BYTES // 30)]
    large = build(
        load_request_schema(ApiKey.METADATA, 4), topics=names, allow_auto_topic_creation=False
    )
    with Wire(server.bootstrap) as wire:
        assert login(wire, "alice", "pw-a").error_code == KafkaCode.NONE
        assert len(encode_request(large, 1)) > SASL_MAX_RECEIVE_BYTES
        assert len(wire.request(large).topics) == len(names)
