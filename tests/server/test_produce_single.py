"""The one-partition Produce decoder (engine/protocol/produce_single.py)
decodes what the general decoder decodes, to the same values, and leaves
everything else to it: other shapes, tagged fields, and damaged requests,
which the general decoder refuses with its own message."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.protocol.apis import ApiKey, load_request_schema
from engine.protocol.codec import body_offset
from engine.protocol.errors import MalformedRequest
from engine.protocol.frames import parse_header
from engine.protocol.produce import ProduceRequest, decode_produce
from engine.protocol.produce_single import decode_single_partition
from engine.server.handlers.produce import _decode_produce
from tests.server.wire import build, encode_request

VERSIONS = range(3, 12)
names = st.text(min_size=1, max_size=20)


def _frame(version: int, transactional_id: str | None, topics: list[Any]) -> bytearray:
    request = build(
        load_request_schema(ApiKey.PRODUCE, version),
        transactional_id=transactional_id,
        acks=-1,
        timeout_ms=1234,
        topic_data=topics,
    )
    return bytearray(encode_request(request, 1)[4:])


def _plain(request: ProduceRequest) -> tuple[Any, ...]:
    return (
        request.transactional_id,
        request.acks,
        request.timeout_ms,
        [
            (
                t.name,
                [
                    (p.partition, None if p.records is None else bytes(p.records))
                    for p in t.partitions
                ],
            )
            for t in request.topics
        ],
    )


def _both(frame: bytearray, version: int) -> tuple[ProduceRequest | None, Any]:
    view = memoryview(frame)
    header = parse_header(view)
    offset = body_offset(header, view)
    single = decode_single_partition(view, offset, version)
    try:
        general: Any = decode_produce(view, offset, version)
    except MalformedRequest as error:
        general = error
    return single, general


one_partition = st.fixed_dictionaries(
    {
        "name": names,
        "partition_data": st.lists(
            st.fixed_dictionaries(
                {"index": st.integers(-(2**31), 2**31 - 1), "records": st.binary(max_size=300)}
            ),
            min_size=1,
            max_size=1,
        ),
    }
)


@settings(max_examples=200, deadline=None)
@given(
    version=st.sampled_from(VERSIONS),
    transactional_id=st.none() | names,
    topic=one_partition,
)
def test_a_one_partition_request_decodes_as_the_general_decoder_does(
    version: int, transactional_id: str | None, topic: dict[str, Any]
) -> None:
    single, general = _both(_frame(version, transactional_id, [topic]), version)
    assert single is not None
    assert _plain(single) == _plain(general)
    # The records are a slice of the frame, as the partition leader needs.
    assert isinstance(single.topics[0].partitions[0].records, memoryview)


@settings(max_examples=100, deadline=None)
@given(
    version=st.sampled_from(VERSIONS),
    topics=st.lists(one_partition, min_size=0, max_size=3).filter(lambda t: len(t) != 1)
    | st.lists(
        st.fixed_dictionaries(
            {
                "name": names,
                "partition_data": st.lists(
                    st.fixed_dictionaries({"index": st.integers(0, 9), "records": st.binary()}),
                    min_size=2,
                    max_size=3,
                ),
            }
        ),
        min_size=1,
        max_size=1,
    ),
)
def test_other_shapes_are_left_to_the_general_decoder(version: int, topics: list[Any]) -> None:
    single, _ = _both(_frame(version, None, topics), version)
    assert single is None


@settings(max_examples=300, deadline=None)
@given(
    version=st.sampled_from(VERSIONS),
    transactional_id=st.none() | names,
    topic=one_partition,
    damage=st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), max_size=3),
    cut=st.none() | st.integers(1, 400),
)
def test_a_damaged_request_is_decoded_alike_or_left_to_the_general_decoder(
    version: int,
    transactional_id: str | None,
    topic: dict[str, Any],
    damage: list[tuple[int, int]],
    cut: int | None,
) -> None:
    frame = _frame(version, transactional_id, [topic])
    header_size = body_offset(parse_header(frame), memoryview(frame))
    for position, value in damage:  # the body only: the header says which decoder runs
        if len(frame) > header_size:
            frame[header_size + position % (len(frame) - header_size)] = value
    if cut is not None:  # bytes cut off the end
        del frame[max(header_size, len(frame) - cut) :]
    single, general = _both(frame, version)
    if single is not None:
        assert not isinstance(general, MalformedRequest)
        assert _plain(single) == _plain(general)


def _uv(value: int, wide: bool) -> bytes:
    """A varint, in two bytes (a continuation byte then zero) if ``wide``:
    a valid encoding no client sends, which the inline one-byte reads must
    leave to _uvarint or to the general decoder."""
    return bytes([value | 0x80, 0]) if wide else bytes([value])


def _flexible_frame(wide: set[str], header_tags: bool, version: int) -> bytearray:
    records = b"r" * 40
    header = struct.pack(">hhih", ApiKey.PRODUCE, version, 7, 1) + b"c"
    header += b"\x01\x05\x02ab" if header_tags else b"\x00"  # one tagged field, or none
    body = _uv(4, "transactional_id" in wide) + b"tid"
    body += struct.pack(">hi", -1, 1234)
    body += _uv(2, "topics" in wide) + _uv(2, "name" in wide) + b"t"
    body += _uv(2, "partitions" in wide) + struct.pack(">i", 3)
    body += _uv(len(records) + 1, "records" in wide) + records
    return bytearray(header + body + b"\0\0\0")


@pytest.mark.parametrize("version", [9, 12])
@pytest.mark.parametrize("header_tags", [False, True])
@pytest.mark.parametrize(
    "wide", [set(), {"transactional_id"}, {"topics"}, {"name"}, {"partitions"}, {"records"}]
)
def test_a_wide_varint_or_a_header_tag_is_decoded_as_the_general_decoder_does(
    version: int, header_tags: bool, wide: set[str]
) -> None:
    """Through the handler's own decoder (which passes a header without
    tagged fields by one look at its zero byte)."""
    frame = _flexible_frame(wide, header_tags, version)
    view = memoryview(frame)
    header = parse_header(view)
    general = decode_produce(view, body_offset(header, view), version)
    assert _plain(_decode_produce(header, view)) == _plain(general)
    assert _plain(general) == ("tid", -1, 1234, [("t", [(3, b"r" * 40)])])
