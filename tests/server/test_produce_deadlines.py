"""A Produce waiting for its acknowledgement past its timeout_ms is
answered REQUEST_TIMED_OUT at its own deadline, as Kafka's DelayedProduce
answers it, on both of the handler's paths (the one-partition path from
v7, the general path below it), whatever the timeouts of the requests
waiting beside it; one acknowledged in time is answered as usual and
leaves nothing waiting. The server keeps these deadlines with one timer
(engine/server/request_deadlines.py), not a timer per request."""

from __future__ import annotations

import datetime
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kio.index import load_request_schema

import engine
import native
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from native import RecordSpec
from tests.engine.helpers_records import read_partition
from tests.s3stream.faults import FaultyStore
from tests.server.in_process import InProcessServer
from tests.server.remote_stuck import remote_stuck
from tests.server.wire import Wire, build, response_schema_for

BATCH = native.encode_batch([RecordSpec(1_700_000_000_000, None, b"kept", ())])


def _produce(topic: str, timeout_ms: int, version: int = 9) -> Any:
    return build(
        load_request_schema(ApiKey.PRODUCE, version),
        acks=-1,
        timeout=datetime.timedelta(milliseconds=timeout_ms),
        topic_data=[{"name": topic, "partition_data": [{"index": 0, "records": BATCH}]}],
    )


def _code(wire: Wire, request: Any, correlation_id: int) -> int:
    answered, body = wire.receive(response_schema_for(request))
    assert answered == correlation_id
    [topic] = body.responses
    [partition] = topic.partition_responses
    return int(partition.error_code)


def _answered_yet(wire: Wire) -> bool:
    wire.sock.setblocking(False)
    try:
        return bool(wire.sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False
    finally:
        wire.sock.setblocking(True)
        wire.sock.settimeout(wire.timeout)


@pytest.fixture
def stuck(tmp_path: Path) -> Iterator[tuple[InProcessServer, FaultyStore, engine.Engine]]:
    """A server whose ``remote`` topic can acknowledge nothing (its object
    store refuses every put) beside a ``local`` topic that can."""
    with remote_stuck(tmp_path, local=["local"]) as stuck_server:
        yield stuck_server


@pytest.mark.parametrize("version", [9, 5], ids=["one-partition path", "general path"])
def test_each_request_past_its_timeout_is_answered_timed_out_at_its_own_deadline(
    stuck: tuple[InProcessServer, FaultyStore, engine.Engine], version: int
) -> None:
    """A long timeout sent first, a short one after it (on another
    connection: answers come in request order on one): the short one is
    answered at its deadline, not held to the long one's, and neither
    before its own; an acknowledgement in time meanwhile is answered."""
    server, faulty, opened = stuck
    with Wire(server.bootstrap) as long, Wire(server.bootstrap) as short:
        # Each time read before its send: the server may take the request
        # (and start its timeout) before this thread runs again.
        long_request = _produce("remote", 4000, version)
        long_sent = time.monotonic()
        long_id = long.send(long_request)
        short_request = _produce("remote", 300, version)
        short_sent = time.monotonic()
        short_id = short.send(short_request)
        with Wire(server.bootstrap) as local:
            request = _produce("local", 60_000, version)
            assert _code(local, request, local.send(request)) == KafkaCode.NONE
        assert _code(short, short_request, short_id) == KafkaCode.REQUEST_TIMED_OUT
        assert time.monotonic() - short_sent >= 0.3
        assert not _answered_yet(long)  # its own deadline, not the short one's
        assert _code(long, long_request, long_id) == KafkaCode.REQUEST_TIMED_OUT
        assert time.monotonic() - long_sent >= 4.0
    assert server.on_loop(lambda: server.server.state.deadlines.waiting) == 0
    faulty.heal()
    assert opened.flush(30)
    # The appends answered REQUEST_TIMED_OUT are kept, as Kafka keeps them.
    assert [r.value for r in read_partition(opened, "remote", 0)] == [b"kept", b"kept"]


def test_a_request_answered_in_time_leaves_nothing_waiting(tmp_path: Path) -> None:
    """Requests acknowledged before their timeout are taken off the
    server's deadlines as they are answered, many timeouts among them."""
    with engine.open(tmp_path / "node") as opened:
        opened.create_topic("local", 1)
        with InProcessServer(opened) as server, Wire(server.bootstrap) as wire:
            for timeout_ms in [*range(1000, 1040), 30_000, 30_000]:
                request = _produce("local", timeout_ms)
                assert _code(wire, request, wire.send(request)) == KafkaCode.NONE
            state = server.server.state
            assert server.on_loop(lambda: state.deadlines.waiting) == 0


@pytest.mark.parametrize("version", [9, 5], ids=["one-partition path", "general path"])
def test_a_request_whose_connection_closed_leaves_nothing_waiting_once_appended(
    stuck: tuple[InProcessServer, FaultyStore, engine.Engine], version: int
) -> None:
    """A request waiting with Kafka's longest timeout (an int32 of ms, 24
    days) whose connection closes is taken off the server's deadlines when
    its append finishes, not held until that deadline."""
    server, faulty, opened = stuck
    state = server.server.state
    with Wire(server.bootstrap) as wire:
        wire.send(_produce("remote", 2**31 - 1, version))
        deadline = time.monotonic() + 10
        while server.on_loop(lambda: state.deadlines.waiting) != 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    faulty.heal()
    assert opened.flush(30)
    deadline = time.monotonic() + 10
    while server.on_loop(lambda: state.deadlines.waiting) != 0:
        assert time.monotonic() < deadline, "left waiting for its deadline"
        time.sleep(0.01)
