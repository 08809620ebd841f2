"""Bad input at the doors of the SASL and TLS listeners, over real sockets:
a wrong password, a replayed SCRAM client-final message, a SASL exchange
cut half-way, a Produce before authentication, a TLS handshake that never
finishes and garbage instead of a ClientHello. Each gets Kafka's answer (or
none, where Kafka sends none) and a closed connection, is logged with the
peer's address and never with a secret, while a canary client on another
connection keeps being served throughout."""

from __future__ import annotations

import base64
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kio.index import load_request_schema

import engine
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server.config import ServerConfig
from engine.server.listeners import parse_listeners
from tests.server.certificates import Authority
from tests.server.in_process import InProcessServer
from tests.server.scram_client import client_final
from tests.server.test_sasl import add_user, sasl_bootstrap, sasl_server
from tests.server.wire import Wire, build

PASSWORD = "correct horse battery staple"
IDLE_MS = 1500
PARTIAL_MS = 1000
TIMEOUT = 15.0
METADATA = build(load_request_schema(ApiKey.METADATA, 4), topics=None)


@dataclass
class Doors:
    server: InProcessServer
    sasl: str
    ssl: str


@pytest.fixture
def doors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[Doors]:
    caplog.set_level(logging.DEBUG, logger="tidelog")
    authority = Authority(tmp_path)
    pem = authority.issue("server", common_name="localhost", unit="Servers", server=True)
    keystore = authority.keystore(pem, b"keystore secret")
    key_password = tmp_path / "key-password"
    key_password.write_text("keystore secret\n")
    config = ServerConfig(
        listeners=parse_listeners("SASL_PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0"),
        ssl_keystore_location=str(keystore),
        ssl_key_password_file=str(key_password),
        connections_max_idle_ms=IDLE_MS,
        connections_partial_request_timeout_ms=PARTIAL_MS,
    )
    with engine.open(tmp_path / "node") as opened:
        opened.credentials.add("alice", "SCRAM-SHA-512", PASSWORD)
        opened.credentials.add("alice", "PLAIN", PASSWORD)
        opened.create_topic("abuse", 1)
        server = InProcessServer(opened, config=config)
        try:
            ports = server.server.ports
            yield Doors(server, f"127.0.0.1:{ports['SASL_PLAINTEXT']}", f"127.0.0.1:{ports['SSL']}")
        finally:
            server.stop()


class Canary:
    """A client authenticated on its own connection, asking for metadata
    every 100 ms on a thread until stopped: the server must answer all."""

    def __init__(self, doors: Doors) -> None:
        self.wire = Wire(doors.sasl, timeout=TIMEOUT)
        assert handshake(self.wire, "PLAIN").error_code == KafkaCode.NONE
        token = b"\0alice\0" + PASSWORD.encode()
        assert authenticate(self.wire, token).error_code == KafkaCode.NONE
        self.answers = 0
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="canary")
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                assert self.wire.request(METADATA).brokers
                self.answers += 1
                if self._stop.wait(0.1):
                    return
        except BaseException as error:  # reported by stop()
            self.failure = error

    def __enter__(self) -> Canary:
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)
        self.wire.close()

    def check(self) -> None:
        """The canary was answered, every time, while the abuse ran, and is
        answered again after it."""
        seen = self.answers
        deadline = time.monotonic() + TIMEOUT
        while self.answers <= seen and self.failure is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.failure is None, self.failure
        assert self.answers > seen


def handshake(wire: Wire, mechanism: str) -> Any:
    return wire.request(build(load_request_schema(ApiKey.SASL_HANDSHAKE, 1), mechanism=mechanism))


def authenticate(wire: Wire, token: bytes) -> Any:
    return wire.request(build(load_request_schema(ApiKey.SASL_AUTHENTICATE, 2), auth_bytes=token))


def local_address(wire: Wire) -> str:
    host, port = wire.sock.getsockname()[:2]
    return f"{host}:{port}"


def scram_first(wire: Wire, client_first_bare: bytes) -> bytes:
    assert handshake(wire, "SCRAM-SHA-512").error_code == KafkaCode.NONE
    answer = authenticate(wire, b"n,," + client_first_bare)
    assert answer.error_code == KafkaCode.NONE
    return bytes(answer.auth_bytes)


def test_a_wrong_password_is_refused_logged_with_the_peer_and_never_the_password(
    doors: Doors, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not-the-password-9f3a"
    with Canary(doors) as canary, Wire(doors.sasl, timeout=TIMEOUT) as wire:
        assert handshake(wire, "PLAIN").error_code == KafkaCode.NONE
        refused = authenticate(wire, b"\0alice\0" + wrong.encode())
        assert refused.error_code == KafkaCode.SASL_AUTHENTICATION_FAILED
        assert wire.closed_by_server(TIMEOUT)
        peer = local_address(wire)
        canary.check()
    failures = [r.getMessage() for r in caplog.records if "authentication failed" in r.getMessage()]
    assert any(peer in message for message in failures), failures
    assert wrong not in caplog.text
    assert PASSWORD not in caplog.text


def test_a_replayed_scram_client_final_message_is_refused(
    doors: Doors, caplog: pytest.LogCaptureFixture
) -> None:
    bare = b"n=alice,r=" + base64.b64encode(os.urandom(18))
    with Canary(doors) as canary:
        with Wire(doors.sasl, timeout=TIMEOUT) as wire:
            server_first = scram_first(wire, bare)
            final = client_final(bare, server_first, PASSWORD)
            accepted = authenticate(wire, final)
            assert accepted.error_code == KafkaCode.NONE
            assert bytes(accepted.auth_bytes).startswith(b"v=")
        with Wire(doors.sasl, timeout=TIMEOUT) as replay:
            # The same client nonce, but the server's part of the nonce is new:
            # the recorded proof signs the old one.
            assert scram_first(replay, bare) != server_first
            refused = authenticate(replay, final)
            assert refused.error_code == KafkaCode.SASL_AUTHENTICATION_FAILED
            assert refused.error_message == (
                "Authentication failed during authentication due to invalid credentials"
                " with SASL mechanism SCRAM-SHA-512"
            )
            assert replay.closed_by_server(TIMEOUT)
            peer = local_address(replay)
        canary.check()
    assert any(peer in r.getMessage() for r in caplog.records if "failed" in r.getMessage())
    proof = final.rsplit(b"p=", 1)[1].decode()
    nonce = re.search(rb"r=([^,]+)", final)
    assert nonce is not None
    for secret in (PASSWORD, proof, nonce.group(1).decode()):
        assert secret not in caplog.text


def test_a_sasl_exchange_cut_half_way_is_closed_when_idle(
    doors: Doors, caplog: pytest.LogCaptureFixture
) -> None:
    bare = b"n=alice,r=" + base64.b64encode(os.urandom(18))
    with Canary(doors) as canary, Wire(doors.sasl, timeout=TIMEOUT) as wire:
        scram_first(wire, bare)  # then silence: no client-final
        started = time.monotonic()
        assert wire.closed_by_server(TIMEOUT)
        assert time.monotonic() - started < TIMEOUT
        peer = local_address(wire)
        canary.check()
    closed = [r.getMessage() for r in caplog.records if "connections.max.idle.ms" in r.getMessage()]
    assert any(peer in message for message in closed), closed


def test_a_produce_before_authentication_closes_the_connection(
    doors: Doors, caplog: pytest.LogCaptureFixture
) -> None:
    produce = build(load_request_schema(ApiKey.PRODUCE, 8), acks=-1, timeout_ms=1000, topic_data=())
    with Canary(doors) as canary, Wire(doors.sasl, timeout=TIMEOUT) as wire:
        wire.send(produce)
        assert wire.closed_by_server(TIMEOUT)
        peer = local_address(wire)
        canary.check()
    assert any(peer in r.getMessage() for r in caplog.records)


def half_a_client_hello() -> bytes:
    """The first half of a real TLS ClientHello."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    hello = outgoing.read()
    assert len(hello) > 100
    return hello[: len(hello) // 2]


def closed_raw(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes ``sock`` within ``timeout``."""
    sock.settimeout(timeout)
    try:
        while True:
            try:
                if not sock.recv(65536):
                    return True
            except ConnectionResetError:
                return True
    except TimeoutError:
        return False


@pytest.mark.parametrize(
    "opening",
    [b"", half_a_client_hello()],
    ids=["nothing", "half-a-client-hello"],
)
def test_a_tls_handshake_that_never_finishes_is_closed(doors: Doors, opening: bytes) -> None:
    host, _, port = doors.ssl.rpartition(":")
    with Canary(doors) as canary, socket.create_connection((host, int(port)), TIMEOUT) as sock:
        sock.sendall(opening)
        assert closed_raw(sock, TIMEOUT)
        canary.check()


def test_garbage_instead_of_a_client_hello_is_closed(doors: Doors) -> None:
    host, _, port = doors.ssl.rpartition(":")
    garbage = b"\x00\x00\x00\x10" + bytes(range(16))  # a Kafka frame, not TLS
    with Canary(doors) as canary, socket.create_connection((host, int(port)), TIMEOUT) as sock:
        sock.sendall(garbage)
        assert closed_raw(sock, TIMEOUT)
        canary.check()
    # The listener still serves a real TLS client afterwards.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host, int(port)), TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() is not None


@pytest.mark.slow
def test_a_flood_of_wrong_passwords_is_logged_a_line_per_interval(tmp_path: Path) -> None:
    """``tidelog serve`` limits repeated warnings: a password-guessing peer
    costs a line per interval, not one per guess, and is served its answers."""
    process = sasl_server(tmp_path)
    add_user(process.data_dir, "alice", PASSWORD)
    process.start()
    try:
        guesses = 20
        for guess in range(guesses):
            with Wire(sasl_bootstrap(process), timeout=TIMEOUT) as wire:
                assert handshake(wire, "PLAIN").error_code == KafkaCode.NONE
                token = f"\0alice\0guess-{guess}".encode()
                refused = authenticate(wire, token)
                assert refused.error_code == KafkaCode.SASL_AUTHENTICATION_FAILED
                assert wire.closed_by_server(TIMEOUT)
        with Wire(sasl_bootstrap(process), timeout=TIMEOUT) as wire:
            assert handshake(wire, "PLAIN").error_code == KafkaCode.NONE
            assert authenticate(wire, b"\0alice\0" + PASSWORD.encode()).error_code == 0
            assert wire.request(METADATA).brokers
    finally:
        assert process.stop() == 0, process.log()
    log = process.log()
    failures = [line for line in log.splitlines() if "SASL authentication failed" in line]
    assert 1 <= len(failures) < guesses, failures
    assert "guess-" not in log
