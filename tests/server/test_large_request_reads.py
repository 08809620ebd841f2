"""Large requests are read straight into their own buffers, none of their
bytes copied out of the server's shared read buffer: after a large
request a connection reads the next size prefix alone, then the request
to its end into a buffer of its own. In process with a cut byte stream,
and over a real socket with librdkafka producing MiB-sized requests.
Requests read with one that pauses the connection are copied twice, and
counted twice."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

import engine
from engine.server import connection as connection_module
from engine.server.dispatch import Dispatched
from engine.server.server import Server
from tests.server.conftest import quiet_librdkafka
from tests.server.engineless import ENGINELESS
from tests.server.in_process import InProcessServer, served_without_uploads
from tests.server.wire import header_bytes

MiB = 1024 * 1024
TIMEOUT = 30.0


class _Transport:
    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else None

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def abort(self) -> None:
        raise AssertionError("the connection was aborted")


def _frame(correlation_id: int, payload_size: int) -> bytes:
    body = header_bytes(18, 3, correlation_id, flexible=True)
    body += bytes([correlation_id]) * payload_size
    return len(body).to_bytes(4, "big") + body


def _received_in_reads(
    monkeypatch: pytest.MonkeyPatch,
    frames: list[bytes],
    read_at_most: int,
    *,
    holds_known: bool = True,
) -> Server:
    """Feeds ``frames`` to a server's connection as a socket holding every
    byte would: each read takes what the connection's buffer offers, up to
    ``read_at_most``; the socket's count of waiting bytes is told, unless
    not ``holds_known``. Every request must reach dispatch as it was sent.
    Returns the server, whose stats tell what was copied."""
    stream = b"".join(frames)
    received: list[bytes] = []
    position = 0

    def dispatch(state: Any, header: Any, frame: Any, *_peer: Any) -> Dispatched:
        received.append(bytes(frame))
        return Dispatched(header, None, 0)  # answered with nothing, at once

    monkeypatch.setattr(connection_module, "dispatch", dispatch)
    monkeypatch.setattr(
        connection_module.Connection,
        "_socket_holds",
        lambda _self: len(stream) - position if holds_known else 0,
    )
    monkeypatch.setattr(Server, "state", property(lambda server: None))
    server = Server(engine=ENGINELESS)  # dispatch is replaced
    connection = connection_module.Connection(server)
    connection.connection_made(_Transport())  # type: ignore[arg-type]
    while position < len(stream):
        view = connection.get_buffer(-1)
        count = min(len(view), read_at_most, len(stream) - position)
        view[:count] = stream[position : position + count]
        del view
        position += count
        connection.buffer_updated(count)
    assert received == [frame[4:] for frame in frames]
    connection.connection_lost(None)
    return server


@pytest.mark.parametrize("read_at_most", [MiB, 300_000, 70_000])
def test_after_a_large_request_the_next_ones_are_not_copied(
    monkeypatch: pytest.MonkeyPatch, read_at_most: int
) -> None:
    """The socket holds every byte; each read takes what the connection's
    buffer offers, up to ``read_at_most``. Only a large request after a
    small one (its start read with the small one) is partly copied."""
    sizes = [100, 2 * MiB, 1 * MiB, 70_000, 1 * MiB, 100, 200, 1 * MiB]
    frames = [_frame(index + 1, size) for index, size in enumerate(sizes)]
    server = _received_in_reads(monkeypatch, frames, read_at_most)
    large = [len(frame) - 4 >= 64 * 1024 for frame in frames]
    small = sum(len(frame) - 4 for frame in frames if len(frame) - 4 < 64 * 1024)
    after_small = sum(1 for before, big in itertools.pairwise(large) if big and not before)
    one_read = min(connection_module.SHARED_READ_BYTES, read_at_most)
    # The small requests, and the start of each large one that came with them:
    # two of the five large requests here (copied up to a read's worth each
    # before, all five).
    assert after_small == 2
    assert server.stats.bytes_copied <= small + after_small * one_read


@pytest.mark.parametrize(
    ("read_at_most", "holds_known"), [(MiB, True), (70_000, True), (4096, False)]
)
def test_request_buffers_are_not_zero_filled_and_every_byte_is_received(
    monkeypatch: pytest.MonkeyPatch, read_at_most: int, holds_known: bool
) -> None:
    """A large request's buffer is allocated unfilled (bytearray(n) would
    zero it: a pass over every byte of produce data). Given buffers full of
    stale bytes, every request handled is still exactly the bytes sent:
    none is handled before each of its bytes is received, whether it is
    read straight into its buffer, copied from the shared one, or its
    buffer grows because the socket's count of waiting bytes is unknown."""
    sizes = [100, 2 * MiB, 1 * MiB, 70_000, 100, 1 * MiB + 17]
    frames = [_frame(index + 1, size) for index, size in enumerate(sizes)]
    unfilled: list[int] = []
    grown: list[int] = []

    def stale(size: int) -> bytearray:
        unfilled.append(size)
        return bytearray(b"\xa5") * size  # what a reused allocation may hold

    def grow_stale(buffer: bytearray, added: int) -> None:
        grown.append(added)
        buffer.extend(b"\xa5" * added)

    monkeypatch.setattr(connection_module, "unfilled_bytearray", stale)
    monkeypatch.setattr(connection_module, "extend_unfilled", grow_stale)
    _received_in_reads(monkeypatch, frames, read_at_most, holds_known=holds_known)
    large = [len(frame) - 4 for frame in frames if len(frame) - 4 >= 64 * 1024]
    # A request that a read leaves unfinished (every large one) gets an
    # unfilled buffer; with the socket's count known, each at its full size.
    assert len(unfilled) >= len(large)
    if holds_known:
        assert [size for size in unfilled if size >= 64 * 1024] == large
        assert not grown
    else:  # grown unfilled too, a step at a time
        assert grown


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[engine.Engine, InProcessServer]]:
    with served_without_uploads(tmp_path / "node") as both:
        yield both


def test_librdkafka_produce_requests_are_read_without_a_copy(
    served: tuple[engine.Engine, InProcessServer],
) -> None:
    opened, server = served
    opened.create_topic("large", 1)
    producer = Producer(
        {
            "bootstrap.servers": server.bootstrap,
            "acks": "all",
            "linger.ms": 20,
            "batch.size": 1_000_000,
            **quiet_librdkafka(),
        }
    )
    producer.list_topics("large", timeout=TIMEOUT)
    stats = server.server.stats
    copied, read = stats.bytes_copied, stats.bytes_in
    records = 8 * 1024
    value = os.urandom(1024)
    for _ in range(records):
        producer.produce("large", value, partition=0)
    assert producer.flush(TIMEOUT) == 0
    assert opened.offsets("large", 0) == (0, records)
    read = stats.bytes_in - read
    assert read > 8 * MiB
    # At most the start of the first large request (it came after small
    # ones), and the small requests librdkafka sends besides: before, up to a
    # shared buffer's worth of every request.
    assert stats.bytes_copied - copied < connection_module.SHARED_READ_BYTES + 64 * 1024


def test_requests_held_while_paused_are_counted_as_copied_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first request's answer fills the socket's write buffer (the
    transport pauses writing), so the requests read with it are held, and
    so are bytes handed on while paused (as a TLS transport feeds what it
    decrypted): copied out of the shared buffer, and into buffers of their
    own once writing resumes. bytes_copied counts both copies."""
    frames = [_frame(1, 100), _frame(2, 300), _frame(3, 2000), _frame(4, 70_000)]
    stream = b"".join(frames)
    received: list[bytes] = []
    monkeypatch.setattr(Server, "state", property(lambda server: None))
    server = Server(engine=ENGINELESS)  # dispatch is replaced
    connection = connection_module.Connection(server)

    def dispatch(state: Any, header: Any, frame: Any, *_peer: Any) -> Dispatched:
        received.append(bytes(frame))
        if len(received) == 1:
            connection.pause_writing()  # as a transport whose buffer its answer filled
        return Dispatched(header, None, 0)

    monkeypatch.setattr(connection_module, "dispatch", dispatch)

    async def run() -> None:
        connection.connection_made(_Transport())  # type: ignore[arg-type]
        cut = len(frames[0]) + len(frames[1]) + 1000  # in the third request
        for piece in (stream[:cut], stream[cut:]):  # the second while paused
            view = connection.get_buffer(-1)
            view[: len(piece)] = piece
            del view
            connection.buffer_updated(len(piece))
        held = len(stream) - len(frames[0])
        assert received == [frames[0][4:]]
        assert server.stats.bytes_copied == len(frames[0]) - 4 + held
        connection.resume_writing()
        await asyncio.sleep(0)  # the held requests are read on the loop's next turn
        assert received == [frame[4:] for frame in frames]
        assert server.stats.bytes_copied == sum(len(frame) - 4 for frame in frames) + held
        connection.connection_lost(None)

    asyncio.run(run())
