"""The engine's small parts on their own: the partitioner (against
kafka-python's), topic config validation and description, the time index
and the producer state table."""

from __future__ import annotations

import random
from collections import deque
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import DefaultPartitioner
from kafka.partitioner.default import murmur2 as kafka_murmur2

import engine
import native
from engine.client.partitioner import StickyPartitioner, murmur2, partition_for_key
from engine.config import CONFIG_DEFS, ConfigSource, TopicConfig, normalize
from engine.producer_state import (
    INT_MAX,
    REMEMBERED_BATCHES,
    BatchMeta,
    ProducerEntry,
    ProducerStateTable,
    last_sequence,
)
from engine.time_index import TimeIndex
from native import BatchHeader, RecordSpec
from s3stream import StreamStoreConfig

QUIET = engine.EngineConfig(
    checkpoint_interval_s=3600,
    cleaner_interval_s=3600,
    store=StreamStoreConfig(upload_interval_s=3600, compaction_interval_s=3600),
)

# -- partitioner -------------------------------------------------------------------

# Kafka's own vectors (UtilsTest.testMurmur2), Java ints as unsigned.
KAFKA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize("data", list(KAFKA_MURMUR2))
def test_murmur2_matches_kafkas_test_vectors(data: bytes) -> None:
    assert murmur2(data) == KAFKA_MURMUR2[data] & 0xFFFFFFFF


@given(st.binary(max_size=300))
def test_murmur2_equals_kafka_pythons(data: bytes) -> None:
    assert murmur2(data) == kafka_murmur2(data)


class _Cluster:
    """The two questions kafka-python's DefaultPartitioner asks its cluster."""

    def __init__(self, topic: str, partitions: int) -> None:
        self.topic = topic
        self.count = partitions

    def topics(self) -> set[str]:
        return {self.topic}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.count))

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.count))


@given(st.binary(max_size=100), st.integers(1, 1000))
def test_partition_for_key_equals_kafka_pythons_default_partitioner(
    key: bytes, partitions: int
) -> None:
    kafka = DefaultPartitioner().partition("t", key, key, b"v", b"v", _Cluster("t", partitions))
    assert partition_for_key(key, partitions) == kafka


@given(
    sizes=st.lists(st.integers(1, 500), min_size=1, max_size=200),
    batch_bytes=st.integers(1, 2000),
    partitions=st.integers(1, 5),
    seed=st.integers(0, 2**32),
)
def test_sticky_partitioner_switches_once_a_batch_worth_of_bytes_went_to_a_partition(
    sizes: list[int], batch_bytes: int, partitions: int, seed: int
) -> None:
    sticky = StickyPartitioner(batch_bytes, random.Random(seed))
    chosen = [sticky.partition("t", partitions, size) for size in sizes]
    assert all(0 <= p < partitions for p in chosen)
    # Split into runs of consecutive records that went to one partition, with
    # the bytes given to it before each record of the run.
    runs: list[list[int]] = [[sizes[0]]]
    for i in range(1, len(sizes)):
        sent_before = sum(runs[-1])
        if sent_before >= batch_bytes:
            runs.append([sizes[i]])  # the switch must happen here ...
            if partitions > 1:
                assert chosen[i] != chosen[i - 1]  # ... to another partition
        else:
            runs[-1].append(sizes[i])
            assert chosen[i] == chosen[i - 1]  # sticks while under batch_bytes


def test_sticky_partitioner_keeps_a_partition_per_topic() -> None:
    sticky = StickyPartitioner(100, random.Random(7))
    first_a = sticky.partition("a", 4, 10)
    first_b = sticky.partition("b", 4, 90)
    assert all(sticky.partition("a", 4, 10) == first_a for _ in range(8))  # 90 bytes in "a"
    assert sticky.partition("b", 4, 5) == first_b  # "b" holds 90: still under 100


class _Scripted(random.Random):
    """randrange answers from a script."""

    def __init__(self, answers: list[int]) -> None:
        super().__init__(0)
        self.answers = answers

    def randrange(self, *args: Any, **kwargs: Any) -> int:
        return self.answers.pop(0)


def test_sticky_partitioner_picks_again_when_the_topic_has_fewer_partitions() -> None:
    sticky = StickyPartitioner(10**9, _Scripted([6, 2]))
    assert sticky.partition("t", 8, 1) == 6
    assert sticky.partition("t", 4, 1) == 2  # 6 is not a partition of a 4-partition topic


# -- configs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "canonical"),
    [
        ("cleanup.policy", "compact", "compact"),
        ("cleanup.policy", "compact,delete", "compact,delete"),
        ("cleanup.policy", " delete , compact ", "delete,compact"),
        ("cleanup.policy", ["compact", "delete"], "compact,delete"),
        ("retention.ms", "-1", "-1"),
        ("retention.ms", 86400000, "86400000"),
        ("retention.bytes", "-1", "-1"),
        ("retention.bytes", str(2**63 - 1), str(2**63 - 1)),
        ("max.message.bytes", "1048588", "1048588"),
        ("max.message.bytes", 2**31 - 1, str(2**31 - 1)),
        ("min.cleanable.dirty.ratio", "0.5", "0.5"),
        ("min.cleanable.dirty.ratio", 0, "0.0"),
        ("min.cleanable.dirty.ratio", "1", "1.0"),
        ("compression.type", "zstd", "zstd"),
        ("compression.type", "producer", "producer"),
        ("compression.type", "uncompressed", "uncompressed"),
        ("message.timestamp.type", "LogAppendTime", "LogAppendTime"),
        ("message.timestamp.type", "CreateTime", "CreateTime"),
        ("preallocate", True, "true"),
        ("preallocate", "FALSE", "false"),
        ("unclean.leader.election.enable", "true", "true"),
        ("min.insync.replicas", "2", "2"),
        ("segment.bytes", "14", "14"),
        ("segment.ms", " 3600000 ", "3600000"),
        ("local.retention.ms", "-2", "-2"),
        ("min.compaction.lag.ms", "0", "0"),
        ("delete.retention.ms", "0", "0"),
        ("index.interval.bytes", "0", "0"),
        ("message.timestamp.difference.max.ms", "0", "0"),
        ("leader.replication.throttled.replicas", "", ""),
    ],
)
def test_normalize_accepts_kafkas_values(name: str, value: object, canonical: str) -> None:
    assert normalize(name, value) == canonical


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("no.such.config", "1"),
        ("cleanup.policy", ""),
        ("cleanup.policy", "compact,shred"),
        ("retention.ms", "-2"),
        ("retention.ms", "7 days"),
        ("retention.ms", "1.5"),
        ("retention.ms", 1.5),
        ("retention.ms", str(2**63)),
        ("retention.bytes", "-2"),
        ("max.message.bytes", str(2**31)),
        ("max.message.bytes", "-1"),
        ("min.cleanable.dirty.ratio", "1.5"),
        ("min.cleanable.dirty.ratio", "-0.1"),
        ("min.cleanable.dirty.ratio", "half"),
        ("min.cleanable.dirty.ratio", "nan"),
        ("compression.type", "brotli"),
        ("message.timestamp.type", "createtime"),
        ("preallocate", "yes"),
        ("preallocate", "1"),
        ("min.insync.replicas", "0"),
        ("segment.bytes", "13"),
        ("segment.ms", "0"),
        ("segment.index.bytes", "3"),
        ("max.compaction.lag.ms", "0"),
        ("min.compaction.lag.ms", "-1"),
        ("delete.retention.ms", "-1"),
        ("local.retention.bytes", "-3"),
    ],
)
def test_normalize_rejects_bad_values_with_invalid_config(name: str, value: object) -> None:
    with pytest.raises(engine.InvalidConfig) as raised:
        normalize(name, value)
    assert raised.value.name == name
    assert raised.value.value == value
    assert raised.value.error_code == 40  # INVALID_CONFIG


def test_describe_lists_every_config_with_its_source() -> None:
    config = TopicConfig(
        {"retention.ms": "1000", "cleanup.policy": "compact"},
        {"retention.ms": "5000", "max.message.bytes": "2048"},
    )
    entries = {entry.name: entry for entry in config.describe()}
    assert list(entries) == list(CONFIG_DEFS)  # every config, each once, in Kafka's order
    assert entries["retention.ms"].source is ConfigSource.TOPIC  # the override wins
    assert entries["retention.ms"].value == "1000"
    assert entries["cleanup.policy"].source is ConfigSource.TOPIC
    assert entries["max.message.bytes"].source is ConfigSource.STATIC_BROKER
    assert entries["max.message.bytes"].value == "2048"
    for name, entry in entries.items():
        if name not in ("retention.ms", "cleanup.policy", "max.message.bytes"):
            assert entry.source is ConfigSource.DEFAULT
            assert entry.value == CONFIG_DEFS[name].default
        assert entry.is_default == (entry.source is ConfigSource.DEFAULT)
        assert entry.type is CONFIG_DEFS[name].type
    assert config.retention_ms == 1000
    assert config.max_message_bytes == 2048
    assert config.compact
    assert not config.delete


def test_describe_lists_only_the_configs_asked_for() -> None:
    config = TopicConfig({}, {})
    names = {"retention.ms", "cleanup.policy"}
    assert {entry.name for entry in config.describe(names)} == names


def test_describe_topic_shows_engine_topic_defaults_as_static_broker(tmp_path: Path) -> None:
    config = engine.EngineConfig(
        checkpoint_interval_s=3600,
        cleaner_interval_s=3600,
        store=QUIET.store,
        topic_defaults={"retention.ms": 5000, "segment.ms": "60000"},
    )
    with engine.open(tmp_path / "node", config=config) as e:
        e.create_topic("t", 1, {"segment.ms": 1000})
        entries = {entry.name: entry for entry in e.describe_topic("t").configs}
        assert entries["retention.ms"] == entries["retention.ms"]._replace(
            value="5000", source=ConfigSource.STATIC_BROKER, is_default=False
        )
        assert entries["segment.ms"].value == "1000"
        assert entries["segment.ms"].source is ConfigSource.TOPIC
        assert entries["retention.bytes"].source is ConfigSource.DEFAULT
        assert e.topic_config("t").retention_ms == 5000


def test_engine_rejects_bad_topic_defaults_and_topic_configs(tmp_path: Path) -> None:
    # Refused when the config is made (0132), before any open could begin.
    with pytest.raises(engine.InvalidConfig):
        engine.EngineConfig(store=QUIET.store, topic_defaults={"retention.ms": "soon"})
    with engine.open(tmp_path / "node", config=QUIET) as e:
        with pytest.raises(engine.InvalidConfig):
            e.create_topic("t", 1, {"cleanup.policy": "archive"})
        assert e.list_topics() == []


def test_alter_configs_applies_to_a_topic_created_in_the_same_session(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node", config=QUIET) as e:
        e.create_topic("t", 1)
        e.alter_configs("t", {"retention.ms": 1000})
        assert e.topic_config("t").retention_ms == 1000
        entries = {entry.name: entry for entry in e.describe_topic("t").configs}
        assert entries["retention.ms"].source is ConfigSource.TOPIC


def test_alter_configs_applies_to_a_topic_loaded_at_open(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node", config=QUIET) as e:
        e.create_topic("t", 1)
    with engine.open(tmp_path / "node", config=QUIET) as e:
        e.alter_configs("t", {"retention.ms": 1000})
        assert e.topic_config("t").retention_ms == 1000
        e.alter_configs("t", {"retention.ms": None})
        assert e.topic_config("t").retention_ms == int(CONFIG_DEFS["retention.ms"].default)


# -- time index -------------------------------------------------------------------

# An append: (records in it, their timestamps' offsets from a base, bytes).
appends = st.lists(
    st.tuples(
        st.lists(st.integers(-1000, 1000), min_size=1, max_size=5),
        st.integers(1, 3000),
    ),
    max_size=60,
)
BASE_TS = 1_700_000_000_000


def _feed(index: TimeIndex, batches: list[tuple[list[int], int]]) -> list[tuple[int, int]]:
    """Appends the batches; returns every record as (offset, timestamp)."""
    records = []
    offset = 0
    for deltas, size in batches:
        timestamps = [BASE_TS + d for d in deltas]
        index.note_append(offset, max(timestamps), size)
        records += [(offset + i, ts) for i, ts in enumerate(timestamps)]
        offset += len(timestamps)
    return records


@given(appends, st.sampled_from([0, 1, 500, 4096]), st.lists(st.integers(-1100, 1100)))
def test_start_for_never_skips_a_record_at_or_after_the_timestamp(
    batches: list[tuple[list[int], int]], interval: int, targets: list[int]
) -> None:
    index = TimeIndex(interval)
    records = _feed(index, batches)
    assert list(index.timestamps) == sorted(set(index.timestamps))  # both columns grow
    assert list(index.offsets) == sorted(set(index.offsets))
    for delta in [*targets, *(ts - BASE_TS for _, ts in records)]:
        target = BASE_TS + delta
        start = index.start_for(target)
        start = 0 if start is None else start
        assert all(ts < target for offset, ts in records if offset < start)


@given(appends, st.integers(0, 300), st.lists(st.integers(-1100, 1100)))
def test_drop_before_keeps_every_answer_valid_and_an_entry_at_or_below_the_start(
    batches: list[tuple[list[int], int]], log_start: int, targets: list[int]
) -> None:
    index = TimeIndex(0)
    records = _feed(index, batches)
    at_or_below = [o for o in index.offsets if o <= log_start]
    index.drop_before(log_start)
    if at_or_below:
        assert index.offsets[0] == at_or_below[-1]  # the last one at or below stays
    for delta in targets:
        start = index.start_for(BASE_TS + delta)
        start = log_start if start is None else max(start, log_start)
        assert all(ts < BASE_TS + delta for o, ts in records if log_start <= o < start)


@given(appends, st.lists(st.integers(0, 60)), st.sampled_from([0, 200, 4096]))
def test_time_index_checkpoints_round_trip(
    batches: list[tuple[list[int], int]], cuts: list[int], interval: int
) -> None:
    """Incremental checkpoints (some full) loaded in order rebuild the index,
    and both go on the same way."""
    index = TimeIndex(interval)
    saved: list[tuple[list[int], bool, dict[str, Any]]] = []
    cut_points = sorted(set(cuts))
    offset = 0
    for i, (deltas, size) in enumerate(batches):
        index.note_append(offset, BASE_TS + max(deltas), size)
        offset += len(deltas)
        if i in cut_points:
            full = i % 3 == 0
            entries = index.all_entries() if full else index.unsaved_entries()
            saved.append((entries, full, index.state()))
            index.mark_saved()
    entries = index.unsaved_entries()
    saved.append((entries, False, index.state()))
    index.mark_saved()
    restored = TimeIndex(interval)
    for flat, full, state in msgpack.unpackb(msgpack.packb(saved)):
        restored.load(flat, full)
        restored.restore(state)
    assert list(restored.timestamps) == list(index.timestamps)
    assert list(restored.offsets) == list(index.offsets)
    assert restored.unsaved == 0
    for more in range(5):
        for copy in (index, restored):
            copy.note_append(offset, BASE_TS + 2000 + more, interval + 1)
        offset += 1
    assert list(restored.timestamps) == list(index.timestamps)
    assert list(restored.offsets) == list(index.offsets)


def test_unsaved_entries_after_drop_before_are_the_entries_that_remain() -> None:
    index = TimeIndex(0)
    for i in range(5):
        index.note_append(i * 10, 100 + i, 50)
    assert index.unsaved == 4  # entries at 10, 20, 30, 40
    index.drop_before(45)
    assert list(index.offsets) == [40]
    assert index.unsaved_entries() == [103, 40]


# -- producer state table -----------------------------------------------------------


def _header(
    producer_id: int, epoch: int, base_sequence: int, records: int = 1, max_ts: int = 7
) -> BatchHeader:
    specs = [RecordSpec(max_ts, b"k", b"v")] * records
    data = native.encode_batch(
        specs, producer_id=producer_id, producer_epoch=epoch, base_sequence=base_sequence
    )
    return native.scan_batches(data)[0]


entries = st.lists(
    st.tuples(
        st.integers(0, 2**40),
        st.integers(0, 2**15 - 1),
        st.integers(0, 2**41),
        st.lists(
            st.tuples(
                st.integers(0, INT_MAX),
                st.integers(0, INT_MAX),
                st.integers(0, 2**40),
                st.integers(0, 2**40),
                st.integers(-1, 2**41),
            ),
            max_size=REMEMBERED_BATCHES,
        ),
    ),
    max_size=6,
    unique_by=lambda e: e[0],
)


@given(entries)
def test_producer_state_table_round_trips_through_the_wire_form(raw: list[Any]) -> None:
    table = ProducerStateTable()
    for producer_id, epoch, last_append_ms, batches in raw:
        table.producers[producer_id] = ProducerEntry(
            producer_id,
            epoch,
            deque((BatchMeta(*b) for b in batches), maxlen=REMEMBERED_BATCHES),
            last_append_ms,
        )
    wire = msgpack.unpackb(msgpack.packb(table.to_wire()))  # as a checkpoint stores it
    restored = ProducerStateTable.from_wire(wire)
    assert restored.producers == table.producers
    for entry in restored.producers.values():
        assert entry.batches.maxlen == REMEMBERED_BATCHES


def test_a_restored_table_recognises_the_same_retries_and_gaps() -> None:
    table = ProducerStateTable()
    for seq in range(7):
        table.update(_header(1, 0, seq), 100 + seq, 5)
    restored = ProducerStateTable.from_wire(msgpack.unpackb(msgpack.packb(table.to_wire())))
    for seq in range(2, 7):  # the last five
        assert restored.check(_header(1, 0, seq)) == table.check(_header(1, 0, seq))
        assert restored.check(_header(1, 0, seq)) == BatchMeta(seq, seq, 100 + seq, 100 + seq, 7)
    assert restored.check(_header(1, 0, 7)) is None
    with pytest.raises(engine.OutOfOrderSequence):
        restored.check(_header(1, 0, 1))  # older than the last five
    with pytest.raises(engine.OutOfOrderSequence):
        restored.check(_header(1, 0, 8))


def test_expire_forgets_only_producers_idle_longer_than_the_expiration() -> None:
    table = ProducerStateTable()
    table.update(_header(1, 0, 0), 0, now_ms=1_000)
    table.update(_header(2, 0, 0), 1, now_ms=5_000)
    table.update(_header(3, 0, 0), 2, now_ms=9_000)
    assert table.expire(now_ms=10_000, expiration_ms=5_000) == 1
    assert set(table.producers) == {2, 3}  # 2 was idle exactly 5 s: not longer
    assert table.expire(now_ms=10_000, expiration_ms=5_000) == 0
    assert table.expire(now_ms=20_000, expiration_ms=5_000) == 2
    assert table.producers == {}
    assert table.check(_header(2, 0, 42)) is None  # forgotten: any sequence is accepted


@pytest.mark.parametrize(
    ("base", "delta", "last"),
    [(0, 0, 0), (5, 3, 8), (INT_MAX, 0, INT_MAX), (INT_MAX, 1, 0), (INT_MAX - 1, 3, 1)],
)
def test_last_sequence_wraps_after_int_max(base: int, delta: int, last: int) -> None:
    assert last_sequence(base, delta) == last


def test_the_table_accepts_a_batch_that_wraps_and_then_sequence_zero_onwards() -> None:
    table = ProducerStateTable()
    table.update(_header(1, 0, INT_MAX - 1, records=3), 0, 1)  # INT_MAX-1, INT_MAX, 0
    assert table.producers[1].last_seq == 0
    assert table.check(_header(1, 0, INT_MAX - 1, records=3)) is not None  # its retry
    assert table.check(_header(1, 0, 1)) is None
    with pytest.raises(engine.OutOfOrderSequence):
        table.check(_header(1, 0, 0))
