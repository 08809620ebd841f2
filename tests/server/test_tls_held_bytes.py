"""Bytes a connection holds unread count against the server's in-flight
budget, over real TLS sockets.

Each holding client logs in with SASL/PLAIN over TLS and sends a request
right behind its SaslAuthenticate, in one write of less than a TLS record:
the server stops reading the connection while the password check runs
(held back here, by fault injection, for as long as the test wants), and
the request, decrypted with the login in one record, is held unread. Two
such connections hold less than ``max_inflight_bytes``, three more: every
connection's reading then stops, and every held byte is released again,
however the connections end (reset, their requests handled, a malformed
frame among them). The third holds more than half the budget: once the
others are done, no answer frees what it holds, so it is let past the
budget to handle it.

The server's counters are read on its event loop, between two of its
steps; the waits are bounded only so that a hang fails the test.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import socket
import ssl
import struct
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kio.index import load_request_schema, load_response_schema

import engine
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server.config import ServerConfig
from engine.server.connection import Connection
from engine.server.listeners import parse_listeners
from tests.server.certificates import Tls
from tests.server.held_checks import HeldChecks, held_checks
from tests.server.in_process import InProcessServer
from tests.server.inflight_counts import counted_exactly
from tests.server.non_reader import SMALL_RECEIVE_BUFFER, NonReader
from tests.server.wire import Wire, build, encode_request

PASSWORD = "s3cret"
TIMEOUT = 30.0
BUDGET = 30 * 1024
"""max_inflight_bytes."""
CLIENT_ID_BYTES = (8_000, 8_000, 15_500)
"""The long client id of the request each holder sends behind its login:
with the login, less than a TLS record's 16 KiB of plaintext, which is
decrypted whole, so all of it is held. Two holders hold less than the
budget, three more, and the third alone more than half of it."""
HANDSHAKE = build(load_request_schema(ApiKey.SASL_HANDSHAKE, 1), mechanism="PLAIN")
LOGIN = build(
    load_request_schema(ApiKey.SASL_AUTHENTICATE, 2), auth_bytes=f"\0alice\0{PASSWORD}".encode()
)
API_VERSIONS = build(load_request_schema(ApiKey.API_VERSIONS, 0))
SERVER_SEND_BUFFER = 4096
"""The server's socket buffer for a non-reader's answers (set on its side
of the connection): with the client's small receive buffer, the kernel
takes little of them, so that writing stops at what asyncio buffers."""
BURST_BYTES = 48 * 1024
"""What a non-reader has queued at the server before the server reads any
of it: read at once, its answers (some twenty times as many bytes) pass
what the transports buffer before they stop the connection for writing,
so that it stops in the middle of that read, with the rest held."""


class TlsWire(Wire):
    """One TLS connection to the server, the test CA trusted."""

    def __init__(self, port: int, tls: Tls) -> None:
        super().__init__(f"127.0.0.1:{port}", TIMEOUT)
        context = ssl.create_default_context(cafile=str(tls.authority.ca))
        self.sock = context.wrap_socket(self.sock, server_hostname="localhost")

    @property
    def peer(self) -> str:
        """How the server names this connection."""
        host, port = self.sock.getsockname()[:2]
        return f"{host}:{port}"

    def reset(self) -> None:
        """Closes the connection with a reset, as a client that crashed
        with bytes unread does: the server learns of it at once, reading
        or not (a TLS connection that is not read sees an orderly close
        only once it is read again)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


@dataclass
class Node:
    wire: InProcessServer
    checks: HeldChecks
    tls: Tls

    @property
    def port(self) -> int:
        return self.wire.server.ports["SASL_SSL"]

    def on_loop(self, condition: Any) -> None:
        self.wire.until_on_loop(condition)


@pytest.fixture
def node(tmp_path: Path, tls: Tls, monkeypatch: pytest.MonkeyPatch) -> Iterator[Node]:
    config = ServerConfig(
        listeners=parse_listeners("SASL_SSL://127.0.0.1:0"),
        ssl_keystore_location=str(tls.keystore),
        ssl_key_password_file=str(tls.key_password),
        sasl_password_check_threads=1,
        sasl_password_check_queue_size=8,
        sasl_password_check_queue_per_address=8,
        max_inflight_bytes=BUDGET,
    )
    with engine.open(tmp_path / "node") as opened, held_checks(monkeypatch) as checks:
        checks.release()  # the credential's own derivation
        opened.credentials.add("alice", "PLAIN", PASSWORD)
        checks.hold()
        served = InProcessServer(opened, config=config)
        try:
            yield Node(served, checks, tls)
        finally:
            checks.release()
            served.stop()


def log_in_with_a_request_behind(
    node: Node, client_id_bytes: int, extra: bytes = b""
) -> tuple[TlsWire, int]:
    """A client whose login is followed, in the same write, by an
    ApiVersions request with a long client id (and ``extra``); returns it
    and how many bytes it sent behind the login."""
    wire = TlsWire(node.port, node.tls)
    assert wire.request(HANDSHAKE).error_code == KafkaCode.NONE
    login = encode_request(LOGIN, wire.next_correlation_id())
    client_id = "c" * client_id_bytes
    behind = encode_request(API_VERSIONS, wire.next_correlation_id(), client_id=client_id)
    behind += extra
    assert len(login + behind) < 16 * 1024  # one TLS record
    wire.send_raw(login + behind)
    return wire, len(behind)


def connection_of(node: Node, wire: TlsWire) -> Connection:
    (connection,) = [c for c in node.wire.server.connections if c.peer == wire.peer]
    return connection


def queued_at(connection: Connection) -> int:
    """Bytes in the kernel's receive queue of the server's side of ``connection``."""
    assert connection.transport is not None
    sock = connection.transport.get_extra_info("socket")
    (queued,) = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4))
    return int(queued)


@contextlib.contextmanager
def loop_held_until_queued(node: Node, connection: Connection, size: int) -> Iterator[None]:
    """Holds the server's event loop from the start of the block until
    ``size`` bytes the block makes its client send are queued at the
    server, unread: the server then reads them all at once (however loaded
    the machine, whose timing would otherwise choose how much each read
    takes). The connection's socket buffer is made small first."""
    assert connection.transport is not None
    sock = connection.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SERVER_SEND_BUFFER)
    entered = threading.Event()
    held: concurrent.futures.Future[int] = concurrent.futures.Future()

    def hold() -> None:
        entered.set()
        deadline = time.monotonic() + TIMEOUT
        try:
            while (queued := queued_at(connection)) < size and time.monotonic() < deadline:
                time.sleep(0.002)
        except OSError as error:
            held.set_exception(error)
        else:
            held.set_result(queued)

    node.wire.loop.call_soon_threadsafe(hold)
    assert entered.wait(TIMEOUT)
    yield
    assert held.result(2 * TIMEOUT) >= size, f"only {held.result()} bytes came in {TIMEOUT} s"


def hold_past_the_budget(node: Node, first_extra: bytes = b"") -> tuple[list[TlsWire], TlsWire]:
    """Clients each holding the request behind its login (the first one
    ``first_extra`` too), then one more client whose request comes once
    they hold more than the budget: its reading stops for the server's
    budget, though it holds nothing itself."""
    server = node.wire.server
    holders: list[TlsWire] = []
    behind = 0
    for number, client_id_bytes in enumerate(CLIENT_ID_BYTES):
        extra = first_extra if number == 0 else b""
        wire, sent = log_in_with_a_request_behind(node, client_id_bytes, extra)
        holders.append(wire)
        behind += sent
        node.on_loop(lambda wire=wire, sent=sent: len(connection_of(node, wire)._held) == sent)
    other = TlsWire(node.port, node.tls)
    other.request(API_VERSIONS)  # read before its connection's budget check: answered
    fourth = connection_of(node, other)
    node.on_loop(lambda: "server" in fourth._pauses)

    def counted() -> bool:
        connections = list(server.connections)
        held = sum(len(c._held) for c in connections)
        assert held == behind
        assert len(connection_of(node, holders[-1])._held) > BUDGET // 2
        assert server.inflight_bytes == sum(c.inflight_bytes for c in connections)
        assert all(c.inflight_bytes >= len(c._held) for c in connections)
        return server.inflight_bytes >= held > BUDGET

    node.on_loop(counted)
    assert server.request_metrics.pauses["server"] >= 1
    return holders, other


def released(node: Node, *, connections: int) -> None:
    """Waits until every counted byte is released, ``connections`` open."""
    server = node.wire.server

    def done() -> bool:
        return len(server.connections) == connections and server.inflight_bytes == 0

    node.on_loop(done)
    assert all(c.inflight_bytes == 0 and not c._held for c in server.connections)
    assert not server.paused and not server.stalled and server.finishing is None


def test_held_bytes_of_several_tls_connections_stop_reading_server_wide_and_go_with_them(
    node: Node,
) -> None:
    holders, other = hold_past_the_budget(node)
    for wire in [*holders, other]:  # gone with the checks still running
        wire.reset()
    released(node, connections=0)


def test_held_bytes_are_released_as_their_requests_are_handled_or_refused(node: Node) -> None:
    """Once the checks end, each login is answered and the request held
    behind it handled, the last holder's past the budget; the first
    holder's request is followed by a malformed frame, which closes it."""
    holders, other = hold_past_the_budget(node, first_extra=b"\xff\xff\xff\xff")
    node.checks.release()
    for wire in holders:
        _, login = wire.receive(load_response_schema(ApiKey.SASL_AUTHENTICATE, 2))
        assert login.error_code == KafkaCode.NONE
        _, answer = wire.receive(load_response_schema(ApiKey.API_VERSIONS, 0))
        assert answer.error_code == KafkaCode.NONE
    assert holders[0].closed_by_server(TIMEOUT)
    released(node, connections=len(holders))  # every holder but the closed one, and the other
    for wire in [*holders[1:], other]:
        wire.close()
    released(node, connections=0)


def test_what_tls_non_readers_hold_leaves_the_servers_count_and_it_returns_to_0_as_they_go(
    node: Node,
) -> None:
    """Clients that log in, then pipeline requests and read no answers: a
    connection stopped for writing keeps what it holds (TLS bytes fed in
    while it is stopped) counted in its own budget, not in the server's,
    and reset while still stopped, it takes out of the server's count only
    what that counted."""
    node.checks.release()
    server = node.wire.server
    non_readers: list[NonReader] = []

    def holding(wire: TlsWire) -> bool:
        connection = connection_of(node, wire)
        assert counted_exactly(server, server.connections)
        return "writing" in connection._pauses and bool(connection._held)

    try:
        wire = TlsWire(node.port, node.tls)
        wire.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RECEIVE_BUFFER)
        assert wire.request(HANDSHAKE).error_code == KafkaCode.NONE
        assert wire.request(LOGIN).error_code == KafkaCode.NONE
        with loop_held_until_queued(node, connection_of(node, wire), BURST_BYTES):
            non_readers.append(NonReader(wire.sock, wire.next_correlation_id()))
        node.on_loop(lambda: "writing" in connection_of(node, wire)._pauses)
        assert node.wire.on_loop(lambda: holding(wire)), "its read was not stopped in its middle"
    finally:
        for non_reader in non_readers:
            non_reader.reset()
    released(node, connections=0)
