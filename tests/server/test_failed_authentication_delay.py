"""connection.failed.authentication.delay.ms: a failed SASL exchange is
answered at once and its connection closed that long after (or when the
client closes first), so that a client reads its SASL_AUTHENTICATION_FAILED
before the connection ends. Clients that drop what arrived with the close
(kafka-python 3.0 does) would otherwise see only a lost connection."""

from __future__ import annotations

from pathlib import Path

import pytest
from kio.index import load_request_schema

import engine
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server.config import ServerConfig
from engine.server.listeners import parse_listeners
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire, build

TIMEOUT = 30.0


def refused(wire: Wire) -> int:
    handshake = build(load_request_schema(ApiKey.SASL_HANDSHAKE, 1), mechanism="PLAIN")
    assert wire.request(handshake).error_code == KafkaCode.NONE
    token = build(load_request_schema(ApiKey.SASL_AUTHENTICATE, 2), auth_bytes=b"\0alice\0wrong")
    code: int = wire.request(token).error_code
    return code


@pytest.mark.parametrize("delay_ms", [0, 100, 3_600_000])
def test_a_failed_exchange_is_answered_then_closed_after_the_delay(
    tmp_path: Path, delay_ms: int
) -> None:
    config = ServerConfig(
        listeners=parse_listeners("SASL_PLAINTEXT://127.0.0.1:0"),
        connection_failed_authentication_delay_ms=delay_ms,
    )
    with engine.open(tmp_path / "node") as opened:
        opened.credentials.add("alice", "PLAIN", "right")
        server = InProcessServer(opened, config=config)
        try:
            with Wire(server.bootstrap) as wire:
                assert refused(wire) == KafkaCode.SASL_AUTHENTICATION_FAILED
                if delay_ms < TIMEOUT * 1000:
                    assert wire.closed_by_server(TIMEOUT)
                else:  # still open a while after its answer: closed by the delay only
                    assert not wire.closed_by_server(0.5)
            # The client's own close ends it before the delay; the server serves on.
            with Wire(server.bootstrap) as wire:
                assert refused(wire) == KafkaCode.SASL_AUTHENTICATION_FAILED
        finally:
            server.stop()


def test_the_delay_is_a_whole_number_of_milliseconds() -> None:
    with pytest.raises(ValueError, match=r"connection[._]failed[._]authentication[._]delay[._]ms"):
        ServerConfig(connection_failed_authentication_delay_ms=-1)
