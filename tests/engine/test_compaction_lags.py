"""The log cleaner's choice of what to clean and when, as Kafka's
LogCleanerManager makes it, on virtual time: a record younger than
min.compaction.lag.ms is never cleaned away; the dirty ratio is taken over
the cleanable part of the log (not the part the lag holds back); a dirty
record older than max.compaction.lag.ms makes a partition due below
min.cleanable.dirty.ratio. Every object here holds one batch (a flush per
produce), so the cleanable range ends where each test says."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import engine
import native
from engine.clock import ManualClock
from native import RecordSpec
from s3stream import StreamStoreConfig

T0 = 1_700_000_000_000
HOUR_MS = 3_600_000
CONFIG = engine.EngineConfig(
    checkpoint_interval_s=3600,
    cleaner_interval_s=3600,
    store=StreamStoreConfig(compaction_interval_s=3600, upload_interval_s=3600),
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(time_ms=T0)


@pytest.fixture
def opened(tmp_path: Path, clock: ManualClock) -> Iterator[engine.Engine]:
    with engine.open(tmp_path, config=CONFIG, clock=clock) as opened:
        yield opened


def put(e: engine.Engine, key: bytes, value: bytes | None, timestamp: int) -> int:
    """Appends one record in its own uploaded object; returns its offset."""
    batch = native.encode_batch([RecordSpec(timestamp, key, value, ())])
    offset = e.produce("state", 0, batch).base_offset
    assert e.flush(timeout=30)
    return offset


def kept(e: engine.Engine) -> dict[int, bytes | None]:
    """Offset -> key of every record stored."""
    out: dict[int, bytes | None] = {}
    offset = 0
    while offset < e.partition("state", 0).high_watermark:
        fetched = e.fetch("state", 0, offset)
        for payload in fetched.records:
            for record in native.decode_records(payload):
                out[record.offset] = record.key
        offset = fetched.next_offset
    return out


def test_a_record_younger_than_the_min_lag_is_not_cleaned_away(
    opened: engine.Engine, clock: ManualClock
) -> None:
    opened.create_topic("state", 1, {"cleanup.policy": "compact", "min.compaction.lag.ms": HOUR_MS})
    put(opened, b"k", b"old", T0 - 2 * HOUR_MS)
    put(opened, b"k", b"new", T0 - 60_000)
    put(opened, b"other", b"x", T0 - 60_000)
    partition = opened.partition("state", 0)
    opened.cleaner.clean(partition)
    # The superseding record is a minute old: it is not in the cleanable
    # range, so the record it supersedes is not cleaned away yet.
    assert kept(opened) == {0: b"k", 1: b"k", 2: b"other"}
    clock.advance(HOUR_MS / 1000)
    assert opened.cleaner.clean(partition)
    assert kept(opened) == {1: b"k", 2: b"other"}


def test_the_dirty_ratio_counts_only_the_cleanable_part(
    opened: engine.Engine, clock: ManualClock
) -> None:
    opened.create_topic("state", 1, {"cleanup.policy": "compact", "min.compaction.lag.ms": HOUR_MS})
    for key in (b"a", b"b", b"c", b"d"):
        put(opened, key, b"1", T0 - 2 * HOUR_MS)
    partition = opened.partition("state", 0)
    assert opened.cleaner.clean(partition, force=True)
    put(opened, b"a", b"2", T0 - 2 * HOUR_MS)
    for n in range(6):
        put(opened, b"young%d" % n, b"1", T0)
    # 7 of 11 offsets are dirty, but only 1 of the 5 the lag lets the
    # cleaner touch: below the ratio of 0.5, as Kafka computes it.
    assert not opened.cleaner.clean(partition)
    assert 0 in kept(opened)
    clock.advance(HOUR_MS / 1000)
    assert opened.cleaner.clean(partition)
    assert 0 not in kept(opened)


def test_a_dirty_record_older_than_the_max_lag_makes_the_partition_due(
    opened: engine.Engine, clock: ManualClock
) -> None:
    opened.create_topic(
        "state",
        1,
        {
            "cleanup.policy": "compact",
            "min.cleanable.dirty.ratio": "0.9",
            "max.compaction.lag.ms": HOUR_MS,
        },
    )
    for n in range(10):
        put(opened, b"key%d" % n, b"1", T0)
    partition = opened.partition("state", 0)
    assert opened.cleaner.clean(partition, force=True)
    put(opened, b"key0", b"2", T0)
    put(opened, b"key1", b"2", T0)
    assert not opened.cleaner.clean(partition)  # 2 of 12 dirty: below 0.9
    clock.advance(HOUR_MS / 1000 - 1)
    assert not opened.cleaner.clean(partition)  # not older than the lag yet
    clock.advance(2)
    assert opened.cleaner.clean(partition)
    assert sorted(kept(opened)) == list(range(2, 12))


def test_without_a_min_lag_a_future_timestamp_does_not_hold_cleaning_back(
    opened: engine.Engine,
) -> None:
    # A topic that takes records dated ahead (the default refuses one an
    # hour past the clock).
    ahead = {"message.timestamp.after.max.ms": str(2**63 - 1)}
    opened.create_topic("state", 1, {"cleanup.policy": "compact", **ahead})
    put(opened, b"k", b"1", T0 + 10 * HOUR_MS)
    put(opened, b"k", b"2", T0 + 10 * HOUR_MS)
    assert opened.cleaner.clean(opened.partition("state", 0))
    assert kept(opened) == {1: b"k"}


def test_the_broker_wide_max_lag_reaches_a_topic_without_its_own(
    opened: engine.Engine, clock: ManualClock
) -> None:
    opened.create_topic(
        "state", 1, {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.9"}
    )
    opened.broker_configs.alter(
        "",
        {"log.cleaner.max.compaction.lag.ms": str(HOUR_MS)},
        incremental=True,
        validate_only=False,
    )
    assert opened.topic_config("state").max_compaction_lag_ms == HOUR_MS
    for n in range(10):
        put(opened, b"key%d" % n, b"1", T0)
    partition = opened.partition("state", 0)
    assert opened.cleaner.clean(partition, force=True)
    put(opened, b"key0", b"2", T0)
    assert not opened.cleaner.clean(partition)
    clock.advance(HOUR_MS / 1000 + 1)
    assert opened.cleaner.clean(partition)


def test_a_min_lag_above_the_max_lag_is_refused_at_create_and_at_alter(
    opened: engine.Engine,
) -> None:
    conflicting = {"min.compaction.lag.ms": 2 * HOUR_MS, "max.compaction.lag.ms": HOUR_MS}
    with pytest.raises(engine.InvalidConfig, match=r"max\.compaction\.lag\.ms"):
        opened.create_topic("state", 1, {"cleanup.policy": "compact", **conflicting})
    assert "state" not in opened.list_topics()

    opened.create_topic("state", 1, {"cleanup.policy": "compact", "max.compaction.lag.ms": HOUR_MS})
    with pytest.raises(engine.InvalidConfig, match=r"min\.compaction\.lag\.ms"):
        opened.alter_configs("state", {"min.compaction.lag.ms": 2 * HOUR_MS}, incremental=True)
    # Not incremental, the max override is removed with the others: the
    # broker's default max (Long.MAX) is above any min.
    opened.alter_configs("state", {"min.compaction.lag.ms": 2 * HOUR_MS}, incremental=False)
    config = opened.describe_topic("state").configs
    assert {c.name: c.value for c in config}["min.compaction.lag.ms"] == str(2 * HOUR_MS)
