"""A client's batch is refused or rewritten for its attributes as Kafka's
LogValidator does, whatever else they hold: a control batch is refused, a
transactional one needs a producer id, a LogAppendTime topic refuses a
batch marked LogAppendTime and stamps the others, a CreateTime topic
refuses one whose records read no time (maxTimestamp -1) and stores the
others marked CreateTime (the stored type is the topic's, whether the batch
is kept in its codec or recompressed), and
a topic naming a codec (``uncompressed`` too) stores its batches in that
codec. Each rule
is read from the attributes alone, so every combination of them is drawn."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

import engine
import native
from engine.errors import EngineError, InvalidRecord, InvalidTimestamp
from native.records import Compression, RecordSpec, TimestampType
from tests.engine.conftest import EngineFactory

T0 = 1_700_000_000_000
CODECS = {
    "producer": None,
    "uncompressed": Compression.NONE,
    "gzip": Compression.GZIP,
    "zstd": Compression.ZSTD,
}
TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")


@pytest.fixture
def topics(engine_factory: EngineFactory) -> engine.Engine:
    opened = engine_factory()
    for codec in CODECS:
        for timestamp_type in TIMESTAMP_TYPES:
            opened.create_topic(
                f"{codec}-{timestamp_type}",
                1,
                {"compression.type": codec, "message.timestamp.type": timestamp_type},
            )
    return opened


def _expected(
    control: bool,
    transactional: bool,
    producer_id: int,
    stamped: bool,
    log_append_time: bool,
    timestamp: int,
) -> type[Exception] | None:
    if control:
        return InvalidRecord  # clients may not append control batches
    if transactional and producer_id < 0:
        return InvalidRecord
    if stamped and (log_append_time or timestamp == -1):
        # the broker, not the producer, stamps the time; on a CreateTime
        # topic each record reads the batch's maxTimestamp, here none
        return InvalidTimestamp
    return None


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    codec=st.sampled_from(list(CODECS)),
    timestamp_type=st.sampled_from(TIMESTAMP_TYPES),
    compression=st.sampled_from([Compression.NONE, Compression.GZIP, Compression.ZSTD]),
    control=st.booleans(),
    transactional=st.booleans(),
    producer_id=st.sampled_from([-1, 5]),
    stamped=st.booleans(),
    timestamp=st.sampled_from([T0, -1]),
)
def test_each_attribute_is_refused_or_rewritten_as_kafka_does(
    topics: engine.Engine,
    codec: str,
    timestamp_type: str,
    compression: Compression,
    control: bool,
    transactional: bool,
    producer_id: int,
    stamped: bool,
    timestamp: int,
) -> None:
    name = f"{codec}-{timestamp_type}"
    batch = native.encode_batch(
        [RecordSpec(timestamp, b"k", b"v" * 64, ())],
        compression=compression,
        producer_id=producer_id,
        producer_epoch=0 if producer_id >= 0 else -1,
        base_sequence=-1,
        is_transactional=transactional,
        is_control=control,
        timestamp_type=TimestampType.LOG_APPEND_TIME if stamped else TimestampType.CREATE_TIME,
    )
    log_append_time = timestamp_type == "LogAppendTime"
    refused = _expected(control, transactional, producer_id, stamped, log_append_time, timestamp)
    end = topics.offsets(name, 0)[1]
    if refused is not None:
        with pytest.raises(refused):
            topics.produce(name, 0, batch)
        assert topics.offsets(name, 0)[1] == end  # nothing of it appended
        return
    try:
        appended = topics.produce(name, 0, batch)
    except EngineError:
        # A producer's batch without a sequence or a transaction: refused
        # for that alone, which is the producer state's rule, not an
        # attribute's.
        assert producer_id >= 0
        return
    fetched = topics.fetch(name, 0, appended.base_offset)
    (stored,) = native.validate_batches(bytes(fetched.records[0]), from_client=False)
    assert stored.compression == (compression if CODECS[codec] is None else CODECS[codec])
    if log_append_time:  # stamped by the broker
        assert stored.timestamp_type == TimestampType.LOG_APPEND_TIME
    else:
        # Kafka's LogValidator: setMaxTimestamp with the topic's type on
        # the in-place paths, the topic's type in the recompressed batch's
        # builder; each record read the batch's maxTimestamp, so that stays.
        assert stored.timestamp_type == TimestampType.CREATE_TIME
        assert stored.max_timestamp == timestamp
    assert stored.is_transactional == transactional


@pytest.mark.parametrize("timestamp_type", TIMESTAMP_TYPES)
def test_a_compacted_topic_refuses_a_refused_log_append_time_batch_record_by_record(
    engine_factory: EngineFactory, timestamp_type: str
) -> None:
    # Kafka's LogValidator.validateRecord: a keyless record's error is its
    # key's, each other record's is its timestamp type's, and one
    # INVALID_TIMESTAMP among them makes the answer INVALID_TIMESTAMP.
    opened = engine_factory()
    name = f"compacted-{timestamp_type}"
    opened.create_topic(
        name, 1, {"cleanup.policy": "compact", "message.timestamp.type": timestamp_type}
    )
    specs = [RecordSpec(-1, None, b"v", ()), RecordSpec(-1, b"k", b"v", ())]
    batch = native.encode_batch(specs, timestamp_type=TimestampType.LOG_APPEND_TIME)
    with pytest.raises(InvalidTimestamp) as refused:
        opened.produce(name, 0, batch)
    errors = refused.value.record_errors
    assert [index for index, _ in errors] == [0, 1]
    assert (
        errors[0][1]
        == f"Compacted topic cannot accept message without key in topic partition {name}-0"
    )
    assert errors[1][1].endswith("Producer should not set timestamp type to LogAppendTime.")
    assert opened.offsets(name, 0) == (0, 0)


@pytest.mark.parametrize("timestamp_type", TIMESTAMP_TYPES)
def test_a_compacted_topic_refuses_a_keyless_log_append_time_batch_for_its_keys(
    engine_factory: EngineFactory, timestamp_type: str
) -> None:
    # Every record's error is its key's: no INVALID_TIMESTAMP among them.
    opened = engine_factory()
    name = f"keyless-{timestamp_type}"
    opened.create_topic(
        name, 1, {"cleanup.policy": "compact", "message.timestamp.type": timestamp_type}
    )
    specs = [RecordSpec(-1, None, b"v", ()), RecordSpec(-1, None, b"w", ())]
    batch = native.encode_batch(specs, timestamp_type=TimestampType.LOG_APPEND_TIME)
    with pytest.raises(InvalidRecord) as refused:
        opened.produce(name, 0, batch)
    assert not isinstance(refused.value, InvalidTimestamp)
    assert [index for index, _ in refused.value.record_errors] == [0, 1]
