"""Answers of OFF_LOOP_MIN or more are sent by the send thread
(engine/server/off_loop_sends.py), over real sockets: whole and in order
with the small answers around them, to a client that reads slowly; the
connection reads nothing more meanwhile and every count stays exact; a
connection closed by either side while the thread holds its answer is
given up, its descriptor closed; and the thread never writes to a
descriptor number the connection has let go of and that now names another
socket. On asyncio's own loop and on uvloop's."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from kio.index import load_response_schema

import engine
import native
from engine.protocol.apis import ApiKey
from engine.protocol.codec import Parts
from engine.server.config import ServerConfig
from engine.server.connection import Connection
from engine.server.off_loop_sends import OFF_LOOP_MIN, HandOff, SendThread
from engine.server.sliced_writes import SLICE_BYTES, SlicedWriter
from tests.server.in_process import InProcessServer
from tests.server.inflight_counts import counted_exactly
from tests.server.non_reader import API_VERSIONS, SMALL_RECEIVE_BUFFER
from tests.server.wire import Wire, decode_response, encode_request, fetch_from_start
from wal.thread_priority import NORMAL

VALUES = [bytes([i]) * (SLICE_BYTES // 2 + 1000) for i in range(16)]
"""About 8 MiB: more than a loopback socket's send buffer grows to
(tcp_wmem's largest, 4 MiB), so a client that reads nothing leaves the
answer with the send thread."""
FETCH_ANSWER = load_response_schema(ApiKey.FETCH, 11)
API_VERSIONS_ANSWER = load_response_schema(ApiKey.API_VERSIONS, 0)
WAIT_S = 30.0


@pytest.fixture(params=["asyncio", "uvloop"])
def served(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[InProcessServer]:
    if request.param == "uvloop":
        monkeypatch.setattr(asyncio, "new_event_loop", uvloop.new_event_loop)
    with engine.open(tmp_path / "data", config=engine.EngineConfig.small()) as opened:
        opened.create_topic("t", 1, {"max.message.bytes": str(SLICE_BYTES)})
        with opened.producer() as producer:
            for value in VALUES:
                producer.send("t", value, partition=0).result(WAIT_S)
        monkeypatch.undo()  # the server's loop is made: the rest runs as usual
        with InProcessServer(opened, timeout=WAIT_S, config=ServerConfig()) as server:
            yield server


def slow_reader(served: InProcessServer) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RECEIVE_BUFFER)
    sock.settimeout(WAIT_S)
    sock.connect(("127.0.0.1", served.server.port))
    return sock


def connection_of(served: InProcessServer, sock: socket.socket) -> Connection | None:
    host, port = sock.getsockname()[:2]
    found = [c for c in served.server.connections if c.peer == f"{host}:{port}"]
    return found[0] if found else None


def with_the_send_thread(served: InProcessServer, sock: socket.socket) -> Connection:
    """Waits until the send thread holds an answer of ``sock``'s connection."""

    def sending() -> bool:
        connection = connection_of(served, sock)
        return (
            connection is not None
            and connection._writer is not None
            and (connection._writer.sending)
        )

    served.until_on_loop(sending)
    connection = connection_of(served, sock)
    assert connection is not None
    return connection


def read_frames(sock: socket.socket, count: int) -> list[bytes]:
    """``count`` answer frames, read 4 KiB at a time (a slow reader)."""
    buffer = bytearray()
    frames: list[bytes] = []
    while len(frames) < count:
        chunk = sock.recv(SMALL_RECEIVE_BUFFER)
        assert chunk, "the server closed the connection"
        buffer += chunk
        while len(buffer) >= 4:
            size = struct.unpack_from(">i", buffer)[0]
            if len(buffer) < 4 + size:
                break
            frames.append(bytes(buffer[4 : 4 + size]))
            del buffer[: 4 + size]
    assert not buffer
    return frames


def fetched_values(answer: Any) -> list[bytes]:
    (topic,) = answer.responses
    (partition,) = topic.partitions
    assert partition.error_code == 0
    return [record.value for record in native.decode_records(partition.records)]


def test_large_and_small_answers_reach_a_slow_reader_whole_and_in_order(
    served: InProcessServer,
) -> None:
    server = served.server
    fetch = fetch_from_start("t", max_bytes=64 << 20)
    sock = slow_reader(served)
    with sock:
        requests = [fetch, API_VERSIONS, fetch, API_VERSIONS]
        sock.sendall(b"".join(encode_request(r, i) for i, r in enumerate(requests, 1)))
        connection = with_the_send_thread(served, sock)

        def while_sending() -> tuple[bool, int]:
            writer = connection._writer
            assert writer is not None
            # the requests not answered yet (the second Fetch may still be
            # reading) are counted as ever, the first's answer no more
            assert counted_exactly(server, server.connections)
            return "writing" in connection._pauses, writer.unsent

        paused, unsent = served.on_loop(while_sending)
        assert paused  # reads no more while the thread holds its answer
        assert unsent > 0

        frames = read_frames(sock, len(requests))
        first, second, third, fourth = (
            decode_response(schema, frame)
            for schema, frame in zip([FETCH_ANSWER, API_VERSIONS_ANSWER] * 2, frames, strict=True)
        )
        assert [first[0], second[0], third[0], fourth[0]] == [1, 2, 3, 4]
        assert fetched_values(first[1]) == VALUES
        assert fetched_values(third[1]) == VALUES
        assert second[1].error_code == fourth[1].error_code == 0

        def after() -> tuple[int, bool, int, int]:
            sends = server.sends
            assert sends is not None
            writer = connection._writer
            assert writer is not None and not writer.sending
            assert counted_exactly(server, server.connections)
            return (
                sends.sent_answers,
                "writing" in connection._pauses,
                writer.unsent,
                (connection.inflight_bytes + connection.answer_bytes),
            )

        assert served.on_loop(after) == (2, False, 0, 0)


def test_a_client_gone_while_the_thread_holds_its_answer_is_given_up(
    served: InProcessServer,
) -> None:
    server = served.server
    sock = slow_reader(served)
    sock.sendall(encode_request(fetch_from_start("t", max_bytes=64 << 20), 1))
    with_the_send_thread(served, sock)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # a reset: the thread's write fails, or the loop sees it first
    served.until_on_loop(lambda: not server.connections)
    sends = server.sends
    assert sends is not None
    served.until_on_loop(lambda: sends.holding == 0)  # its duplicate closed
    assert sends.sent_answers == 0
    assert served.on_loop(lambda: (server.inflight_bytes, server.non_reader_held_bytes)) == (0, 0)
    with Wire(served.bootstrap, WAIT_S) as other:  # the others are still served
        assert other.request(API_VERSIONS).error_code == 0


def test_a_connection_the_server_aborts_while_the_thread_holds_its_answer_closes(
    served: InProcessServer,
) -> None:
    """The thread's duplicate would keep the socket open: given up, it is
    closed, and the client sees the close."""
    server = served.server
    sock = slow_reader(served)
    with sock:
        sock.sendall(encode_request(fetch_from_start("t", max_bytes=64 << 20), 1))
        connection = with_the_send_thread(served, sock)
        served.on_loop(lambda: connection.abort(RuntimeError("closed by the test")))
        read = 0
        while chunk := sock.recv(1 << 20):  # what was sent, then the end
            read += len(chunk)
        assert read < sum(map(len, VALUES))
    served.until_on_loop(lambda: not server.connections)
    sends = server.sends
    assert sends is not None
    served.until_on_loop(lambda: sends.holding == 0)
    assert served.on_loop(lambda: (server.inflight_bytes, server.non_reader_held_bytes)) == (0, 0)


def test_the_thread_never_writes_to_a_socket_that_took_a_released_descriptor_number() -> None:
    """The connection's descriptor is closed and its number given to
    another socket while the thread still holds an answer: the answer goes
    on to the first socket (the thread's own duplicate), nothing to the
    second, and once given up the first socket is closed."""
    loop = asyncio.new_event_loop()
    sender = SendThread(NORMAL)
    sender.start()
    first, first_peer = socket.socketpair()
    second, second_peer = socket.socketpair()
    try:
        first.setblocking(False)
        second.setblocking(False)  # as every socket the server writes to is
        number = first.fileno()
        answer = b"a" * (4 * OFF_LOOP_MIN)
        outcome: list[bool] = []
        send = sender.send(number, [answer], loop, outcome.append)
        first.close()  # what the transport does on close: the number is free
        os.dup2(second.fileno(), number)  # and a new socket takes it
        reused = socket.socket(fileno=number)
        try:
            first_peer.settimeout(WAIT_S)
            received = bytearray()
            while len(received) < len(answer):  # the rest reaches the first socket's peer
                chunk = first_peer.recv(1 << 20)
                assert chunk, f"the first socket closed after {len(received)} bytes"
                received += chunk
            assert received == answer
            sender.cancel(send)  # nothing left to give up: it was sent
            loop.run_until_complete(_turns(loop, lambda: bool(outcome)))
            assert outcome == [True]
            second_peer.setblocking(False)
            with pytest.raises(BlockingIOError):
                second_peer.recv(1)  # nothing was written to the number's new socket
            assert first_peer.recv(1) == b""  # the thread let its duplicate go: closed
        finally:
            reused.close()
    finally:
        sender.stop(WAIT_S)
        loop.close()
        for sock in (second, first_peer, second_peer):
            sock.close()


def test_an_answer_given_up_before_it_is_sent_reports_so_and_closes_the_socket() -> None:
    loop = asyncio.new_event_loop()
    sender = SendThread(NORMAL)
    sender.start()
    ours, peer = socket.socketpair()
    try:
        ours.setblocking(False)
        outcome: list[bool] = []
        send = sender.send(ours.fileno(), [b"b" * (16 * OFF_LOOP_MIN)], loop, outcome.append)
        ours.close()
        sender.cancel(send)  # the peer reads nothing: most of it is unsent
        loop.run_until_complete(_turns(loop, lambda: bool(outcome)))
        assert outcome == [False]
        assert sender.sent_answers == 0
        peer.settimeout(WAIT_S)
        while peer.recv(1 << 20):  # what was sent before, then the end
            pass
    finally:
        sender.stop(WAIT_S)
        loop.close()
        peer.close()


async def _turns(loop: asyncio.AbstractEventLoop, done: Any) -> None:
    """Runs the loop until ``done()`` (the thread's callback arrives through it)."""
    for _ in range(int(WAIT_S * 100)):
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the send thread never reported")


def test_a_close_waits_for_the_thread_and_the_answers_behind_it() -> None:
    """A graceful close (shutdown, a failed login's answer) runs once the
    thread has sent its answer and the ones behind it reached the
    transport; until then the writer counts every byte not yet sent."""
    loop = asyncio.new_event_loop()
    sender = SendThread(NORMAL)
    sender.start()
    ours, peer = socket.socketpair()
    events: list[str] = []
    try:
        ours.setblocking(False)

        def transport_writes(parts: Parts) -> None:
            events.append("transport")
            ours.setblocking(True)  # a transport's buffer: written whole, in order
            ours.sendall(b"".join(parts))
            ours.setblocking(False)

        hand_off = HandOff(
            sender,
            ours.fileno(),
            lambda: 0,
            lambda: events.append("pause"),
            lambda: events.append("resume"),
            lambda: events.append("failed"),
        )
        writer = SlicedWriter(transport_writes, loop, hand_off=hand_off)
        large = b"L" * (8 * OFF_LOOP_MIN)
        writer.write([large])
        writer.write([b"small"])
        assert writer.sending and events == ["pause"]
        # what the thread has not sent (the socket pair's buffers take some
        # at once) and the answer behind it
        assert len(b"small") + len(large) // 2 < writer.unsent <= len(large) + len(b"small")
        writer.flush_then(lambda: events.append("closed"))
        assert "closed" not in events  # the thread still holds the answer

        received = bytearray()
        peer.settimeout(WAIT_S)

        async def read_everything() -> None:
            while len(received) < len(large) + len(b"small"):
                received.extend(await loop.sock_recv(peer, 1 << 20))

        peer.setblocking(False)
        loop.run_until_complete(asyncio.wait_for(read_everything(), WAIT_S))
        loop.run_until_complete(_turns(loop, lambda: "closed" in events))
        assert bytes(received) == large + b"small"
        assert events == ["pause", "resume", "transport", "closed"]
        assert writer.unsent == 0 and not writer.sending
    finally:
        sender.stop(WAIT_S)
        loop.close()
        ours.close()
        peer.close()
