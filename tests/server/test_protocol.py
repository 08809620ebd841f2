"""The protocol layer against kio, Kafka's message schemas made code: the
response encoder writes what kio's writer writes for every response the
server can send, the hand-written Produce decoder reads what kio's reader
reads (with record data left as writable slices of the frame), and header
and body parsing turn any truncation into MalformedRequest, never a stray
IndexError or struct.error. No server process: these are unit properties."""

from __future__ import annotations

import dataclasses
import datetime
import io
import itertools
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kio.serial import entity_reader, entity_writer

from engine.protocol.apis import (
    ApiKey,
    is_flexible,
    request_schema,
    response_header_is_flexible,
    response_schema,
)
from engine.protocol.codec import (
    DURATION_LIMIT_MS,
    Encoded,
    decode_request,
    encode_response,
    with_throttle_time,
)
from engine.protocol.encoder import encode
from engine.protocol.errors import MalformedRequest
from engine.protocol.frames import (
    Cursor,
    RequestHeader,
    parse_header,
    read_size,
    size_prefix,
    skip_tagged_fields,
)
from engine.protocol.produce import (
    PartitionData,
    ProduceRequest,
    TopicData,
    decode_produce,
)
from engine.server.handlers.registry import SUPPORTED_VERSIONS
from tests.server.wire import entities, header_bytes, serialize

RESPONSES = [
    pytest.param(int(key), version, id=f"{key.name.lower()}-v{version}")
    for key, (low, high) in sorted(SUPPORTED_VERSIONS.items())
    for version in range(low, high + 1)
]
PRODUCE_VERSIONS = range(
    SUPPORTED_VERSIONS[ApiKey.PRODUCE][0], SUPPORTED_VERSIONS[ApiKey.PRODUCE][1] + 1
)
OTHER_REQUESTS = [param for param in RESPONSES if param.values[0] != ApiKey.PRODUCE]

PROFILE_EXAMPLES = settings().max_examples


def share(divisor: int, floor: int) -> settings:
    """Each of many parametrized cases gets a share of the profile's examples."""
    return settings(max_examples=max(floor, PROFILE_EXAMPLES // divisor))


PER_SCHEMA = share(20, 10)


def kio_bytes(schema: type, entity: Any) -> bytes:
    out = io.BytesIO()
    entity_writer(schema)(out, entity)
    return out.getvalue()


def encoded(schema: type, value: Any) -> bytes:
    return b"".join(bytes(part) for part in encode(schema, value))


def as_dicts(value: Any) -> Any:
    """An entity as the plain dicts and lists handlers return."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_dicts(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [as_dicts(item) for item in value]
    return value


def without_defaults(value: Any) -> Any:
    """``as_dicts``, leaving out every field whose value is its schema default."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: without_defaults(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.default is dataclasses.MISSING or getattr(value, f.name) != f.default
        }
    if isinstance(value, tuple):
        return [without_defaults(item) for item in value]
    return value


def split_records(value: Any, draw: Callable[[st.SearchStrategy[Any]], Any]) -> Any:
    """``as_dicts``, with each records field cut into chunks (bytes and
    memoryviews) at drawn points."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if f.metadata.get("kafka_type") == "records" and item is not None:
                cuts = sorted(draw(st.lists(st.integers(0, len(item)), max_size=4)))
                bounds = [0, *cuts, len(item)]
                out[f.name] = [
                    memoryview(item)[start:end] if index % 2 else bytes(item[start:end])
                    for index, (start, end) in enumerate(itertools.pairwise(bounds))
                ]
            else:
                out[f.name] = split_records(item, draw)
        return out
    if isinstance(value, tuple):
        return [split_records(item, draw) for item in value]
    return value


# -- the response encoder ----------------------------------------------------------------


@pytest.mark.parametrize(("api_key", "version"), RESPONSES)
@PER_SCHEMA
@given(data=st.data())
def test_encoder_writes_entities_as_kio_does(
    api_key: int, version: int, data: st.DataObject
) -> None:
    schema = response_schema(api_key, version)
    entity = data.draw(entities(schema))
    assert encoded(schema, entity) == kio_bytes(schema, entity)


@pytest.mark.parametrize(("api_key", "version"), RESPONSES)
@PER_SCHEMA
@given(data=st.data())
def test_encoder_writes_dicts_as_the_entities_they_mirror(
    api_key: int, version: int, data: st.DataObject
) -> None:
    schema = response_schema(api_key, version)
    entity = data.draw(entities(schema))
    expected = kio_bytes(schema, entity)
    assert encoded(schema, as_dicts(entity)) == expected
    assert encoded(schema, without_defaults(entity)) == expected


FETCH_RESPONSES = [param for param in RESPONSES if param.values[0] == ApiKey.FETCH]


@pytest.mark.parametrize(("api_key", "version"), FETCH_RESPONSES)
@PER_SCHEMA
@given(data=st.data())
def test_records_in_chunks_encode_as_the_joined_bytes(
    api_key: int, version: int, data: st.DataObject
) -> None:
    schema = response_schema(api_key, version)
    entity = data.draw(entities(schema))
    assert encoded(schema, split_records(entity, data.draw)) == kio_bytes(schema, entity)


def test_large_records_are_attached_by_reference() -> None:
    schema = response_schema(ApiKey.FETCH, 12)
    stored = memoryview(bytearray(b"r" * 10_000))
    body = {
        "responses": [{"topic": "t", "partitions": [{"partition_index": 0, "records": [stored]}]}]
    }
    parts = encode(schema, body)
    assert any(part is stored for part in parts)


# -- the Produce decoder ---------------------------------------------------------------


def expected_produce(request: Any) -> ProduceRequest:
    return ProduceRequest(
        request.transactional_id,
        request.acks,
        round(request.timeout.total_seconds() * 1000),
        [
            TopicData(
                topic.name,
                [
                    PartitionData(
                        partition.index,
                        None if partition.records is None else memoryview(partition.records),
                    )
                    for partition in topic.partition_data
                ],
            )
            for topic in request.topic_data
        ],
    )


def record_slices(request: ProduceRequest) -> list[memoryview]:
    return [
        p.records for topic in request.topics for p in topic.partitions if p.records is not None
    ]


@pytest.mark.parametrize("version", PRODUCE_VERSIONS)
@share(4, 20)
@given(data=st.data(), prefix=st.binary(max_size=8), writable=st.booleans())
def test_produce_decoder_agrees_with_kio(
    version: int, data: st.DataObject, prefix: bytes, writable: bool
) -> None:
    schema = request_schema(ApiKey.PRODUCE, version)
    body = serialize(data.draw(entities(schema)))
    frame = bytearray(prefix + body) if writable else prefix + body
    decoded = decode_produce(memoryview(frame), len(prefix), version)
    by_kio: Any
    by_kio, size = entity_reader(schema)(body, 0)
    assert size == len(body)
    assert decoded == expected_produce(by_kio)
    for records in record_slices(decoded):
        assert records.obj is frame
        assert records.readonly is not writable


@pytest.mark.parametrize("version", PRODUCE_VERSIONS)
@share(20, 10)
@given(data=st.data())
def test_produce_record_slices_write_through_to_the_frame(
    version: int, data: st.DataObject
) -> None:
    schema = request_schema(ApiKey.PRODUCE, version)
    request = data.draw(entities(schema))
    frame = bytearray(serialize(request))
    decoded = decode_produce(memoryview(frame), 0, version)
    for records in record_slices(decoded):
        if records:
            records[0] ^= 0xFF
    rewritten = decode_produce(memoryview(bytes(frame)), 0, version)
    assert [bytes(r) for r in record_slices(rewritten)] == [
        bytes(r) for r in record_slices(decoded)
    ]


@pytest.mark.parametrize("version", [v for v in PRODUCE_VERSIONS if is_flexible(0, v)])
@share(20, 10)
@given(
    data=st.data(),
    tags=st.lists(st.tuples(st.integers(0, 2**20), st.binary(max_size=20)), max_size=4),
)
def test_produce_decoder_skips_unknown_tagged_fields(
    version: int, data: st.DataObject, tags: list[tuple[int, bytes]]
) -> None:
    schema = request_schema(ApiKey.PRODUCE, version)
    request = data.draw(entities(schema))
    body = serialize(request)
    assert body[-1] == 0  # the request's own (empty) tagged-field section
    section = bytearray(_uvarint(len(tags)))
    for tag, value in tags:
        section += _uvarint(tag) + _uvarint(len(value)) + value
    decoded = decode_produce(memoryview(body[:-1] + section), 0, version)
    assert decoded == expected_produce(request)


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# -- truncation and garbage ----------------------------------------------------------------


@st.composite
def headers(draw: st.DrawFn) -> tuple[bytes, int, int, int, str | None, bool]:
    api_key = draw(st.integers(-(2**15), 2**15 - 1))
    version = draw(st.integers(-(2**15), 2**15 - 1))
    correlation_id = draw(st.integers(-(2**31), 2**31 - 1))
    client_id = draw(st.none() | st.text(max_size=20))
    flexible = draw(st.booleans())
    raw = header_bytes(api_key, version, correlation_id, flexible=flexible, client_id=client_id)
    return raw, api_key, version, correlation_id, client_id, flexible


@given(header=headers(), body=st.binary(max_size=16))
def test_parse_header_reads_what_kio_writes(
    header: tuple[bytes, int, int, int, str | None, bool], body: bytes
) -> None:
    raw, api_key, version, correlation_id, client_id, flexible = header
    frame = memoryview(raw + body)
    parsed = parse_header(frame)
    assert (parsed.api_key, parsed.api_version, parsed.correlation_id, parsed.client_id) == (
        api_key,
        version,
        correlation_id,
        client_id,
    )
    end = skip_tagged_fields(frame, parsed.body_offset) if flexible else parsed.body_offset
    assert end == len(raw)


@given(header=headers(), data=st.data())
def test_truncated_headers_are_malformed(
    header: tuple[bytes, int, int, int, str | None, bool], data: st.DataObject
) -> None:
    raw, *_, flexible = header
    cut = data.draw(st.integers(0, len(raw) - 1))
    prefix = memoryview(raw[:cut])
    with pytest.raises(MalformedRequest):
        parsed = parse_header(prefix)
        assert flexible  # only the tagged-field section can be what is missing
        skip_tagged_fields(prefix, parsed.body_offset)


@given(frame=st.binary(max_size=64))
def test_parse_header_of_garbage_is_a_header_or_malformed(frame: bytes) -> None:
    try:
        parsed = parse_header(memoryview(frame))
    except MalformedRequest:
        return
    assert 10 <= parsed.body_offset <= len(frame)


_CURSOR_OPS = st.sampled_from(
    ["int16", "int32", "int64", "uvarint", "length", "string", "uuid", "skip", "slice"]
)


@given(data=st.binary(max_size=64), ops=st.lists(_CURSOR_OPS, max_size=12), flexible=st.booleans())
def test_cursor_fails_only_with_malformed_request(
    data: bytes, ops: list[str], flexible: bool
) -> None:
    cursor = Cursor(memoryview(data))
    try:
        for op in ops:
            before = cursor.offset
            if op == "length":
                cursor.length(flexible)
            elif op == "string":
                cursor.string(flexible)
            elif op == "skip":
                cursor.skip_tagged_fields()
            elif op == "slice":
                cursor.slice(cursor.length(flexible))
            else:
                getattr(cursor, op)()
            assert before <= cursor.offset <= len(data)
    except MalformedRequest:
        pass


@pytest.mark.parametrize("version", PRODUCE_VERSIONS)
@share(20, 10)
@given(data=st.data())
def test_truncated_produce_bodies_are_malformed(version: int, data: st.DataObject) -> None:
    body = serialize(data.draw(entities(request_schema(ApiKey.PRODUCE, version))))
    cut = data.draw(st.integers(0, len(body) - 1))
    with pytest.raises(MalformedRequest):
        decode_produce(memoryview(bytearray(body[:cut])), 0, version)


@pytest.mark.parametrize("version", PRODUCE_VERSIONS)
@share(20, 10)
@given(body=st.binary(max_size=128))
def test_produce_decoder_on_garbage_decodes_or_is_malformed(version: int, body: bytes) -> None:
    try:
        decoded = decode_produce(memoryview(bytearray(body)), 0, version)
    except MalformedRequest:
        return
    assert isinstance(decoded, ProduceRequest)


@pytest.mark.parametrize(("api_key", "version"), OTHER_REQUESTS)
@share(20, 5)
@given(data=st.data())
def test_truncated_request_bodies_are_malformed(
    api_key: int, version: int, data: st.DataObject
) -> None:
    request = data.draw(entities(request_schema(api_key, version)))
    head = header_bytes(api_key, version, 7, flexible=is_flexible(api_key, version))
    body = serialize(request)
    whole = memoryview(bytearray(head + body))
    assert decode_request(parse_header(whole), whole) == _round_trip(request)
    if not body:
        return  # nothing to cut: ApiVersions v0-v2 have no fields
    cut = data.draw(st.integers(0, len(body) - 1))
    truncated = memoryview(bytearray(head + body[:cut]))
    with pytest.raises(MalformedRequest):
        decode_request(parse_header(truncated), truncated)


@pytest.mark.parametrize(
    ("api_key", "version", "body"),
    [
        # OffsetForLeaderEpoch v4: one topic "t" whose partitions array is null.
        pytest.param(23, 4, struct.pack(">i", -1) + b"\x02\x02t\x00\x00\x00", id="array"),
        # Metadata v4: one topic whose name (a non-nullable string) is null.
        pytest.param(3, 4, struct.pack(">ih", 1, -1) + b"\x01", id="string"),
        # Fetch v4: a topic whose name (non-nullable) is null, then no partitions.
        pytest.param(
            1, 4, struct.pack(">iiiib", -1, 0, 0, 0, 0) + struct.pack(">ihi", 1, -1, 0), id="fetch"
        ),
    ],
)
def test_null_in_a_non_nullable_field_is_malformed(api_key: int, version: int, body: bytes) -> None:
    """As in Kafka's own readers; kio would hand the handler a None."""
    head = header_bytes(api_key, version, 7, flexible=is_flexible(api_key, version))
    frame = memoryview(bytearray(head + body))
    with pytest.raises(MalformedRequest, match="non-nullable"):
        decode_request(parse_header(frame), frame)


@given(period_ms=st.integers(-(2**63), 2**63 - 1))
@settings(max_examples=60)
def test_any_int64_duration_decodes_within_the_limit_its_sign_kept(period_ms: int) -> None:
    """Kafka reads any int64 in a duration field (RenewDelegationToken's
    renew_period_ms here); kio reads none beyond some 292,000 years."""
    head = header_bytes(39, 2, 7, flexible=True)
    body = b"\x02\x2a" + struct.pack(">q", period_ms) + b"\x00"  # hmac b"*", the period, no tags
    frame = memoryview(bytearray(head + body))
    decoded = decode_request(parse_header(frame), frame)
    expected = max(-DURATION_LIMIT_MS, min(DURATION_LIMIT_MS, period_ms))
    assert decoded.renew_period == datetime.timedelta(milliseconds=expected)
    assert bytes(decoded.hmac) == b"*"
    assert bytes(frame[len(head) + 2 : len(head) + 10]) == struct.pack(">q", period_ms)


def _round_trip(request: Any) -> Any:
    """``request`` as kio reads it back (kio's reader is the reference)."""
    schema = type(request)
    body = serialize(request)
    decoded, _ = entity_reader(schema)(body, 0)
    return decoded


@given(size=st.integers(-(2**31), 2**31 - 1))
def test_size_prefix_round_trips(size: int) -> None:
    assert read_size(size_prefix(size)) == size
    assert size_prefix(size) == struct.pack(">i", size)


@pytest.mark.parametrize(
    ("api_key", "api_version", "body", "expected"),
    [
        (ApiKey.ALTER_CLIENT_QUOTAS, 1, {"throttle_time": 0, "entries": []}, 1000),  # flexible
        (ApiKey.ALTER_CLIENT_QUOTAS, 0, {"throttle_time": 0, "entries": []}, 1000),
        (ApiKey.CREATE_TOPICS, 7, {"throttle_time": 5000, "topics": []}, 5000),  # its own kept
        (ApiKey.CREATE_TOPICS, 2, {"throttle_time": 300, "topics": []}, 1000),
        (ApiKey.METADATA, 0, {"brokers": [], "topics": []}, None),  # no such field: as it was
    ],
)
def test_an_answer_encoded_ahead_takes_the_throttle_time_found_after(
    api_key: int, api_version: int, body: dict[str, Any], expected: int | None
) -> None:
    """An answer made on the admin thread is encoded before the server's
    quotas decide its throttle; the throttle is written into its
    throttle_time_ms, the first field of every body that has one."""
    header = RequestHeader(api_key, api_version, 77, "client", 0)
    encoded = Encoded([b"".join(encode_response(header, body))])
    frame = b"".join(with_throttle_time(header, encoded, 1000))
    if expected is None:
        assert frame == b"".join(encoded.parts)
        return
    body_at = 8 + (1 if response_header_is_flexible(api_key, api_version) else 0)
    answer, _ = entity_reader(response_schema(api_key, api_version))(memoryview(frame)[body_at:], 0)
    assert answer.throttle_time.total_seconds() * 1000 == expected
