"""Three Produce checks answered as Kafka 4.0 answers them, over a real
socket (raw Produce requests to a wire server in this process): a zstd
batch below Produce v7, a batch whose baseOffset is not 0, and an
uncompressed batch whose records are malformed inside a right CRC.

Kafka's code (apache/kafka at 1eb7644, October 2024):
ProduceRequest.validateRecords refuses zstd below v7
(UnsupportedCompressionTypeException) once it has framed the first batch
and seen its magic 2, before it looks for a second; UnifiedLog's
analyzeAndValidateRecords refuses a client's v2 batch whose baseOffset is
not 0 (InvalidRecordException) before its size and CRC; the LogValidator
reads an uncompressed batch's records in place (DefaultRecord.readFrom) and
a malformed one is an InvalidRecordException: INVALID_RECORD with no
record_errors entry, the batch refused whole."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import pytest

import engine
import native
from engine.protocol.kafka_code import KafkaCode
from native import Compression, RecordSpec
from tests.native.bombs import wrap
from tests.server.in_process import InProcessServer
from tests.server.wire import produce_answers, produce_partitions

TOPIC = "t"
COMPACTED = "compacted"
T0 = 1_700_000_000_000


def _batch(codec: int = Compression.NONE, value: bytes = b"v") -> bytes:
    return native.encode_batch([RecordSpec(T0, b"k", value, ())], compression=codec)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    with engine.open(tmp_path_factory.mktemp("node")) as opened:
        opened.create_topic(TOPIC, 1)
        opened.create_topic(COMPACTED, 1, configs={"cleanup.policy": "compact"})
        with InProcessServer(opened) as server:
            yield server


@pytest.fixture
def topic(served: InProcessServer, request: pytest.FixtureRequest) -> str:
    """A fresh topic of four partitions for one test."""
    name = "t-" + "".join(c if c.isalnum() else "-" for c in request.node.name)[:200]
    served.server.engine.create_topic(name, 4)
    return name


def _partitions(topic: str, *records: bytes) -> list[dict[str, Any]]:
    return [
        {
            "name": topic,
            "partition_data": [{"index": i, "records": r} for i, r in enumerate(records)],
        }
    ]


# -- zstd below Produce v7 --------------------------------------------------------


@pytest.mark.parametrize("version", [3, 4, 5, 6])
def test_zstd_below_produce_v7_is_unsupported_compression_type(
    served: InProcessServer, topic: str, version: int
) -> None:
    zstd = _batch(Compression.ZSTD)
    answers = produce_partitions(
        served.bootstrap,
        _partitions(topic, zstd, zstd + _batch(), _batch(Compression.GZIP)),
        version,
    )
    for index in (0, 1):  # a second batch behind it is not looked for
        answer = answers[(topic, index)]
        assert answer.error_code == KafkaCode.UNSUPPORTED_COMPRESSION_TYPE
        assert answer.base_offset == -1
    assert (answers[(topic, 2)].error_code, answers[(topic, 2)].base_offset) == (0, 0)
    assert served.server.engine.offsets(topic, 0) == (0, 0)


@pytest.mark.parametrize("version", [7, 9, 11])
def test_zstd_from_produce_v7_is_appended(
    served: InProcessServer, topic: str, version: int
) -> None:
    answers = produce_answers(
        served.bootstrap, _partitions(topic, _batch(Compression.ZSTD)), version
    )
    assert answers == {(topic, 0): (KafkaCode.NONE, 0)}


def test_zstd_below_v7_waits_for_the_partition_and_the_framing(
    served: InProcessServer, topic: str
) -> None:
    """An unknown partition is refused first, and a first frame Kafka's
    iterator calls corrupt or frames nothing in; an internal topic is known
    to Kafka, so validateRecords refuses the zstd batch before the append
    is refused for the topic."""
    zstd = _batch(Compression.ZSTD)
    corrupt = struct.pack(">qi", 0, 2) + zstd
    assert produce_answers(
        served.bootstrap,
        [
            {"name": topic, "partition_data": [{"index": 9, "records": zstd}]},
            {"name": topic, "partition_data": [{"index": 0, "records": corrupt}]},
            {"name": topic, "partition_data": [{"index": 1, "records": zstd[:-1]}]},
            {"name": "__consumer_offsets", "partition_data": [{"index": 0, "records": zstd}]},
        ],
        version=5,
    ) == {
        (topic, 9): (KafkaCode.UNKNOWN_TOPIC_OR_PARTITION, -1),
        (topic, 0): (KafkaCode.CORRUPT_MESSAGE, -1),
        (topic, 1): (KafkaCode.INVALID_RECORD, -1),
        ("__consumer_offsets", 0): (KafkaCode.UNSUPPORTED_COMPRESSION_TYPE, -1),
    }


# -- a client's batch starts at offset 0 -------------------------------------------


def _based(batch: bytes, base_offset: int) -> bytes:
    """``batch`` with ``base_offset``, which its CRC does not cover."""
    based = bytearray(batch)
    struct.pack_into(">q", based, 0, base_offset)
    return bytes(based)


def test_a_batch_not_starting_at_offset_0_is_invalid_record(
    served: InProcessServer, topic: str
) -> None:
    """Before the CRC (CORRUPT_MESSAGE) and the size (MESSAGE_TOO_LARGE)
    Kafka checks after it; nothing of the refused batches is appended."""
    bad_crc = bytearray(_based(_batch(), 3))
    bad_crc[-1] ^= 1
    answers = produce_partitions(
        served.bootstrap,
        _partitions(
            topic, _based(_batch(), 5), bytes(bad_crc), _based(_batch(value=b"x" * 2_000_000), -1)
        ),
    )
    for index, base_offset in enumerate((5, 3, -1)):
        answer = answers[(topic, index)]
        assert (answer.error_code, answer.base_offset) == (KafkaCode.INVALID_RECORD, -1)
        assert answer.error_message == (
            f"The baseOffset of the record batch in the append to {topic}-{index} should be 0,"
            f" but it is {base_offset}"
        )
        assert answer.record_errors == ()
    assert produce_answers(served.bootstrap, _partitions(topic, _batch())) == {
        (topic, 0): (KafkaCode.NONE, 0)
    }


def test_an_internal_topic_is_refused_before_the_base_offset_is_read(
    served: InProcessServer,
) -> None:
    """ReplicaManager refuses the internal topic before UnifiedLog reads the batch."""
    records = _based(_batch(), 5)
    assert produce_answers(
        served.bootstrap,
        [{"name": "__consumer_offsets", "partition_data": [{"index": 0, "records": records}]}],
    ) == {("__consumer_offsets", 0): (KafkaCode.INVALID_TOPIC_EXCEPTION, -1)}


# -- an uncompressed batch's records are walked --------------------------------------

BODY = native.encode_batch([RecordSpec(T0, b"k", b"v", (("h", b"x"),))])[62:]
"""One record's bytes after its one-byte length varint."""


def _records(*bodies: bytes) -> bytes:
    return b"".join(bytes([len(body) << 1]) + body for body in bodies)


def _key_past_its_record() -> bytes:
    body = bytearray(BODY)
    body[3] = 0x14  # key length 10, in a record of 12 bytes
    return bytes(body)


MALFORMED = [
    pytest.param(wrap(0, _records(_key_past_its_record()), 1), id="key-past-its-record"),
    pytest.param(wrap(0, _records(BODY[:7] + b"\x01"), 1), id="header-count-negative"),
    pytest.param(wrap(0, _records(BODY + b"\x00"), 1), id="a-byte-left-in-the-record"),
    pytest.param(wrap(0, _records(BODY), 2), id="fewer-records-than-the-count"),
    pytest.param(wrap(0, _records(BODY) + b"\x00", 1), id="a-byte-after-the-last-record"),
]


@pytest.mark.parametrize("records", MALFORMED)
@pytest.mark.parametrize("version", [3, 9])
def test_an_uncompressed_batch_with_malformed_records_is_invalid_record(
    served: InProcessServer, topic: str, records: bytes, version: int
) -> None:
    """With a right CRC and count, on a topic with no record rule (and on a
    compacted one, whose rules are applied to records that decode):
    refused whole, no record named, nothing appended, the partition serving."""
    for name in (topic, COMPACTED):
        before = served.server.engine.offsets(name, 0)
        answer = produce_partitions(served.bootstrap, _partitions(name, records), version)[
            (name, 0)
        ]
        assert (answer.error_code, answer.base_offset) == (KafkaCode.INVALID_RECORD, -1)
        if version >= 8:  # KIP-467's record_errors
            assert answer.record_errors == ()
        assert served.server.engine.offsets(name, 0) == before
    assert produce_answers(served.bootstrap, _partitions(topic, _batch()), version) == {
        (topic, 0): (KafkaCode.NONE, 0)
    }


# -- the size before the CRC and the records -----------------------------------------

SMALL = "small"
"""A topic whose max.message.bytes (80) a batch of one record passes."""


def _oversized_malformed() -> bytes:
    """Three records, the third's header count negative: over SMALL's size,
    its CRC right, its records not decoding."""
    return wrap(0, _records(BODY, BODY, BODY[:7] + b"\x01"), 3)


def _oversized_bad_crc() -> bytes:
    batch = bytearray(_batch(value=b"x" * 200))
    batch[-1] ^= 1
    return bytes(batch)


@pytest.mark.parametrize(
    "records",
    [
        pytest.param(_oversized_malformed(), id="malformed-records"),
        pytest.param(_oversized_bad_crc(), id="bad-crc"),
    ],
)
def test_a_batch_past_max_message_bytes_is_message_too_large_before_its_crc_and_records(
    served: InProcessServer, records: bytes
) -> None:
    """UnifiedLog.analyzeAndValidateRecords checks a batch's size against
    max.message.bytes right after its baseOffset, before its CRC
    (CORRUPT_MESSAGE) and before the LogValidator reads its records
    (INVALID_RECORD): the size is the answer."""
    engine_ = served.server.engine
    if not engine_.has_topic(SMALL):
        engine_.create_topic(SMALL, 1, configs={"max.message.bytes": "80"})
    assert len(records) > 80
    answer = produce_partitions(served.bootstrap, _partitions(SMALL, records))[(SMALL, 0)]
    assert (answer.error_code, answer.base_offset) == (KafkaCode.MESSAGE_TOO_LARGE, -1)
