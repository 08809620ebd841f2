"""A large answer on a plain socket is offered to the kernel with the GIL
released, and the transport gets what the kernel did not take: the bytes a
client reads are the same either way, whole and in order, under partial
writes, a slow reader, a reset and interleaved answers; a TLS connection
keeps writing through its transport."""

from __future__ import annotations

import datetime
import errno
import socket
import ssl
import struct
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import uvloop
from confluent_kafka import Consumer, TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
import native
from engine.protocol.apis import ApiKey, load_request_schema
from engine.protocol.codec import Parts
from engine.server import direct_sends
from engine.server.direct_sends import IOV_MAX, DirectSender
from engine.server.sliced_writes import SLICE_BYTES
from tests.server.certificates import Tls
from tests.server.conftest import quiet_librdkafka
from tests.server.in_process import InProcessServer
from tests.server.wire import build, encode_request

TIMEOUT = 30.0
VALUES = [bytes([i]) * (SLICE_BYTES // 2 + 1000) for i in range(7)]
"""3.5 MiB in one partition: a Fetch answer of four slices."""
SMALL_RCVBUF = 4096
_SIZE = struct.Struct(">i")


# -- the sender alone, against a socket that takes what a test says ----------------------


class _Transport:
    def __init__(self, holds: int = 0, closing: bool = False) -> None:
        self.holds = holds
        self.closing = closing
        self.writes: list[bytes] = []

    def get_write_buffer_size(self) -> int:
        return self.holds

    def is_closing(self) -> bool:
        return self.closing

    def writelines(self, parts: Parts) -> None:
        assert parts, "an empty write handed on"
        self.writes.append(b"".join(bytes(part) for part in parts))
        self.holds += len(self.writes[-1])


class _Stats:
    bytes_sent_direct = 0


class _Socket:
    """Takes, at each call, the next count its script gives (None: EAGAIN;
    an exception: raised)."""

    def __init__(self, script: Sequence[int | OSError | None]) -> None:
        self.script = list(script)
        self.received = bytearray()
        self.calls = 0

    def writev(self, fd: int, buffers: Sequence[Any]) -> int:
        assert fd == 7
        assert len(buffers) <= IOV_MAX
        self.calls += 1
        step = self.script.pop(0) if self.script else None
        if step is None:
            raise BlockingIOError(errno.EAGAIN, "would block")
        if isinstance(step, OSError):
            raise step
        offered = b"".join(bytes(buffer) for buffer in buffers)
        taken = min(step, len(offered))
        self.received += offered[:taken]
        return taken


_PARTS = st.lists(
    st.one_of(
        st.binary(max_size=300).map(bytes),
        st.binary(max_size=300).map(bytearray),
        st.binary(max_size=300).map(memoryview),
    ),
    min_size=1,
    max_size=12,
)
_STEPS = st.lists(
    st.one_of(
        st.integers(0, 800),
        st.none(),
        st.sampled_from([ConnectionResetError(errno.ECONNRESET, "reset"), BrokenPipeError()]),
    ),
    max_size=6,
)


@settings(max_examples=400, deadline=None)
@given(
    parts=_PARTS, steps=_STEPS, holds=st.sampled_from([0, 0, 0, 5]), min_bytes=st.integers(0, 600)
)
def test_every_split_leaves_the_bytes_whole_and_in_order(
    parts: list[Any], steps: list[Any], holds: int, min_bytes: int
) -> None:
    fake, transport, stats = _Socket(steps), _Transport(holds), _Stats()
    sender = DirectSender(7, transport, stats, writev=fake.writev, min_bytes=min_bytes)
    expected = b"".join(bytes(part) for part in parts)
    sender.writelines(parts)
    assert bytes(fake.received) + b"".join(transport.writes) == expected
    assert stats.bytes_sent_direct == len(fake.received)
    if holds or len(expected) < min_bytes:  # never around what the transport holds
        assert fake.calls == 0
    if expected and fake.received == expected:  # all taken: nothing handed on
        assert not transport.writes


def test_a_write_of_more_buffers_than_one_writev_takes_goes_in_windows() -> None:
    parts: Parts = [bytes([i % 256]) * 3 for i in range(IOV_MAX * 2 + 5)]
    fake, transport, stats = _Socket([10**9] * 3), _Transport(), _Stats()
    DirectSender(7, transport, stats, writev=fake.writev, min_bytes=0).writelines(parts)
    assert fake.calls == 3
    assert bytes(fake.received) == b"".join(parts) and not transport.writes


def test_a_refused_send_gives_the_transport_everything_and_a_closing_one_is_not_tried() -> None:
    reset = _Socket([ConnectionResetError(errno.ECONNRESET, "reset")])
    transport, stats = _Transport(), _Stats()
    DirectSender(7, transport, stats, writev=reset.writev, min_bytes=0).writelines([b"ab", b"cd"])
    assert transport.writes == [b"abcd"] and stats.bytes_sent_direct == 0  # it meets the reset
    closing = _Socket([100])
    DirectSender(7, _Transport(closing=True), stats, writev=closing.writev, min_bytes=0).writelines(
        [b"abcd"]
    )
    assert closing.calls == 0


# -- a real server and real sockets ----------------------------------------------------


@pytest.fixture(name="opened")
def _opened(tmp_path: Path) -> Iterator[engine.Engine]:
    with engine.open(tmp_path / "data", config=engine.EngineConfig.small()) as opened:
        opened.create_topic("t", 1, {"max.message.bytes": str(SLICE_BYTES)})
        with opened.producer() as producer:
            for value in VALUES:
                producer.send("t", value, partition=0).result(TIMEOUT)
        yield opened


@pytest.fixture(name="served")
def _served(opened: engine.Engine) -> Iterator[InProcessServer]:
    server = InProcessServer(opened, loop=uvloop.new_event_loop())  # what `tidelog serve` runs
    try:
        yield server
    finally:
        server.stop()


def _fetch(max_bytes: int = 64 << 20) -> Any:
    return build(
        load_request_schema(ApiKey.FETCH, 11),
        replica_id=-1,
        max_wait=datetime.timedelta(0),
        min_bytes=0,
        max_bytes=max_bytes,
        isolation_level=0,
        session_epoch=-1,
        topics=[
            {
                "topic": "t",
                "partitions": [
                    {"partition": 0, "fetch_offset": 0, "partition_max_bytes": max_bytes}
                ],
            }
        ],
    )


def _api_versions() -> Any:
    return build(load_request_schema(ApiKey.API_VERSIONS, 3))


def _connect(server: InProcessServer, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # before connecting: the window is agreed then
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", server.server.port))
    return sock


def _read_frames(sock: socket.socket, count: int, pause: float = 0.0) -> list[bytes]:
    """``count`` response frames (without their size), read ``pause``
    seconds apart a few kilobytes at a time when ``pause`` is given."""
    buffer = bytearray()
    frames: list[bytes] = []
    while len(frames) < count:
        while len(buffer) >= 4 and len(buffer) >= 4 + _SIZE.unpack_from(buffer)[0]:
            size = _SIZE.unpack_from(buffer)[0]
            frames.append(bytes(buffer[4 : 4 + size]))
            del buffer[: 4 + size]
        if len(frames) == count:
            break
        chunk = sock.recv(8192 if pause else 1 << 20)
        assert chunk, "closed by the server"
        buffer += chunk
        if pause:
            time.sleep(pause)
    return frames


def _values(frame: bytes) -> list[bytes]:
    from tests.server.wire import decode_response, response_schema_for

    _, answer = decode_response(response_schema_for(_fetch()), frame)
    (topic,) = answer.responses
    (partition,) = topic.partitions
    assert partition.error_code == 0
    return [record.value for record in native.decode_records(partition.records)]


def _fetch_once(server: InProcessServer, rcvbuf: int | None, pause: float) -> bytes:
    with _connect(server, rcvbuf) as sock:
        sock.sendall(encode_request(_fetch(), 1))
        (frame,) = _read_frames(sock, 1, pause)
    return frame


def test_a_slow_reader_gets_the_same_bytes_through_either_path(
    served: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    stats = served.server.stats
    direct = _fetch_once(served, SMALL_RCVBUF, pause=0.0005)
    sent_direct = stats.bytes_sent_direct
    # the kernel took part of it straight, the transport the rest
    assert 0 < sent_direct < len(direct)
    monkeypatch.setattr(direct_sends, "DIRECT_SEND_MIN", 1 << 40)  # the transport alone
    through_transport = _fetch_once(served, SMALL_RCVBUF, pause=0.0005)
    assert stats.bytes_sent_direct == sent_direct
    assert direct == through_transport
    assert _values(direct) == VALUES


def test_a_reset_mid_answer_closes_that_connection_only(served: InProcessServer) -> None:
    expected = _fetch_once(served, None, pause=0.0)
    sent_before = served.server.stats.bytes_sent_direct
    assert sent_before > 0
    for _ in range(3):
        sock = _connect(served, SMALL_RCVBUF)
        sock.sendall(encode_request(_fetch(), 1))
        assert sock.recv(4096)  # the answer has begun
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # a reset, the answer unread
    served.until_on_loop(lambda: not served.server.connections)
    assert _fetch_once(served, SMALL_RCVBUF, pause=0.0) == expected  # still serving


def test_small_and_large_answers_on_one_connection_keep_their_order(
    served: InProcessServer,
) -> None:
    requests = [_fetch(), _api_versions(), _api_versions(), _fetch(), _fetch(), _api_versions()]
    with _connect(served, SMALL_RCVBUF) as sock:
        sock.sendall(b"".join(encode_request(r, i + 1) for i, r in enumerate(requests)))
        frames = _read_frames(sock, len(requests), pause=0.0002)
    assert [_SIZE.unpack_from(frame)[0] for frame in frames] == list(range(1, len(requests) + 1))
    fetches = [frames[i][4:] for i in (0, 3, 4)]  # without the correlation id
    assert fetches[0] == fetches[1] == fetches[2]
    assert _values(frames[0]) == VALUES
    assert all(len(frames[i]) < SLICE_BYTES for i in (1, 2, 5))
    assert served.server.stats.bytes_sent_direct > 0


def test_a_consumer_with_a_small_receive_buffer_reads_every_record(
    served: InProcessServer,
) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": served.bootstrap,
            "group.id": "direct-sends",
            "socket.receive.buffer.bytes": SMALL_RCVBUF,
            "fetch.max.bytes": 64 << 20,
            "max.partition.fetch.bytes": 64 << 20,
            "enable.auto.commit": False,
            **quiet_librdkafka(),
        }
    )
    try:
        consumer.assign([TopicPartition("t", 0, 0)])
        values: list[bytes] = []
        deadline = time.monotonic() + TIMEOUT
        while len(values) < len(VALUES) and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None:
                assert message.error() is None, message.error()
                values.append(message.value())
    finally:
        consumer.close()
    assert values == VALUES
    assert served.server.stats.bytes_sent_direct > 0


def test_a_tls_connection_writes_through_its_transport(opened: engine.Engine, tls: Tls) -> None:
    server = InProcessServer(opened, config=tls.mutual_tls(), loop=uvloop.new_event_loop())
    try:
        context = ssl.create_default_context(cafile=str(tls.authority.ca))
        context.load_cert_chain(str(tls.alice.certificate), str(tls.alice.key))
        plain = socket.create_connection(("127.0.0.1", server.server.ports["SSL"]), TIMEOUT)
        with context.wrap_socket(plain, server_hostname="localhost") as sock:
            sock.sendall(encode_request(_fetch(), 1))
            (frame,) = _read_frames(sock, 1)
    finally:
        server.stop()
    assert _values(frame) == VALUES
    assert server.server.stats.bytes_sent_direct == 0
