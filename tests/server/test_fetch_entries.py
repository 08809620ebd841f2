"""A Fetch response's record-less partition entries and those carrying
records without aborted transactions, encoded from a template
(engine/server/fetch_entries.py), are the bytes the schema's walk writes,
for every version served and both isolation levels; and a response
mixing them with entries that carry records decodes as Kafka's schema says."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.protocol.apis import ApiKey, response_schema
from engine.protocol.codec import encode_response
from engine.protocol.encoder import EncodedItem, Sink, item_encoder
from engine.protocol.frames import RequestHeader
from engine.server.fetch_entries import entry_fields, record_less_packer, records_entry
from tests.server.wire import decode_response

VERSIONS = range(4, 18)
int32 = st.integers(-(2**31), 2**31 - 1)
int16 = st.integers(-(2**15), 2**15 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)


def _through_the_schema(version: int, fields: dict[str, object]) -> bytes:
    sink = Sink()
    item_encoder(response_schema(ApiKey.FETCH, version), "responses", "partitions")(sink, fields)
    return b"".join(sink.finish())


@settings(max_examples=200, deadline=None)
@given(
    version=st.sampled_from(VERSIONS),
    committed=st.booleans(),
    values=st.tuples(int32, int16, int64, int64, int64),
)
def test_a_record_less_entry_is_what_the_schema_writes(
    version: int, committed: bool, values: tuple[int, int, int, int, int]
) -> None:
    expected = _through_the_schema(version, entry_fields(committed, *values))
    assert record_less_packer(version, committed)(*values) == expected


@settings(max_examples=300, deadline=None)
@given(
    version=st.sampled_from(VERSIONS),
    committed=st.booleans(),
    values=st.tuples(int32, int16, int64, int64, int64),
    # Batches on both sides of the size past which the encoder attaches
    # by reference, and lengths of one- to three-byte varints.
    sizes=st.lists(st.sampled_from([1, 61, 126, 127, 128, 4095, 4096, 20_000]), max_size=4),
)
def test_an_entry_with_records_is_what_the_schema_writes(
    version: int, committed: bool, values: tuple[int, int, int, int, int], sizes: list[int]
) -> None:
    records = [memoryview(bytes([n % 251]) * size) for n, size in enumerate(sizes)]
    expected = _through_the_schema(version, entry_fields(committed, *values, records))
    entry = records_entry(version, committed, *values, records)
    assert b"".join(entry.parts) == expected
    # Large batches are attached by reference, as the schema's walk does.
    assert sum(isinstance(part, memoryview) for part in entry.parts) == sum(
        size >= 4096 for size in sizes
    )


@settings(max_examples=50, deadline=None)
@given(
    version=st.sampled_from(VERSIONS),
    committed=st.booleans(),
    quiet=st.lists(st.tuples(st.integers(0, 10_000), int64, int64), max_size=20),
    record_sizes=st.lists(st.integers(1, 5000), max_size=3),
)
def test_a_response_mixing_both_kinds_decodes_in_order(
    version: int,
    committed: bool,
    quiet: list[tuple[int, int, int]],
    record_sizes: list[int],
) -> None:
    entries: list[object] = []
    expected: list[tuple[int, int, int, bytes]] = []
    for index, (partition, high_watermark, log_start) in enumerate(quiet):
        entries.append(
            EncodedItem.single(
                record_less_packer(version, committed)(
                    partition, 0, high_watermark, high_watermark, log_start
                )
            )
        )
        expected.append((partition, high_watermark, log_start, b""))
        if index < len(record_sizes):  # entries with records between the others
            data = bytes([index]) * record_sizes[index]
            entries.append(entry_fields(committed, 100_000 + index, 0, 9, 9, 0, [data]))
            expected.append((100_000 + index, 9, 0, data))
    body = {
        "throttle_time": 0,
        "error_code": 0,
        "session_id": 0,
        "responses": [{"topic": "t", "topic_id": bytes(16), "partitions": entries}],
    }
    header = RequestHeader(ApiKey.FETCH, version, 42, None, 0)
    frame = b"".join(encode_response(header, body))
    correlation_id, response = decode_response(response_schema(ApiKey.FETCH, version), frame[4:])
    assert correlation_id == 42
    (topic,) = response.responses
    got = [
        (
            p.partition_index,
            p.high_watermark,
            getattr(p, "log_start_offset", -1),  # from v5
            bytes(p.records or b""),
        )
        for p in topic.partitions
    ]
    if version < 5:  # no log start offset before v5
        expected = [(p, hw, -1, data) for p, hw, _, data in expected]
    assert got == expected
    for p in topic.partitions:
        assert (p.aborted_transactions is None) == (not committed)
