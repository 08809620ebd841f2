"""A Produce response's accepted-partition entry, encoded from a template
(engine/server/produce_entries.py), is the bytes the schema's walk writes
for every version served; so is the whole answer to a request of one
accepted partition; and a response mixing it with refused entries decodes
as Kafka's schema says."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.protocol.apis import ApiKey, response_schema
from engine.protocol.codec import encode_response, with_throttle_time
from engine.protocol.encoder import Sink, item_encoder
from engine.protocol.frames import RequestHeader
from engine.server.produce_entries import accepted_answer, accepted_entry, accepted_fields
from tests.server.wire import decode_response

VERSIONS = range(3, 12)
int32 = st.integers(-(2**31), 2**31 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)


def _through_the_schema(version: int, fields: dict[str, Any]) -> bytes:
    write = item_encoder(
        response_schema(ApiKey.PRODUCE, version), "responses", "partition_responses"
    )
    sink = Sink()
    write(sink, fields)
    return b"".join(sink.finish())


@settings(max_examples=200, deadline=None)
@given(version=st.sampled_from(VERSIONS), values=st.tuples(int32, int64, int64, int64))
def test_an_accepted_entry_is_what_the_schema_writes(
    version: int, values: tuple[int, int, int, int]
) -> None:
    assert b"".join(accepted_entry(version, *values).parts) == _through_the_schema(
        version, accepted_fields(*values)
    )


@settings(max_examples=300, deadline=None)
@given(
    version=st.sampled_from(VERSIONS),
    correlation_id=int32,
    topic=st.text(min_size=1, max_size=300),
    # kio reads log_append_time as a time: -1 or a time since the epoch.
    values=st.tuples(int32, int64, st.integers(-1, 2**40), int64),
    throttle_ms=st.integers(1, 2**31 - 1),
)
def test_a_one_partition_answer_is_what_the_schema_writes(
    version: int,
    correlation_id: int,
    topic: str,
    values: tuple[int, int, int, int],
    throttle_ms: int,
) -> None:
    header = RequestHeader(ApiKey.PRODUCE, version, correlation_id, "client", 0)
    body = {
        "responses": [{"name": topic, "partition_responses": [accepted_fields(*values)]}],
        "throttle_time": 0,
    }
    answer = accepted_answer(header, topic, *values)
    assert answer is not None
    assert b"".join(answer.parts) == b"".join(encode_response(header, body))
    # a quota's throttle, written in once the answer is made
    throttled = b"".join(with_throttle_time(header, answer, throttle_ms))
    assert throttled == b"".join(encode_response(header, {**body, "throttle_time": throttle_ms}))
    got_id, response = decode_response(
        response_schema(ApiKey.PRODUCE, version), b"".join(answer.parts)[4:]
    )
    assert got_id == correlation_id
    (entry,) = response.responses[0].partition_responses
    assert (response.responses[0].name, entry.index, entry.error_code, entry.base_offset) == (
        topic,
        values[0],
        0,
        values[1],
    )


@settings(max_examples=50, deadline=None)
@given(
    version=st.sampled_from(VERSIONS),
    accepted=st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 2**40)), max_size=6),
)
def test_a_response_mixing_accepted_and_refused_entries_decodes_in_order(
    version: int, accepted: list[tuple[int, int]]
) -> None:
    entries: list[Any] = []
    expected: list[tuple[int, int, int]] = []
    for index, base_offset in accepted:
        entries.append(accepted_entry(version, index, base_offset, -1, 0))
        expected.append((index, 0, base_offset))
        refused = {
            "index": index + 5000,
            "error_code": 87,  # INVALID_RECORD
            "base_offset": -1,
            "log_append_time": -1,
            "log_start_offset": -1,
            "record_errors": [],
            "error_message": "refused",
        }
        entries.append(refused)
        expected.append((index + 5000, 87, -1))
    body = {"responses": [{"name": "t", "partition_responses": entries}], "throttle_time": 0}
    frame = b"".join(encode_response(RequestHeader(ApiKey.PRODUCE, version, 9, None, 0), body))
    correlation_id, response = decode_response(response_schema(ApiKey.PRODUCE, version), frame[4:])
    assert correlation_id == 9
    (topic,) = response.responses
    got = [(p.index, p.error_code, p.base_offset) for p in topic.partition_responses]
    assert got == expected
