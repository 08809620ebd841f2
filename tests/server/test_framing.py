"""A connection's framing, in process: however the byte stream is cut into
reads, and whatever the socket says it holds, the same requests come out
in order, a request's buffer never outgrows the bytes received by more than
a growth step, and what is counted in flight is what is held."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.server import connection as connection_module
from engine.server.config import ServerConfig
from engine.server.dispatch import Dispatched
from engine.server.server import Server
from tests.server.engineless import ENGINELESS
from tests.server.inflight_counts import counted_by_the_server
from tests.server.wire import header_bytes

MiB = 1024 * 1024


class _Transport:
    def __init__(self) -> None:
        self.aborted = False
        self.paused = False

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else None

    def writelines(self, parts: list[bytes]) -> None:
        raise AssertionError("nothing is answered here")

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def _frame(correlation_id: int, payload_size: int) -> bytes:
    body = header_bytes(18, 3, correlation_id, flexible=True)
    body += bytes([correlation_id % 251]) * payload_size
    return len(body).to_bytes(4, "big") + body


@settings(max_examples=60, deadline=None)
@given(
    payload_sizes=st.lists(
        st.one_of(
            st.integers(0, 300), st.integers(60_000, 70_000), st.integers(300_000, 1_200_000)
        ),
        min_size=1,
        max_size=5,
    ),
    cuts=st.lists(st.integers(1, 1_500_000), min_size=1, max_size=40),
    socket_holds=st.sampled_from(["nothing", "the rest", "a little"]),
)
def test_any_cut_of_the_stream_gives_the_same_requests(
    payload_sizes: list[int], cuts: list[int], socket_holds: str
) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        _read_through_a_connection(monkeypatch, payload_sizes, cuts, socket_holds)


def _read_through_a_connection(
    monkeypatch: pytest.MonkeyPatch, payload_sizes: list[int], cuts: list[int], socket_holds: str
) -> None:
    frames = [_frame(index + 1, size) for index, size in enumerate(payload_sizes)]
    stream = b"".join(frames)
    position = 0
    received: list[bytes] = []

    def dispatch(state: Any, header: Any, frame: Any, *_peer: Any) -> Dispatched:
        received.append(bytes(frame))
        return Dispatched(header, None, 0)  # answered with nothing, at once

    def holds(_self: Any) -> int:
        rest = len(stream) - position
        return {"nothing": 0, "the rest": rest, "a little": min(rest, 1000)}[socket_holds]

    monkeypatch.setattr(connection_module, "dispatch", dispatch)
    monkeypatch.setattr(connection_module.Connection, "_socket_holds", holds)
    monkeypatch.setattr(Server, "state", property(lambda server: None))
    server = Server(engine=ENGINELESS)  # dispatch is replaced
    connection = connection_module.Connection(server)
    transport = _Transport()
    connection.connection_made(transport)

    index = 0
    while position < len(stream):
        view = connection.get_buffer(-1)
        count = min(len(view), cuts[index % len(cuts)], len(stream) - position)
        index += 1
        view[:count] = stream[position : position + count]
        del view
        position += count
        connection.buffer_updated(count)
        body = connection._body
        held = len(body) if body is not None else 0
        assert connection.inflight_bytes == server.inflight_bytes == held
        if body is not None:
            filled = connection._body_filled
            assert held <= filled + max(len(stream), filled, 256 * 1024)
            if socket_holds != "the rest":
                assert held <= filled + max(1000, filled, 256 * 1024)
            assert connection.partial_since is not None
    assert not transport.aborted
    assert received == [frame[4:] for frame in frames]
    assert connection.inflight_bytes == server.inflight_bytes == 0
    assert connection.partial_since is None
    connection.connection_lost(None)


def test_a_claimed_size_larger_than_the_limit_closes_before_allocating(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Server, "state", property(lambda server: None))
    server = Server(engine=ENGINELESS)  # nothing is dispatched
    connection = connection_module.Connection(server)
    transport = _Transport()
    connection.connection_made(transport)
    view = connection.get_buffer(-1)
    claim = (server.config.max_request_bytes + 1).to_bytes(4, "big")
    view[:4] = claim
    del view
    connection.buffer_updated(4)
    assert transport.aborted
    assert connection._body is None
    assert server.inflight_bytes == 0


def _read_once(connection: connection_module.Connection, rest: bytes, most: int = 100_000) -> int:
    """One read of the connection's socket, which holds ``rest``; returns its size."""
    view = connection.get_buffer(-1)
    count = min(len(view), most, len(rest))
    view[:count] = rest[:count]
    del view
    connection.buffer_updated(count)
    return count


@pytest.mark.parametrize(("clients_count", "chunk"), [(2, 300_000), (4, 100_000), (6, 30_000)])
def test_requests_arriving_that_hold_the_whole_budget_are_read_one_by_one(
    monkeypatch: pytest.MonkeyPatch, clients_count: int, chunk: int
) -> None:
    """Clients each sending a request too large for what is left of the
    server's budget: answers free nothing while only requests still arriving
    hold it, so one of them is read to its end past the budget, then the
    next; none waits for the partial-request timeout."""
    received: list[bytes] = []

    def dispatch(state: Any, header: Any, frame: Any, *_peer: Any) -> Dispatched:
        received.append(bytes(frame))
        return Dispatched(header, None, 0)  # answered with nothing, at once

    monkeypatch.setattr(connection_module, "dispatch", dispatch)
    monkeypatch.setattr(connection_module.Connection, "_socket_holds", lambda _self: 0)
    monkeypatch.setattr(Server, "state", property(lambda server: None))
    budget = 2 * MiB
    server = Server(engine=ENGINELESS, config=ServerConfig(max_inflight_bytes=budget))
    frames = [_frame(index + 1, 1 * MiB + 1000 * index) for index in range(clients_count)]
    clients = []
    for frame in frames:
        connection = connection_module.Connection(server)
        transport = _Transport()
        connection.connection_made(transport)
        clients.append([connection, transport, frame, 0])
    most = 0
    while any(sent < len(frame) for _, _, frame, sent in clients):
        progressed = False
        for client in clients:  # each client sends what TCP lets it, in turn
            connection, transport, frame, sent = client
            if transport.paused or sent == len(frame):
                continue
            client[3] = sent + _read_once(connection, frame[sent:], chunk)
            most = max(most, server.inflight_bytes)
            progressed = True
        assert progressed, "every connection stopped reading, each waiting for the others"
    assert sorted(received) == sorted(frame[4:] for frame in frames)
    # Past the budget by one request, and by each connection's read before it stopped.
    one_read = connection_module.SHARED_READ_BYTES + 64 * 1024
    assert most <= budget + len(max(frames, key=len)) + len(clients) * one_read
    assert server.inflight_bytes == 0
    assert not any(transport.paused for _, transport, _, _ in clients)
    for connection, *_ in clients:
        connection.connection_lost(None)


def test_a_connection_stopped_with_an_answer_waiting_reads_its_request_once_it_is_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A connection stopped for the budget in the middle of a request, with
    an earlier request still unanswered, holds more than the server will
    free: once its answer is out, its request is read to its end."""
    loop = asyncio.new_event_loop()
    received: list[bytes] = []
    waiting: list[asyncio.Future[Any]] = []

    def dispatch(state: Any, header: Any, frame: Any, *_peer: Any) -> Dispatched:
        if len(frame) < 1000:  # the small first request: answered later
            waiting.append(loop.create_future())
            return Dispatched(header, waiting[-1], 0)
        received.append(bytes(frame))
        return Dispatched(header, None, 0)

    monkeypatch.setattr(connection_module, "dispatch", dispatch)
    monkeypatch.setattr(connection_module.Connection, "_socket_holds", lambda _self: 0)
    monkeypatch.setattr(Server, "state", property(lambda server: None))
    try:
        server = Server(engine=ENGINELESS, config=ServerConfig(max_inflight_bytes=1 * MiB))
        connection = connection_module.Connection(server)
        transport = _Transport()
        connection.connection_made(transport)
        large = _frame(2, 2 * MiB)
        stream = _frame(1, 10) + large
        sent = 0
        while not transport.paused and sent < len(stream):
            sent += _read_once(connection, stream[sent:])
        assert transport.paused and sent < len(stream)
        waiting[0].cancel()  # the answer is out (a cancelled one writes nothing)
        loop.run_until_complete(asyncio.sleep(0))
        assert not transport.paused
        while sent < len(stream):
            assert not transport.paused
            sent += _read_once(connection, stream[sent:])
        assert received == [large[4:]]
        assert connection.inflight_bytes == server.inflight_bytes == 0
        connection.connection_lost(None)
    finally:
        loop.close()


@settings(max_examples=80, deadline=None)
@given(
    answers=st.lists(
        st.sampled_from(["at once", "later", "large, later"]), min_size=1, max_size=40
    ),
    cuts=st.lists(st.integers(1, 600), min_size=1, max_size=20),
    steps=st.lists(
        st.sampled_from(["read", "read", "fed", "answer", "socket full", "socket drained"]),
        max_size=120,
    ),
    closed_midway=st.booleans(),
)
# Bytes fed in while paused that finish the request being read.
@example(
    answers=["at once"],
    cuts=[11],
    steps=["read", "read", "socket full", "fed"],
    closed_midway=False,
)
def test_requests_held_back_by_a_pause_are_each_handled_once_in_order(
    answers: list[str], cuts: list[int], steps: list[str], closed_midway: bool
) -> None:
    """Requests read in the same read as the one that pauses the connection
    (its answer's bound is past the budget, or the client's socket stopped
    taking answers) are held back, not handled; they are handled once the
    pause ends, before anything more is read, each once and in order. Bytes
    handed on while paused ("fed": a TLS connection's first bytes, fed in
    by tls_handshake.py whatever the pause) go after them. Whatever is held
    counts in the connection's in-flight bytes, and in the server's unless
    the client reads no answers (its socket is full); closed after any
    step, the connection takes out of the server's count what it counted."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _pause_through_a_connection(monkeypatch, answers, cuts, steps, closed_midway)


@pytest.mark.parametrize("payload_size", [60, 200_000], ids=["shared buffer", "own buffer"])
def test_bytes_fed_in_while_paused_that_finish_a_request_wait_for_the_pause_to_end(
    monkeypatch: pytest.MonkeyPatch, payload_size: int
) -> None:
    """A TLS connection's bytes are fed in whatever the pause: those that
    finish the request being read (through the shared buffer, or straight
    into its own) do not have it handled while the client reads no answers;
    it is handled, then the next, once the pause ends."""
    loop = asyncio.new_event_loop()
    received: list[bytes] = []

    def dispatch(state: Any, header: Any, frame: Any, *_peer: Any) -> Dispatched:
        assert not connection._pauses, f"handled while paused ({connection._pauses})"
        received.append(bytes(frame))
        return Dispatched(header, None, 0)

    monkeypatch.setattr(connection_module, "dispatch", dispatch)
    monkeypatch.setattr(connection_module.Connection, "_socket_holds", lambda _self: 0)
    monkeypatch.setattr(Server, "state", property(lambda server: None))
    connection = connection_module.Connection(Server(engine=ENGINELESS, config=ServerConfig()))
    transport = _Transport()
    frames = [_frame(1, payload_size), _frame(2, 10)]
    stream = b"".join(frames)

    async def run() -> None:
        connection.connection_made(transport)
        sent = _read_once(connection, stream, len(frames[0]) // 2)
        connection.pause_writing()
        while sent < len(stream):  # fed in, whatever the pause
            sent += _read_once(connection, stream[sent:])
        assert received == []
        connection.resume_writing()
        await asyncio.sleep(0)
        assert received == [frame[4:] for frame in frames]
        assert not transport.paused and not transport.aborted

    try:
        loop.run_until_complete(run())
        connection.connection_lost(None)
    finally:
        loop.close()


def _pause_through_a_connection(
    monkeypatch: pytest.MonkeyPatch,
    answers: list[str],
    cuts: list[int],
    steps: list[str],
    closed_midway: bool,
) -> None:
    loop = asyncio.new_event_loop()
    frames = [_frame(index + 1, index * 7 % 90) for index in range(len(answers))]
    stream = b"".join(frames)
    received: list[bytes] = []
    unanswered: list[asyncio.Future[Any]] = []

    def dispatch(state: Any, header: Any, frame: Any, *_peer: Any) -> Dispatched:
        assert not connection._pauses, f"handled while paused ({connection._pauses})"
        received.append(bytes(frame))
        kind = answers[header.correlation_id - 1]
        if kind == "at once":
            return Dispatched(header, None, 0)
        unanswered.append(loop.create_future())
        return Dispatched(header, unanswered[-1], 2 * MiB if kind == "large, later" else 0)

    monkeypatch.setattr(connection_module, "dispatch", dispatch)
    monkeypatch.setattr(connection_module.Connection, "_socket_holds", lambda _self: 0)
    monkeypatch.setattr(Server, "state", property(lambda server: None))
    server = Server(engine=ENGINELESS, config=ServerConfig(max_connection_inflight_bytes=MiB))
    connection = connection_module.Connection(server)
    transport = _Transport()
    position = 0

    def read(index: int, fed: bool = False) -> None:
        nonlocal position
        if (transport.paused and not fed) or position == len(stream):
            return
        position += _read_once(connection, stream[position:], cuts[index % len(cuts)])

    def check() -> None:
        assert received == [frame[4:] for frame in frames][: len(received)]
        if not transport.paused:
            assert not connection._held, "the socket is read with requests held back"
        # What it holds unread counts in its budget, and in the server's
        # unless its client reads no answers.
        assert connection.inflight_bytes >= len(connection._held)
        assert server.inflight_bytes == counted_by_the_server(connection)

    async def run() -> None:
        connection.connection_made(transport)
        for index, step in enumerate(steps):
            if step in ("read", "fed"):
                read(index, fed=step == "fed")
            elif step == "answer" and unanswered:
                unanswered.pop(0).set_result(None)
            elif step == "socket full":
                connection.pause_writing()
            elif step == "socket drained":
                connection.resume_writing()
            for _ in range(3):
                await asyncio.sleep(0)
            check()
        if closed_midway:
            return
        connection.resume_writing()
        for index in range(10 * len(stream) + 100):
            while unanswered:
                unanswered.pop(0).set_result(None)
            read(index)
            await asyncio.sleep(0)
            check()
            if len(received) == len(frames):
                break
        while unanswered:
            unanswered.pop(0).set_result(None)
        for _ in range(3):
            await asyncio.sleep(0)

    try:
        loop.run_until_complete(run())
        if closed_midway:
            connection.connection_lost(None)
            assert server.inflight_bytes == 0
            return
        assert received == [frame[4:] for frame in frames]
        assert connection.inflight_bytes == connection.answer_bytes == server.inflight_bytes == 0
        assert not transport.aborted
        connection.connection_lost(None)
    finally:
        loop.close()


def test_a_connection_stopped_for_the_servers_budget_reads_again_once_a_non_reader_holds_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a connection holds leaves the server's count when its client
    stops reading answers: a connection that the held bytes had stopped
    for the server's budget is read again at once, not after some answer."""
    loop = asyncio.new_event_loop()
    unanswered: list[asyncio.Future[Any]] = []

    def dispatch(state: Any, header: Any, frame: Any, *_peer: Any) -> Dispatched:
        unanswered.append(loop.create_future())
        # The holder's first answer may carry more than its connection's
        # budget: what came with it is held.
        answer = 2 * MiB if header.correlation_id == 1 else 0
        return Dispatched(header, unanswered[-1], answer)

    monkeypatch.setattr(connection_module, "dispatch", dispatch)
    monkeypatch.setattr(Server, "state", property(lambda server: None))
    server = Server(
        engine=ENGINELESS,
        config=ServerConfig(max_inflight_bytes=1000, max_connection_inflight_bytes=MiB),
    )
    holder, other = (connection_module.Connection(server) for _ in range(2))
    holder_transport, other_transport = _Transport(), _Transport()

    async def run() -> None:
        holder.connection_made(holder_transport)
        other.connection_made(other_transport)
        _read_once(holder, _frame(1, 10) + _frame(2, 1200))
        assert len(holder._held) > 1000 and server.inflight_bytes > 1000
        _read_once(other, _frame(3, 10))
        assert "server" in other._pauses and other_transport.paused
        holder.pause_writing()
        assert server.inflight_bytes == counted_by_the_server(holder) + other.inflight_bytes
        assert "server" not in other._pauses and not other_transport.paused
        holder.resume_writing()
        assert server.inflight_bytes == holder.inflight_bytes + other.inflight_bytes

    try:
        loop.run_until_complete(run())
        holder.connection_lost(None)
        other.connection_lost(None)
        assert server.inflight_bytes == 0
    finally:
        loop.close()
