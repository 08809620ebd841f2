"""The Fetch request decoder of consumers without a session
(engine/protocol/fetch_request.py) decodes what kio's general decoder
decodes, to an equal value, for every version it takes; it leaves every
other version and shape to it, and a damaged or truncated request is either
decoded alike or left to the general decoder, which refuses it with its
own message. A count the request claims allocates nothing beyond the bytes
received."""

from __future__ import annotations

import struct
import tracemalloc
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine.protocol.apis import ApiKey, load_request_schema
from engine.protocol.codec import body_offset, decode_request
from engine.protocol.errors import MalformedRequest
from engine.protocol.fetch_request import FIRST_VERSION, LAST_VERSION, decode_fetch
from engine.protocol.frames import parse_header
from engine.server.shared_decoding import FETCH_BODIES
from tests.server.in_process import InProcessServer
from tests.server.wire import build, encode_request

ALL_VERSIONS = range(4, 18)
HAND_VERSIONS = range(FIRST_VERSION, LAST_VERSION + 1)
int32 = st.integers(-(2**31), 2**31 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)
partition = st.fixed_dictionaries(
    {
        "partition": int32,
        "current_leader_epoch": int32,
        "fetch_offset": int64,
        "last_fetched_epoch": int32,
        "log_start_offset": int64,
        "partition_max_bytes": int32,
    }
)
topic = st.fixed_dictionaries(
    {
        "topic": st.text(max_size=12),
        "topic_id": st.uuids() | st.just(uuid.UUID(int=0)),
        "partitions": st.lists(partition, max_size=6),
    }
)
forgotten = st.lists(
    st.fixed_dictionaries(
        {
            "topic": st.text(max_size=8),
            "topic_id": st.uuids(),
            "partitions": st.lists(int32, max_size=3),
        }
    ),
    max_size=2,
)


def _frame(version: int, values: dict[str, Any]) -> bytearray:
    request = build(load_request_schema(ApiKey.FETCH, version), **values)
    return bytearray(encode_request(request, 1)[4:])


def _both(frame: bytearray) -> tuple[Any, Any]:
    view = memoryview(frame)
    header = parse_header(view)
    hand = decode_fetch(view, body_offset(header, view), header.api_version)
    try:
        general: Any = decode_request(header, view)
    except MalformedRequest as error:
        general = error
    return hand, general


requests = st.fixed_dictionaries(
    {
        "replica_id": st.just(-1),
        "max_wait": int32.map(lambda ms: timedelta(milliseconds=ms)),
        "min_bytes": int32,
        "max_bytes": int32,
        "isolation_level": st.integers(-128, 127),
        "session_id": int32,
        "session_epoch": int32,
        "topics": st.lists(topic, max_size=4),
        "rack_id": st.text(max_size=10),
    }
)


@settings(max_examples=300, deadline=None)
@given(version=st.sampled_from(HAND_VERSIONS), values=requests)
def test_a_sessionless_request_decodes_to_kios_value(version: int, values: dict[str, Any]) -> None:
    hand, general = _both(_frame(version, {**values, "forgotten_topics_data": []}))
    assert hand is not None
    assert hand == general
    assert type(hand) is type(general)


@settings(max_examples=200, deadline=None)
@given(version=st.sampled_from(ALL_VERSIONS), values=requests, forgotten=forgotten)
def test_any_version_and_shape_decodes_alike_or_is_left_to_kio(
    version: int, values: dict[str, Any], forgotten: list[Any]
) -> None:
    hand, general = _both(_frame(version, {**values, "forgotten_topics_data": forgotten}))
    if version not in HAND_VERSIONS or (forgotten and version >= 7):
        assert hand is None
    else:
        assert hand == general


@settings(max_examples=400, deadline=None)
@given(
    version=st.sampled_from(HAND_VERSIONS),
    values=requests,
    damage=st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), max_size=3),
    cut=st.none() | st.integers(1, 600),
)
def test_a_damaged_request_is_decoded_alike_or_left_to_kio(
    version: int,
    values: dict[str, Any],
    damage: list[tuple[int, int]],
    cut: int | None,
) -> None:
    frame = _frame(version, {**values, "forgotten_topics_data": []})
    start = body_offset(parse_header(memoryview(frame)), memoryview(frame))
    for position, value in damage:  # the body only: the header says which decoder runs
        if len(frame) > start:
            frame[start + position % (len(frame) - start)] = value
    if cut is not None:
        del frame[max(start, len(frame) - cut) :]
    hand, general = _both(frame)
    if hand is not None:
        assert not isinstance(general, MalformedRequest)
        assert hand == general


def _claiming(version: int, count: int) -> bytearray:
    """A request of one topic whose partition count claims ``count`` in a
    body of a few dozen bytes."""
    frame = _frame(version, {"topics": [{"topic": "t", "partitions": []}], "rack_id": ""})
    start = body_offset(parse_header(bytes(frame)), memoryview(bytes(frame)))
    # The partitions' count is the last thing before the topic's end.
    if version < 12:
        at = frame.index(b"\x00\x01t", start) + 3
        frame[at : at + 4] = struct.pack(">i", count)
    else:
        marker = bytes(16) if version >= 13 else b"\x02t"
        at = frame.index(marker, start) + len(marker)
        frame[at : at + 1] = bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x07])  # 2**31 - 1 as a varint
    return frame


def test_a_claimed_count_allocates_nothing_beyond_the_bytes_received() -> None:
    for version in HAND_VERSIONS:
        frame = _claiming(version, 2**31 - 1)
        tracemalloc.start()
        try:
            hand, general = _both(frame)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert hand is None
        assert isinstance(general, MalformedRequest)
        assert peak < 64 * 1024


def test_the_fetch_bodies_take_the_hand_decoder_first() -> None:
    """A request of 10,000 partitions, over the cache's body size, through
    the Fetch handler's own decode: kio's value."""
    values = {
        "max_wait": timedelta(milliseconds=500),
        "topics": [
            {
                "topic": "many",
                "partitions": [
                    {"partition": p, "fetch_offset": p, "partition_max_bytes": 1 << 20}
                    for p in range(10_000)
                ],
            }
        ],
        "rack_id": "",
    }
    for version in (11, 16):
        frame = _frame(version, values)
        view = memoryview(frame)
        header = parse_header(view)
        assert FETCH_BODIES.decode(header, view) == decode_request(header, view)
        assert decode_fetch(view, body_offset(header, view), version) is not None


def test_librdkafkas_fetch_is_decoded_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """librdkafka's consumer (no fetch session) sends a Fetch this decoder
    takes: its every Fetch goes by the hand decoder, and its record comes
    back."""
    from confluent_kafka import Consumer, Producer

    decoded: list[tuple[int, bool]] = []
    first = FETCH_BODIES.first
    assert first is not None

    def counted(frame: memoryview, offset: int, version: int) -> Any:
        request = first(frame, offset, version)
        decoded.append((version, request is not None))
        return request

    monkeypatch.setattr(FETCH_BODIES, "first", counted)
    # The consumer is its group's one member: its first rebalance need not
    # wait Kafka's 3 s for more.
    config = engine.EngineConfig(groups=engine.GroupConfig(group_initial_rebalance_delay_ms=0))
    with engine.open(tmp_path / "data", config=config) as opened, InProcessServer(opened) as server:
        opened.create_topic("t", 3)
        producer = Producer({"bootstrap.servers": server.bootstrap})
        producer.produce("t", b"x", partition=1)
        assert producer.flush(30) == 0
        consumer = Consumer(
            {
                "bootstrap.servers": server.bootstrap,
                "group.id": "g",
                "auto.offset.reset": "earliest",
            }
        )
        try:
            consumer.subscribe(["t"])
            received = None
            for _ in range(60):
                message = consumer.poll(0.5)
                if message is not None and not message.error():
                    received = message.value()
                    break
        finally:
            consumer.close()
    assert received == b"x"
    assert decoded
    assert all(by_hand and FIRST_VERSION <= v <= LAST_VERSION for v, by_hand in decoded)
