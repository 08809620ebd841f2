"""A client that sends requests and reads none of its answers, over real
plain TCP sockets: the server stops reading it once its answers fill the
socket, and holds the rest of that read unread, counted against its
connection's in-flight budget but not the server's while it reads no
answers (connection.py). What it holds must not keep the others from
being served, and the server's count stays exact as it closes or reads
again.

The non-reader shrinks its receive buffer and pipelines ApiVersions
requests, whose answers are some twenty times their size, until the
server holds more than the whole budget for it. The others' requests are
then answered or not; the waits are bounded only so that a hang fails the
test.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kio.index import load_response_schema

import engine
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server.config import ServerConfig
from engine.server.connection import Connection
from engine.server.server import Server
from engine.server.server_collector import ServerCollector
from tests.server.in_process import InProcessServer
from tests.server.inflight_counts import counted_exactly
from tests.server.non_reader import (
    API_VERSIONS,
    HANG_S,
    SMALL_RECEIVE_BUFFER,
    NonReader,
)
from tests.server.wire import Wire, encode_request

BUDGET = 16 * 1024
"""max_inflight_bytes: less than what the non-reader comes to hold."""
API_VERSIONS_ANSWER = load_response_schema(ApiKey.API_VERSIONS, 0)
ATTEMPTS = 8


def non_reader_of(served: InProcessServer) -> NonReader:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RECEIVE_BUFFER)
    sock.connect(("127.0.0.1", served.server.port))
    return NonReader(sock)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[InProcessServer]:
    config = ServerConfig(max_inflight_bytes=BUDGET)
    with engine.open(tmp_path / "node") as opened, InProcessServer(opened, config=config) as server:
        yield server


def connection_at(served: InProcessServer, peer: str) -> Connection | None:
    """The server's connection of ``peer`` (None until it has accepted it);
    called on the server's loop."""
    connections = [c for c in served.server.connections if c.peer == peer]
    return connections[0] if connections else None


def holding_past_the_budget(served: InProcessServer) -> list[NonReader]:
    """Non-readers, the last of which the server holds unread requests of,
    more than the whole budget, its reading stopped for its answers unread:
    counted in its connection's budget, not in the server's. Where in a
    read its answers fill the socket is the kernel's doing: when it is at
    the read's end, nothing is held, and another one is tried."""
    non_readers: list[NonReader] = []
    for _ in range(ATTEMPTS):
        non_reader = non_reader_of(served)
        non_readers.append(non_reader)

        def stopped(peer: str = non_reader.peer) -> bool:
            connection = connection_at(served, peer)
            return connection is not None and "writing" in connection._pauses

        served.until_on_loop(stopped)

        def held(peer: str = non_reader.peer) -> int:
            connection = connection_at(served, peer)
            assert connection is not None
            assert connection.inflight_bytes >= len(connection._held)
            assert counted_exactly(served.server, served.server.connections)
            return len(connection._held)

        if served.on_loop(held) > BUDGET:
            return non_readers
    raise AssertionError(f"no read of {ATTEMPTS} non-readers was stopped in its middle")


def test_a_request_arriving_in_parts_is_finished_while_another_client_reads_no_answers(
    served: InProcessServer,
) -> None:
    """Past the budget, a connection with a request half read is let past
    it to finish that request, one at a time: a connection whose reading
    is stopped for another reason (here: its client reads no answers) must
    not take that turn, which it cannot use, from the others."""
    non_readers = holding_past_the_budget(served)
    try:
        with Wire(served.bootstrap, HANG_S) as other:
            request = encode_request(API_VERSIONS, other.next_correlation_id(), "c" * 2000)
            other.send_raw(request[:1000])

            def half_read(peer: str = peer_of(other)) -> bool:
                connection = connection_at(served, peer)
                return connection is not None and connection.partial_since is not None

            served.until_on_loop(half_read)
            other.send_raw(request[1000:])
            _, answer = other.receive(API_VERSIONS_ANSWER)
            assert answer.error_code == KafkaCode.NONE
    finally:
        for non_reader in non_readers:
            non_reader.reset()


def test_another_clients_requests_are_answered_while_one_client_reads_no_answers(
    served: InProcessServer,
) -> None:
    non_readers = holding_past_the_budget(served)
    try:
        with Wire(served.bootstrap, HANG_S) as other:
            for _ in range(3):
                assert other.request(API_VERSIONS).error_code == KafkaCode.NONE
    finally:
        for non_reader in non_readers:
            non_reader.reset()


def test_what_non_readers_hold_is_counted_by_the_server_from_none_of_them_once_they_close(
    served: InProcessServer,
) -> None:
    """Their held bytes left the server's count when they were stopped for
    writing: gone while still stopped, they take out of it only what it
    counted, and it comes back to 0."""
    non_readers = holding_past_the_budget(served)
    server = served.server

    def held_out_of_the_servers_count() -> int:
        stopped = [c for c in server.connections if "writing" in c._pauses]
        assert counted_exactly(server, server.connections)
        assert server.inflight_bytes <= BUDGET
        return sum(len(c._held) for c in stopped)

    assert served.on_loop(held_out_of_the_servers_count) > BUDGET
    for non_reader in non_readers:
        non_reader.reset()
    served.until_on_loop(lambda: not server.connections and server.inflight_bytes == 0)


def shown(server: Server) -> dict[str, float]:
    """The server's in-flight gauges, as a scrape reads them; called on its loop."""
    wanted = ("tidelog_inflight_bytes", "tidelog_non_reader_held_bytes")
    return {
        metric.name: metric.samples[0].value
        for metric in ServerCollector(server).collect()
        if metric.name in wanted
    }


def test_what_non_readers_hold_is_shown_beside_the_bytes_in_the_servers_budget(
    served: InProcessServer,
) -> None:
    """tidelog_inflight_bytes leaves out what non-readers hold (it is what
    max_inflight_bytes bounds); tidelog_non_reader_held_bytes shows it, so
    the two together are everything the connections hold."""
    non_readers = holding_past_the_budget(served)
    server = served.server

    def gauges_and_connections() -> tuple[dict[str, float], int, int]:
        held_by_non_readers = sum(
            len(c._held) for c in server.connections if "writing" in c._pauses
        )
        return shown(server), held_by_non_readers, sum(c.inflight_bytes for c in server.connections)

    gauges, held_by_non_readers, everything = served.on_loop(gauges_and_connections)
    assert gauges["tidelog_non_reader_held_bytes"] == held_by_non_readers > BUDGET
    assert gauges["tidelog_inflight_bytes"] <= BUDGET
    assert gauges["tidelog_inflight_bytes"] + gauges["tidelog_non_reader_held_bytes"] == everything
    for non_reader in non_readers:
        non_reader.reset()
    served.until_on_loop(lambda: not server.connections)
    assert served.on_loop(lambda: shown(server)) == {
        "tidelog_inflight_bytes": 0,
        "tidelog_non_reader_held_bytes": 0,
    }


def test_what_a_non_reader_holds_counts_again_once_it_reads_and_is_handled(
    served: InProcessServer,
) -> None:
    """A client that reads its answers at last is read again: what it held
    counts in the server's budget again as its pause for writing ends, and
    once everything it sent is answered, the count is back to 0."""
    *_, non_reader = non_readers = holding_past_the_budget(served)
    server = served.server
    for other in non_readers[:-1]:
        other.reset()
    served.until_on_loop(lambda: len(server.connections) == 1)
    answered = threading.Event()
    reader = threading.Thread(
        target=read_answers, args=(non_reader.sock, non_reader.requests, answered), daemon=True
    )
    reader.start()
    try:

        def counted_as_it_goes() -> bool:
            assert counted_exactly(server, server.connections)
            return answered.is_set()

        served.until_on_loop(counted_as_it_goes)
        assert served.on_loop(lambda: server.inflight_bytes) == 0
    finally:
        non_reader.reset()
        reader.join(HANG_S)


def read_answers(sock: socket.socket, expected: int, answered: threading.Event) -> None:
    """Reads ``expected`` answer frames (then sets ``answered``), or until
    the socket closes."""
    buffer = bytearray()
    count = 0
    with contextlib.suppress(OSError):
        while count < expected:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return
            buffer += chunk
            while len(buffer) >= 4 and len(buffer) >= 4 + int.from_bytes(buffer[:4], "big"):
                del buffer[: 4 + int.from_bytes(buffer[:4], "big")]
                count += 1
    if count == expected:
        answered.set()


def peer_of(wire: Wire) -> str:
    host, port = wire.sock.getsockname()[:2]
    return f"{host}:{port}"
