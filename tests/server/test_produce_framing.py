"""A Produce partition's records answered as Kafka 4.0 answers them, over a
real socket (raw Produce v9 requests to a wire server in this process):
bytes after the one batch too short to be another are dropped and the batch
appended, and nothing of them reaches the WAL, the stored batch or the
offsets; a frame Kafka's iterator calls corrupt is CORRUPT_MESSAGE ahead of
the first batch's own faults and ahead of an internal topic's refusal.

Kafka's order (apache/kafka 1eb7644): KafkaApis.handleProduceRequest runs
ProduceRequest.validateRecords (its MemoryRecords iterator frames the
first batch and looks for a second) for every partition it knows, the
internal topics included; ReplicaManager.appendToLocalLog then refuses an
internal topic (INVALID_TOPIC_EXCEPTION); UnifiedLog.analyzeAndValidateRecords
checks the one batch (CRC) and trimInvalidBytes drops the rest; the
LogValidator reads its records last."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import engine
import native
from engine.protocol.kafka_code import KafkaCode
from native import RecordSpec
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire, fetch_from_start, produce_answers

TOPIC = "t"
MARK = b"DROPPED-TAIL"
BATCH = native.encode_batch([RecordSpec(1_700_000_000_000, b"k", b"kept", ())])
CUT = native.encode_batch([RecordSpec(1_700_000_000_000, None, MARK * 20, ())])[:-1]
"""A frame cut one byte short of what its length claims: Kafka frames nothing in it."""


@contextlib.contextmanager
def _serving(root: Path) -> Iterator[InProcessServer]:
    with engine.open(root) as opened:
        if not opened.has_topic(TOPIC):
            opened.create_topic(TOPIC, 4)
        with InProcessServer(opened) as server:
            yield server


@pytest.fixture
def served(tmp_path: Path) -> Iterator[InProcessServer]:
    with _serving(tmp_path / "node") as server:
        yield server


def _partitions(*records: bytes) -> list[dict[str, Any]]:
    return [
        {
            "name": TOPIC,
            "partition_data": [{"index": i, "records": r} for i, r in enumerate(records)],
        }
    ]


def _fetched(served: InProcessServer) -> bytes:
    with Wire(served.bootstrap) as wire:
        answer = wire.request(fetch_from_start(TOPIC))
    return bytes(answer.responses[0].partitions[0].records or b"")


def test_a_tail_too_short_to_be_a_batch_is_dropped_and_the_batch_appended(
    tmp_path: Path,
) -> None:
    root = tmp_path / "node"
    tails = [b"\x00", MARK[:11], CUT[:12], CUT[:16], CUT[:17], CUT]
    with _serving(root) as served:
        for offset, tail in enumerate(tails):
            assert produce_answers(served.bootstrap, _partitions(BATCH + tail)) == {
                (TOPIC, 0): (0, offset)
            }
        stored = _fetched(served)
    # Each append is the batch alone: its size, its CRC, offsets one apart.
    headers = native.validate_batches(stored, from_client=False)
    assert [h.size for h in headers] == [len(BATCH)] * len(tails)
    assert [h.base_offset for h in headers] == list(range(len(tails)))
    assert MARK not in stored
    # The tails never reached the WAL nor anything else on disk.
    assert not [p for p in root.rglob("*") if p.is_file() and MARK in p.read_bytes()]
    with _serving(root) as served:  # recovered from the WAL and the objects
        assert _fetched(served) == stored
        assert produce_answers(served.bootstrap, _partitions(BATCH)) == {
            (TOPIC, 0): (0, len(tails))
        }


def test_a_frame_kafkas_iterator_calls_corrupt_is_corrupt_message_ahead_of_the_batchs_faults(
    served: InProcessServer,
) -> None:
    """The LogValidator's INVALID_RECORD for a miscounted first batch comes
    after validateRecords' CORRUPT_MESSAGE for the frame behind it."""
    miscounted = bytearray(BATCH)
    struct.pack_into(">i", miscounted, 57, 5)
    struct.pack_into(">I", miscounted, 17, native.crc32c(bytes(miscounted[21:])))
    bad_magic = bytearray(CUT[:30])
    bad_magic[16] = 9
    codes = produce_answers(
        served.bootstrap,
        _partitions(
            bytes(miscounted),
            bytes(miscounted) + struct.pack(">qi", 0, 3),
            bytes(miscounted) + bytes(bad_magic),
            bytes(miscounted) + CUT[:20],
        ),
    )
    assert codes == {
        (TOPIC, 0): (KafkaCode.INVALID_RECORD, -1),
        (TOPIC, 1): (KafkaCode.CORRUPT_MESSAGE, -1),
        (TOPIC, 2): (KafkaCode.CORRUPT_MESSAGE, -1),
        (TOPIC, 3): (KafkaCode.INVALID_RECORD, -1),  # the tail dropped, the batch refused
    }


def test_an_internal_topic_is_refused_after_the_records_are_framed(
    served: InProcessServer,
) -> None:
    """validateRecords before ReplicaManager's INVALID_TOPIC_EXCEPTION: a
    corrupt frame, no batch, an old magic, a second batch are answered as
    to any topic; a lone batch, however bad its CRC, or one with a tail
    Kafka drops, is the internal topic's refusal."""
    bad_crc = bytearray(BATCH)
    bad_crc[-1] ^= 0x01
    old_magic = bytearray(BATCH)
    old_magic[16] = 1
    cases = [
        (struct.pack(">qi", 0, 2), KafkaCode.CORRUPT_MESSAGE),
        (BATCH + struct.pack(">qi", 0, 2), KafkaCode.CORRUPT_MESSAGE),
        (BATCH[:-1], KafkaCode.INVALID_RECORD),
        (bytes(old_magic), KafkaCode.INVALID_RECORD),
        (BATCH + BATCH, KafkaCode.INVALID_RECORD),
        (bytes(bad_crc), KafkaCode.INVALID_TOPIC_EXCEPTION),
        (BATCH + CUT, KafkaCode.INVALID_TOPIC_EXCEPTION),
    ]
    for records, code in cases:
        answer = produce_answers(
            served.bootstrap,
            [{"name": "__consumer_offsets", "partition_data": [{"index": 0, "records": records}]}],
        )
        assert answer == {("__consumer_offsets", 0): (code, -1)}, records
