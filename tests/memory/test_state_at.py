"""Engine.state_at: a compacted topic's state as of a time or below an offset
vector, rebuilt from what the cleaner kept, exact when every record that
could matter is kept, and otherwise the exact state at the earliest later
point the kept records answer — said so, never silently wrong; across a
restart too, since the compaction horizon is in the partition's checkpoints.

The property test drives random keyed puts and tombstones with timestamps,
cleaning passes at random times with random lags, and restarts, against a
model of the whole history."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
import native
from engine.clock import ManualClock
from engine.errors import AdminTimedOut, OffsetOutOfRange, UnknownPartition, UnknownTopic
from engine.memory.state_at import InvalidStateQuery, TopicState
from engine.memory.stored_state import stored_state_at
from engine.memory.vector import OffsetVector, Position, RecordRef
from engine.types import TopicPartition
from native import RecordSpec
from s3stream import NoRoom, StreamStoreConfig
from s3stream.append_options import Pacing
from s3stream.store.local import LocalStore
from tests.server.test_fetch_past_the_high_watermark import HeldSyncs

T0 = 1_700_000_000_000
HOUR_MS = 3_600_000
CONFIG = engine.EngineConfig(
    checkpoint_interval_s=3600,
    cleaner_interval_s=3600,
    # Small WAL segments: a close trims the WAL and waits for a spare segment
    # to be zero-filled, at the default size most of an example's time.
    store=StreamStoreConfig(
        compaction_interval_s=3600, upload_interval_s=3600, wal_segment_bytes=256 * 1024
    ),
)
COMPACT = {"cleanup.policy": "compact", "delete.retention.ms": 0}


@pytest.fixture
def clock() -> ManualClock:
    # Past the records' times: an answer for a time not passed yet is not final.
    return ManualClock(time_ms=T0 + 1)


@pytest.fixture
def opened(tmp_path: Path, clock: ManualClock) -> Iterator[engine.Engine]:
    with engine.open(tmp_path, config=CONFIG, clock=clock) as opened:
        yield opened


def put(
    e: engine.Engine, records: list[tuple[bytes, bytes | None, int]], partition: int = 0
) -> int:
    batch = native.encode_batch([RecordSpec(ts, key, value, ()) for key, value, ts in records])
    return e.produce("state", partition, batch).base_offset


def values(state: TopicState) -> dict[bytes, bytes]:
    return {key: kept.value for key, kept in state.values.items()}


def test_the_state_as_of_a_time_is_each_keys_last_record_at_or_before_it(
    opened: engine.Engine,
) -> None:
    opened.create_topic("state", 1, COMPACT)
    put(opened, [(b"order-1", b"placed", T0 - 300), (b"order-2", b"placed", T0 - 300)])
    put(opened, [(b"order-1", b"paid", T0 - 200)])
    put(opened, [(b"order-2", None, T0 - 100), (b"order-1", b"shipped", T0)])
    assert values(opened.state_at("state", T0 - 301)) == {}
    assert values(opened.state_at("state", T0 - 300)) == {
        b"order-1": b"placed",
        b"order-2": b"placed",
    }
    assert values(opened.state_at("state", T0 - 150)) == {
        b"order-1": b"paid",
        b"order-2": b"placed",
    }
    latest = opened.state_at("state", datetime.fromtimestamp(T0 / 1000, UTC))
    assert values(latest) == {b"order-1": b"shipped"}  # the tombstone deleted order-2
    assert latest.values[b"order-1"].ref == RecordRef(
        "state", 0, 4, opened.partition("state", 0).leader_epoch, opened.topic_id("state")
    )
    assert latest.values[b"order-1"].timestamp == T0
    assert latest.exact and latest.partitions[0].as_of_ms == T0


def test_history_the_cleaner_removed_makes_earlier_times_inexact(
    opened: engine.Engine, tmp_path: Path, clock: ManualClock
) -> None:
    opened.create_topic("state", 1, COMPACT)
    put(opened, [(b"k", b"v1", T0 - 300)])
    put(opened, [(b"k", b"v2", T0 - 200), (b"j", b"x", T0 - 250)])
    assert opened.flush(timeout=30)
    assert opened.cleaner.clean(opened.partition("state", 0), force=True)
    put(opened, [(b"k", b"v3", T0 - 100)])
    before_any_removal = opened.state_at("state", T0 - 301)
    assert before_any_removal.exact and values(before_any_removal) == {}
    # v1 was removed; whether k was v1 at T0 - 300 the kept records cannot say.
    compacted = opened.state_at("state", T0 - 300)
    assert not compacted.exact
    assert compacted.partitions[0].as_of_ms == T0 - 200
    assert values(compacted) == {b"k": b"v2", b"j": b"x"}
    assert "at least as new as asked" in compacted.partitions[0].describe()
    after = opened.state_at("state", T0 - 200)
    assert after.exact and values(after) == {b"k": b"v2", b"j": b"x"}
    # Below an offset vector: the same rule in offsets.
    below = opened.state_at("state", vector=OffsetVector({TopicPartition("state", 0): Position(1)}))
    assert not below.exact and below.partitions[0].below_offset == 3
    assert values(below) == {b"k": b"v2", b"j": b"x"}
    exact_below = opened.state_at(
        "state", vector=OffsetVector({TopicPartition("state", 0): Position(4)})
    )
    assert exact_below.exact and values(exact_below) == {b"k": b"v3", b"j": b"x"}
    # The horizon is durable: a crash right after cleaning keeps the answer honest.
    opened.close(flush=False)
    with engine.open(tmp_path, config=CONFIG, clock=clock) as reopened:
        again = reopened.state_at("state", T0 - 300)
        assert not again.exact and again.partitions[0].as_of_ms == T0 - 200


def test_a_fork_of_a_compacted_topic_keeps_what_the_cleaner_removed_from_its_history(
    tmp_path: Path, clock: ManualClock
) -> None:
    # The fork reads the parent's cleaned records: without the parent's
    # horizon its answer at a time compaction took away would be called exact.
    bucket = LocalStore(tmp_path / "bucket")
    with engine.open(tmp_path / "node", bucket, CONFIG, clock=clock) as opened:
        opened.create_topic("state", 1, COMPACT)
        put(opened, [(b"k", b"v1", T0 - 300)])
        put(opened, [(b"k", b"v2", T0 - 200), (b"j", b"x", T0 - 250)])
        assert opened.flush(timeout=30)
        assert opened.cleaner.clean(opened.partition("state", 0), force=True)
        put(opened, [(b"k", b"v3", T0 - 100)])
        opened.fork("state", name="state.fork")
        at_start = OffsetVector({TopicPartition("state", 0): Position(0)})
        opened.fork("state", at_start, name="state.empty-fork")
        empty = opened.state_at("state.empty-fork", T0 - 300)
        assert empty.exact and values(empty) == {}
        forked = opened.state_at("state.fork", T0 - 300)
        assert opened.flush(timeout=30)
    for answer in [forked, *_fork_answers(tmp_path, bucket, clock)]:
        assert not answer.exact
        assert answer.partitions[0].as_of_ms == T0 - 200
        assert values(answer) == {b"k": b"v2", b"j": b"x"}


def test_a_forks_horizon_refused_for_room_undoes_the_fork(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fork writes the parent's horizon under the engine's lock, which
    the server's event loop takes: it never waits for room, and refused
    past the headroom (the object store down; injected here, as the store's
    headroom check refuses) the fork is undone with a retriable error."""
    with engine.open(tmp_path / "node", LocalStore(tmp_path / "bucket"), CONFIG, clock=clock) as e:
        e.create_topic("state", 1, COMPACT)
        put(e, [(b"k", b"v1", T0 - 300)])
        put(e, [(b"k", b"v2", T0 - 200), (b"j", b"x", T0 - 250)])
        assert e.flush(timeout=30)
        assert e.cleaner.clean(e.partition("state", 0), force=True)
        first_new = e.store.manifest.state.next_stream_id  # the fork's streams' ids on
        submit = e.store.submit

        def refusing(stream_id: int, *args: Any, **kwargs: Any) -> Any:
            options = args[3] if len(args) > 3 else kwargs.get("options")
            never = options is not None and options.pacing is Pacing.NEVER
            if stream_id >= first_new and never:
                raise NoRoom(stream_id, 1 << 30, 1 << 29)
            return submit(stream_id, *args, **kwargs)

        monkeypatch.setattr(e.store, "submit", refusing)
        with pytest.raises(AdminTimedOut) as refused:
            e.fork("state", name="state.fork")
        assert refused.value.error_code.retriable
        assert "state.fork" not in e.list_topics()
        monkeypatch.undo()
        e.fork("state", name="state.fork")  # once there is room
        assert not e.state_at("state.fork", T0 - 300).exact


def _fork_answers(tmp_path: Path, bucket: LocalStore, clock: ManualClock) -> list[TopicState]:
    with engine.open(tmp_path / "node", bucket, CONFIG, clock=clock) as reopened:
        return [
            reopened.state_at("state.fork", T0 - 300),
            stored_state_at(bucket, "state.fork", T0 - 300),
        ]


class _Crash(BaseException):
    """The process dying at a step of a fork: nothing after it runs."""


_FORK_STEPS = ("fork_stream", "create_streams", "submit")
"""The stream store's calls that make a fork's effects durable: its data
streams, its state streams, then every append (the catalog's record, the
partition's checkpoints and markers)."""


def test_a_fork_crashing_at_any_step_leaves_no_fork_or_one_with_its_horizon(
    tmp_path: Path, clock: ManualClock
) -> None:
    # The horizon was once written after the catalog's record of the fork:
    # a crash between the two left a durable fork whose shared history lacked
    # what the cleaner removed, and its answer at such a time called exact.
    outcomes: list[bool] = []
    for step in range(64):  # bounded: a fork makes a handful of such calls
        node = tmp_path / str(step)
        with engine.open(node, config=CONFIG, clock=clock) as opened:
            opened.create_topic("state", 1, COMPACT)
            put(opened, [(b"k", b"v1", T0 - 300)])
            put(opened, [(b"k", b"v2", T0 - 200), (b"j", b"x", T0 - 250)])
            assert opened.flush(timeout=30)
            assert opened.cleaner.clean(opened.partition("state", 0), force=True)
            put(opened, [(b"k", b"v3", T0 - 100)])
            _crash_at_call(opened, step)
            try:
                opened.fork("state", name="state.fork")
            except _Crash:
                opened.close(flush=False)
            else:  # fewer calls than ``step``: a crash at each was tried
                for name in _FORK_STEPS:
                    delattr(opened.store, name)  # the store's own methods again
                break
        with engine.open(node, config=CONFIG, clock=clock) as reopened:
            forked = "state.fork" in reopened.list_topics()
            outcomes.append(forked)
            if forked:
                answer = reopened.state_at("state.fork", T0 - 300)
                assert not answer.exact, f"a crash at call {step} lost the fork's horizon"
                assert answer.partitions[0].as_of_ms == T0 - 200
                assert values(answer) == {b"k": b"v2", b"j": b"x"}
    else:
        raise AssertionError("a fork made more than 64 durable calls")
    # The catalog's record is a fork's last durable call: its horizon, abort
    # markers and checkpoint are durable before it, so a crash at any call
    # leaves no fork, and the fork made whole holds after a restart.
    assert outcomes and not any(outcomes)
    with engine.open(node, config=CONFIG, clock=clock) as reopened:
        answer = reopened.state_at("state.fork", T0 - 300)
        assert not answer.exact
        assert values(answer) == {b"k": b"v2", b"j": b"x"}


def _crash_at_call(opened: engine.Engine, step: int) -> None:
    """Raises _Crash instead of the stream store's ``step``-th call among
    _FORK_STEPS (counted from 0)."""
    calls = 0

    def crash_at(original: Callable[..., object]) -> Callable[..., object]:
        def crashing(*args: object, **kwargs: object) -> object:
            nonlocal calls
            if calls == step:
                raise _Crash
            calls += 1
            return original(*args, **kwargs)

        return crashing

    for name in _FORK_STEPS:
        setattr(opened.store, name, crash_at(getattr(opened.store, name)))


def test_only_committed_records_count(tmp_path: Path) -> None:
    with engine.open(tmp_path, config=CONFIG) as e:
        e.create_topic("state", 1, COMPACT)
        with e.producer(transactional_id="orders") as producer:
            producer.init_transactions(timeout=30)
            producer.begin_transaction()
            producer.send("state", b"committed", b"k", timestamp=T0)
            producer.commit_transaction(timeout=30)
            producer.begin_transaction()
            producer.send("state", b"aborted", b"k", timestamp=T0)
            producer.send("state", b"aborted", b"j", timestamp=T0)
            producer.flush(30)  # written, so the abort leaves it aborted (unsent, it would fail)
            producer.abort_transaction(timeout=30)
            producer.begin_transaction()
            producer.send("state", b"open", b"k", timestamp=T0).result(timeout=30)
            assert values(e.state_at("state", T0)) == {b"k": b"committed"}
            producer.abort_transaction(timeout=30)


def test_partitions_merge_and_a_query_is_checked(opened: engine.Engine) -> None:
    opened.create_topic("state", 2, COMPACT)
    put(opened, [(b"a", b"1", T0)], partition=0)
    put(opened, [(b"b", b"2", T0)], partition=1)
    assert values(opened.state_at("state", T0)) == {b"a": b"1", b"b": b"2"}
    assert values(opened.state_at("state", T0, partitions=[1])) == {b"b": b"2"}
    assert (
        asyncio.run(opened.state_at_async("state", T0)).values
        == opened.state_at("state", T0).values
    )
    with pytest.raises(InvalidStateQuery):
        opened.state_at("state")
    with pytest.raises(InvalidStateQuery):
        opened.state_at("state", T0, vector=OffsetVector({TopicPartition("state", 0): Position(1)}))
    with pytest.raises(InvalidStateQuery):
        opened.state_at("state", datetime(2026, 1, 1))
    with pytest.raises(UnknownPartition):
        opened.state_at("state", T0, partitions=[2])
    # A partition the vector places nowhere has no state below it to give.
    only_0 = OffsetVector({TopicPartition("state", 0): Position(1)})
    assert values(opened.state_at("state", vector=only_0, partitions=[0])) == {b"a": b"1"}
    with pytest.raises(InvalidStateQuery):
        opened.state_at("state", vector=only_0, partitions=[1])


@pytest.mark.parametrize("asked", ["blocking", "async"])
def test_the_state_of_an_unknown_topic_creates_no_topic(
    tmp_path: Path, clock: ManualClock, asked: str
) -> None:
    """A read never creates a topic, as in Kafka (only Produce and Metadata
    do): state_at of a topic that does not exist is UnknownTopic, where
    auto_create_topics is on too."""
    config = dataclasses.replace(CONFIG, auto_create_topics=True)
    with engine.open(tmp_path, config=config, clock=clock) as e:
        for at in (T0, None):  # a query refused for its arguments creates none either
            with pytest.raises(UnknownTopic):
                if asked == "async":
                    asyncio.run(e.state_at_async("nowhere", at))
                else:
                    e.state_at("nowhere", at)
        assert e.list_topics() == []


def test_a_vector_past_the_high_watermark_is_refused(tmp_path: Path) -> None:
    # Records below it are not written yet: answering the state as it is now
    # (and calling it exact) would change once they are.
    bucket = LocalStore(tmp_path / "bucket")
    with engine.open(tmp_path / "node", bucket, CONFIG) as opened:
        opened.create_topic("state", 1, COMPACT)
        put(opened, [(b"a", b"1", T0), (b"b", b"2", T0)])
        assert opened.flush(timeout=30)
        at_end = OffsetVector({TopicPartition("state", 0): Position(2)})
        past = OffsetVector({TopicPartition("state", 0): Position(3)})
        assert values(opened.state_at("state", vector=at_end)) == {b"a": b"1", b"b": b"2"}
        assert values(stored_state_at(bucket, "state", vector=at_end)) == {b"a": b"1", b"b": b"2"}
        with pytest.raises(OffsetOutOfRange) as refused:
            opened.state_at("state", vector=past)
        assert (refused.value.offset, refused.value.high_watermark) == (3, 2)
        with pytest.raises(OffsetOutOfRange):
            stored_state_at(bucket, "state", vector=past)


def test_a_time_the_log_has_not_reached_is_not_exact(tmp_path: Path, clock: ManualClock) -> None:
    # Records dated up to a time not reached yet can still be written: an
    # answer for it called exact would change once they are, still exact.
    bucket = LocalStore(tmp_path / "bucket")
    with engine.open(tmp_path / "node", bucket, CONFIG, clock=clock) as opened:
        opened.create_topic("state", 1, {**COMPACT, "message.timestamp.type": "LogAppendTime"})
        now = clock.time_ms()
        opened.producer().send("state", b"1", b"a").result(timeout=30)
        assert opened.flush(timeout=30)
        ahead = now + HOUR_MS
        for answer in (
            opened.state_at("state", ahead),
            asyncio.run(opened.state_at_async("state", ahead)),
            opened.state_at("state", now),  # a record appended later may still carry it
        ):
            assert values(answer) == {b"a": b"1"}
            assert not answer.exact
            assert answer.partitions[0].pending
            assert "not reached" in answer.partitions[0].describe()
        assert opened.state_at("state", now - 1).exact
        clock.advance(HOUR_MS / 1000 + 1)
        passed = opened.state_at("state", ahead)
        assert passed.exact and values(passed) == {b"a": b"1"}
        # The store holds what was uploaded: exact only before the latest
        # time a stored record carries (later ones may be in the WAL alone).
        stored = stored_state_at(bucket, "state", ahead)
        assert values(stored) == {b"a": b"1"}
        assert not stored.exact and stored.partitions[0].pending
        assert stored_state_at(bucket, "state", now - 1).exact
        opened.producer().send("state", b"2", b"a").result(timeout=30)
        assert not stored_state_at(bucket, "state", ahead).exact  # not uploaded yet
        assert opened.flush(timeout=30)
        uploaded = stored_state_at(bucket, "state", ahead)
        assert uploaded.exact and values(uploaded) == {b"a": b"1"}


# -- the property ------------------------------------------------------------------------

KEYS = [b"a", b"b", b"c"]


@dataclass(frozen=True)
class Put:
    key: bytes
    value: bytes | None
    timestamp: int


@dataclass(frozen=True)
class Clean:
    advance_ms: int
    min_lag_ms: int


@dataclass(frozen=True)
class Restart:
    pass


puts = st.builds(
    Put,
    st.sampled_from(KEYS),
    st.one_of(st.none(), st.binary(min_size=1, max_size=3)),
    st.integers(T0 - 10 * HOUR_MS, T0),
)
steps = st.lists(
    st.one_of(
        st.lists(puts, min_size=1, max_size=3),
        st.builds(Clean, st.integers(0, 6 * HOUR_MS), st.sampled_from([0, HOUR_MS, 3 * HOUR_MS])),
        st.just(Restart()),
    ),
    min_size=1,
    max_size=12,
)


def model_state(
    history: list[tuple[int, Put]], keep: Callable[[int, Put], bool]
) -> dict[bytes, bytes]:
    """Each key's last record (in offset order) among those ``keep`` keeps."""
    state: dict[bytes, bytes] = {}
    for offset, record in history:
        if not keep(offset, record):
            continue
        if record.value is None:
            state.pop(record.key, None)
        else:
            state[record.key] = record.value
    return state


def stored_offsets(e: engine.Engine) -> set[int]:
    out: set[int] = set()
    offset = 0
    while offset < e.partition("state", 0).high_watermark:
        fetched = e.fetch("state", 0, offset)
        for payload in fetched.records:
            out.update(r.offset for r in native.decode_records(payload))
        offset = fetched.next_offset
    return out


@settings(
    max_examples=int(os.environ.get("TIDELOG_STATE_EXAMPLES", "20")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(steps, st.lists(st.integers(T0 - 11 * HOUR_MS, T0 + HOUR_MS), min_size=1, max_size=4))
def test_state_at_matches_the_model_or_says_history_was_compacted(
    plan: list[list[Put] | Clean | Restart], times: list[int]
) -> None:
    clock = ManualClock(time_ms=T0)
    history: list[tuple[int, Put]] = []
    with tempfile.TemporaryDirectory() as directory:
        e = engine.open(directory, config=CONFIG, clock=clock)
        try:
            e.create_topic(
                "state", 1, {"cleanup.policy": "compact", "delete.retention.ms": HOUR_MS}
            )
            for step in plan:
                if isinstance(step, Restart):
                    e.close()
                    e = engine.open(directory, config=CONFIG, clock=clock)
                elif isinstance(step, Clean):
                    clock.advance(step.advance_ms / 1000)
                    e.alter_configs("state", {"min.compaction.lag.ms": str(step.min_lag_ms)})
                    assert e.flush(timeout=30)
                    e.cleaner.clean(e.partition("state", 0), force=True)
                else:
                    base = put(e, [(p.key, p.value, p.timestamp) for p in step])
                    history.extend((base + i, p) for i, p in enumerate(step))
            _check(e, history, times)
            e.close()
            e = engine.open(directory, config=CONFIG, clock=clock)
            _check(e, history, times)
        finally:
            e.close()


def _check(e: engine.Engine, history: list[tuple[int, Put]], times: list[int]) -> None:
    stored = stored_offsets(e)
    now = e.clock.time_ms()
    for at in times:
        answer = e.state_at("state", at)
        (partition,) = answer.partitions
        assert partition.as_of_ms is not None and partition.as_of_ms >= at
        assert values(answer) == model_state(
            history, lambda _o, r, cut=partition.as_of_ms: r.timestamp <= cut
        )
        # A time the clock has not passed may still get records dated before it.
        assert partition.pending == (partition.as_of_ms >= now)
        if partition.exact:
            assert partition.as_of_ms == at
        elif not partition.pending:
            # Really compacted: a record at or before the time asked is gone.
            assert any(o not in stored and r.timestamp <= at for o, r in history)
        end = max((o for o, _ in history), default=-1) + 1
        for offset in {0, end // 2, end}:
            below = e.state_at(
                "state", vector=OffsetVector({TopicPartition("state", 0): Position(offset)})
            )
            (partition,) = below.partitions
            assert partition.below_offset is not None and partition.below_offset >= offset
            assert values(below) == model_state(
                history, lambda o, _r, cut=partition.below_offset: o < cut
            )
            if not partition.exact:
                assert any(o not in stored and o < offset for o, _ in history)


def test_a_time_an_open_transactions_records_carry_is_not_exact(
    tmp_path: Path, clock: ManualClock
) -> None:
    # LogAppendTime dates a transaction's records when they are appended,
    # and read_committed shows them once it commits: until then a time at
    # or after them is not final, however far the clock has gone since.
    bucket = LocalStore(tmp_path / "bucket")
    with engine.open(tmp_path / "node", bucket, CONFIG, clock=clock) as opened:
        opened.create_topic("state", 1, {**COMPACT, "message.timestamp.type": "LogAppendTime"})
        opened.producer().send("state", b"1", b"a").result(timeout=30)
        first = clock.time_ms()
        clock.advance(1)
        with opened.producer(transactional_id="writer") as producer:
            producer.init_transactions(timeout=30)
            producer.begin_transaction()
            producer.send("state", b"2", b"a").result(timeout=30)  # dated first + 1
            clock.advance(1)
            assert opened.flush(timeout=30)
            later = clock.time_ms() - 1  # the clock has passed it
            answers = [
                opened.state_at("state", later),
                asyncio.run(opened.state_at_async("state", later)),
                stored_state_at(bucket, "state", later),
            ]
            # Before the latest committed record: final (the open
            # transaction's records were appended after it).
            before = opened.state_at("state", first - 1)
            producer.commit_transaction(timeout=30)
        assert opened.flush(timeout=30)
        committed = [opened.state_at("state", later), stored_state_at(bucket, "state", later)]
    for answer in answers:
        assert values(answer) == {b"a": b"1"}
        assert not answer.exact and answer.partitions[0].pending
    assert before.exact and values(before) == {}
    for answer in committed:  # what the answers above said may still change, and did
        assert answer.exact and values(answer) == {b"a": b"2"}


def test_a_time_an_append_not_yet_durable_carries_is_not_exact(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Dated on append, readable once its WAL write is synced: until then a
    # time at or after it is not final, however far the clock has gone.
    syncs = HeldSyncs(monkeypatch)
    try:
        with engine.open(tmp_path, config=CONFIG, clock=clock) as opened:
            opened.create_topic("state", 1, {**COMPACT, "message.timestamp.type": "LogAppendTime"})
            opened.producer().send("state", b"1", b"a").result(timeout=30)
            clock.advance(1)
            syncs.holding.set()
            pending = opened.submit("state", 0, native.encode_batch([RecordSpec(0, b"a", b"2")]))
            clock.advance(1)
            held = opened.state_at("state", clock.time_ms() - 1)
            syncs.holding.clear()
            syncs.released.set()
            pending.result(30)
            durable = opened.state_at("state", clock.time_ms() - 1)
    finally:
        syncs.released.set()
    assert values(held) == {b"a": b"1"} and not held.exact and held.partitions[0].pending
    assert durable.exact and values(durable) == {b"a": b"2"}
