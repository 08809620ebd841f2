"""Our batches against kafka-python's own record code, in both directions."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from native.records import Compression, RecordSpec
from tests.native.conftest import IMPLEMENTATIONS, record_lists

DATA = Path(__file__).parent.parent / "data" / "librdkafka"
KAFKA_PYTHON_CODECS = list(Compression)
kafka_python_codecs = st.sampled_from(KAFKA_PYTHON_CODECS)
small_timestamps = st.integers(0, 2**41)


def _theirs(batch: bytes) -> list[tuple[Any, ...]]:
    parsed = DefaultRecordBatch(bytearray(batch))
    return [
        (r.offset, r.timestamp, r.key, r.value, tuple((k, v) for k, v in r.headers)) for r in parsed
    ]


def _ours(module: ModuleType, batch: bytes) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in module.decode_records(batch)]


@given(record_lists.map(lambda specs: [s._replace(timestamp=abs(s.timestamp)) for s in specs]),
       kafka_python_codecs)  # fmt: skip
def test_our_batches_parse_in_kafka_python(specs: list[RecordSpec], codec: Compression) -> None:
    for param in IMPLEMENTATIONS:
        module = param.values[0]
        batch = module.encode_batch(specs, base_offset=5, compression=codec)
        assert DefaultRecordBatch(bytearray(batch)).validate_crc()
        assert _theirs(batch) == _ours(module, batch)


@given(
    st.lists(
        st.tuples(
            small_timestamps,
            st.none() | st.binary(max_size=100),
            st.none() | st.binary(max_size=100),
            st.lists(st.tuples(st.text(max_size=8), st.none() | st.binary(max_size=8)), max_size=3),
        ),
        min_size=1,
        max_size=20,
    ),
    kafka_python_codecs,
)
def test_kafka_python_batches_validate_and_decode_with_ours(
    records: list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]],
    codec: Compression,
) -> None:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=int(codec),
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 30,
    )
    for index, (timestamp, key, value, headers) in enumerate(records):
        builder.append(index, timestamp=timestamp, key=key, value=value, headers=headers)
    batch = bytes(builder.build())
    for param in IMPLEMENTATIONS:
        module = param.values[0]
        (header,) = module.validate_batches(batch)
        assert header.record_count == len(records)
        assert _ours(module, batch) == _theirs(batch)


@pytest.mark.parametrize("path", sorted(DATA.glob("*.bin")), ids=lambda p: p.stem)
def test_librdkafka_captures_decode_the_same_in_kafka_python(impl: ModuleType, path: Path) -> None:
    data = path.read_bytes()
    position = 0
    for header in impl.scan_batches(data):
        batch = data[position : position + header.size]
        assert _ours(impl, batch) == _theirs(batch)
        position += header.size
