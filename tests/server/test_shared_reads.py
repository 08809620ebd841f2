"""Consumers fetching the same data share one read and one encoding of it
(fan-out), and never get a shared read the partition has since outgrown:
not after it grew, its log start moved, or its topic was created again."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
import native
from engine.protocol.apis import ApiKey, response_schema
from engine.protocol.encoder import EncodedItem, encode, item_encoder
from engine.server.shared_decoding import FETCH_BODIES
from engine.server.shared_reads import Marks, ReadKey, SharedReads
from tests.server.in_process import InProcessServer
from tests.server.store_reads import count_store_reads
from tests.server.wire import Wire, fetch_each

CONSUMERS = 5


@dataclasses.dataclass
class Served:
    engine: engine.Engine
    bootstrap: str
    server: InProcessServer
    store_reads: list[int]


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    with engine.open(tmp_path / "data", config=engine.EngineConfig.small()) as opened:
        opened.create_topic("t", 1)
        _send(opened, [b"a", b"b", b"c"])
        reads = count_store_reads(monkeypatch, opened.store)
        server = InProcessServer(opened)
        try:
            yield Served(opened, server.bootstrap, server, reads)
        finally:
            server.stop()


def _send(opened: engine.Engine, values: list[bytes]) -> None:
    with opened.producer() as producer:
        for value in values:
            producer.send("t", value, partition=0).result(30)


def _fetch(offset: int, version: int = 11) -> Any:
    return fetch_each(version, [("t", 0, offset)])


def _answer(wire: Wire, offset: int, version: int = 11) -> Any:
    (topic,) = wire.request(_fetch(offset, version)).responses
    (partition,) = topic.partitions
    return partition


def _values(records: bytes) -> list[bytes | None]:
    """The record values of a Fetch answer's record batches."""
    return [record.value for record in native.decode_records(records)]


@pytest.mark.parametrize("version", [11, 12])
def test_consumers_fetching_the_same_data_share_one_read(served: Served, version: int) -> None:
    wires = [Wire(served.bootstrap) for _ in range(CONSUMERS)]
    decoded_before = FETCH_BODIES.hits
    try:
        answers = [_answer(wire, 0, version) for wire in wires]
    finally:
        for wire in wires:
            wire.close()
    assert served.store_reads == [0]  # one read of the store for every consumer
    assert served.server.server.state.shared_reads.hits == CONSUMERS - 1
    assert FETCH_BODIES.hits - decoded_before >= CONSUMERS - 1  # one body, decoded once
    first = answers[0]
    assert first.error_code == 0 and first.high_watermark == 3 and first.records
    assert all(answer == first for answer in answers)
    assert _values(first.records) == [b"a", b"b", b"c"]
    leader = served.engine.partition("t", 0)
    assert leader.bytes_out == CONSUMERS * len(first.records)  # each answer counted


def test_a_read_is_not_shared_once_the_partition_grew(served: Served) -> None:
    with Wire(served.bootstrap) as wire:
        before = _answer(wire, 0)
        _send(served.engine, [b"d"])
        after = _answer(wire, 0)
    assert served.store_reads == [0, 0]
    assert _values(before.records) == [b"a", b"b", b"c"]
    assert _values(after.records) == [b"a", b"b", b"c", b"d"]
    assert after.high_watermark == 4


def test_a_read_is_not_shared_once_the_log_start_moved(served: Served) -> None:
    with Wire(served.bootstrap) as wire:
        _answer(wire, 0)
        served.engine.delete_records("t", 0, 2)
        moved = _answer(wire, 0)
    assert moved.error_code == 1  # OFFSET_OUT_OF_RANGE, as a read of its own finds
    assert moved.log_start_offset == 2


def test_a_topic_created_again_is_read_again(served: Served) -> None:
    with Wire(served.bootstrap) as wire:
        _answer(wire, 0)
        served.engine.delete_topic("t")
        served.engine.create_topic("t", 1)
        _send(served.engine, [b"x", b"y", b"z"])
        again = _answer(wire, 0)
    assert again.high_watermark == 3  # the same marks as the old topic's
    assert _values(again.records) == [b"x", b"y", b"z"]
    assert served.store_reads == [0, 0]


# -- the cache's bounds ----------------------------------------------------------------


class _Leader:
    """A partition, as SharedReads tells one from another: by identity."""


def _key(offset: int) -> ReadKey:
    return ReadKey("t", 0, offset, 1 << 20, False)


def test_the_shared_reads_hold_at_most_their_bytes_and_entries() -> None:
    leader: Any = _Leader()
    marks = Marks(10, 0, 10)
    reads: SharedReads[str] = SharedReads(max_entries=3, max_bytes=400, max_read_bytes=100)
    for offset in range(5):
        reads.put(_key(offset), leader, marks, f"read {offset}", 90)
    assert len(reads) == 3 and reads.size == 270  # the oldest two dropped
    assert reads.get(_key(0), leader, marks) is None
    kept = reads.get(_key(4), leader, marks)
    assert kept is not None and kept.read == "read 4"
    assert reads.put(_key(9), leader, marks, "a replay's", 101) is None  # too big to keep
    assert reads.get(_key(9), leader, marks) is None
    reads.put(_key(5), leader, marks, "read 5", 100)
    reads.put(_key(6), leader, marks, "read 6", 100)
    assert reads.size <= 400
    assert reads.get(_key(6), _Leader(), marks) is None  # another partition object
    reads.put(_key(6), leader, marks, "read 6", 100)
    assert reads.get(_key(6), leader, Marks(11, 0, 10)) is None  # the partition grew
    assert reads.get(_key(6), leader, marks) is None  # and the stale entry went


# -- the encoding ----------------------------------------------------------------------

_records = st.lists(st.binary(min_size=0, max_size=6000), max_size=3)


@settings(max_examples=60, deadline=None)
@given(
    version=st.integers(4, 15),
    entries=st.lists(
        st.tuples(st.integers(0, 2**31 - 1), st.integers(-1, 2**40), _records, st.booleans()),
        min_size=1,
        max_size=4,
    ),
)
def test_an_encoded_entry_writes_the_bytes_its_dict_writes(
    version: int, entries: list[tuple[int, int, list[bytes], bool]]
) -> None:
    schema = response_schema(ApiKey.FETCH, version)
    write = item_encoder(schema, "responses", "partitions")
    dicts = [
        {
            "partition_index": index,
            "error_code": 0,
            "high_watermark": mark,
            "last_stable_offset": mark,
            "log_start_offset": 0,
            "aborted_transactions": [{"producer_id": 7, "first_offset": 3}] if aborted else None,
            "preferred_read_replica": -1,
            "records": records,
        }
        for index, mark, records, aborted in entries
    ]
    encoded = [EncodedItem.of(write, entry) for entry in dicts]

    def response(partitions: list[Any]) -> bytes:
        body = {
            "throttle_time": 0,
            "error_code": 0,
            "session_id": 0,
            "responses": [{"topic": "t", "topic_id": bytes(16), "partitions": partitions}],
        }
        return b"".join(encode(schema, body))

    assert response(encoded) == response(dicts)
    assert response([encoded[0], *dicts[1:]]) == response(dicts)  # mixed in one array
