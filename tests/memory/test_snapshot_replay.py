"""Snapshots and bounded replay on an engine: a snapshot is the vector of
what was durable (now, or at a time), a replay returns exactly the records
below a vector (from another, if given) and then ends, never skipping
records retention removed in silence."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import engine
from engine.authorization import AuthorizationConfig, TopicAuthorizationFailed
from engine.clock import ManualClock
from engine.errors import UnknownPartition, UnknownTopic
from engine.memory import Actor, AgentMemory
from engine.memory.replay import RecordsRemoved, ReplayStalled
from engine.memory.snapshot import VectorDiverged
from engine.memory.stored_state import stored_state_at
from engine.memory.vector import InvalidVector, OffsetVector, Position
from engine.topic_id import NO_TOPIC_ID
from engine.types import TopicPartition
from s3stream.store.local import LocalStore
from tests.engine.conftest import QUIET_STORE
from tests.engine.helpers_records import batch

T0 = TopicPartition("t", 0)
T1 = TopicPartition("t", 1)


def _produce(e: engine.Engine, partition: int, *values: bytes, timestamp: int = 1_000) -> None:
    e.produce("t", partition, batch(list(values), timestamp=timestamp))


def _values(records: object) -> list[tuple[int, int, bytes | None]]:
    return [(r.partition, r.offset, r.value) for r in records]  # type: ignore[attr-defined]


def test_a_snapshot_is_the_high_watermark_with_the_last_records_epoch(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node") as e:
        e.create_topic("t", partitions=2)
        _produce(e, 0, b"a", b"b", b"c")
        vector = e.snapshot(["t"])
        epoch, topic_id = e.partition("t", 0).leader_epoch, e.topic_id("t")
        assert vector == OffsetVector(
            {T0: Position(3, epoch, topic_id), T1: Position(0, -1, topic_id)}
        )
        assert e.earliest(["t"]) == OffsetVector(
            {T0: Position(0, -1, topic_id), T1: Position(0, -1, topic_id)}
        )


def test_an_unknown_topic_is_a_typed_error(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node") as e:
        e.create_topic("t", partitions=1)
        with pytest.raises(UnknownTopic):
            e.snapshot(["t", "nope"])
        with pytest.raises(UnknownTopic):
            asyncio.run(e.snapshot_async(["nope"], at=5))


def test_read_committed_cuts_before_an_open_transaction(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node") as e:
        e.create_topic("t", partitions=1)
        _produce(e, 0, b"before")
        with e.producer(transactional_id="tx") as producer:
            producer.init_transactions()
            producer.begin_transaction()
            producer.send("t", b"open", partition=0)
            producer.flush()
            assert e.snapshot(["t"])[T0].offset == 1
            assert e.snapshot(["t"], isolation_level="read_uncommitted")[T0].offset == 2
            producer.commit_transaction()
        assert e.snapshot(["t"])[T0].offset == 3  # the record and its marker


def test_a_snapshot_at_a_time_cuts_before_what_was_appended_after_it(tmp_path: Path) -> None:
    clock = ManualClock(time_ms=10_000)
    with engine.open(tmp_path / "node", clock=clock) as e:
        e.create_topic("t", partitions=1, configs={"message.timestamp.type": "LogAppendTime"})
        _produce(e, 0, b"a", b"b")  # appended at 10_000 whatever the producer said
        clock.advance(1.0)
        _produce(e, 0, b"c")  # at 11_000
        clock.advance(1.0)
        assert e.snapshot(["t"], at=9_999)[T0].offset == 0
        assert e.snapshot(["t"], at=10_000)[T0].offset == 2
        assert e.snapshot(["t"], at=10_999)[T0].offset == 2
        assert e.snapshot(["t"], at=11_000)[T0].offset == 3
        assert e.snapshot(["t"], at=99_000) == e.snapshot(["t"])
        assert asyncio.run(e.snapshot_async(["t"], at=10_500))[T0].offset == 2


def test_a_snapshot_at_a_time_on_create_time_uses_the_producers_timestamps(
    tmp_path: Path,
) -> None:
    with engine.open(tmp_path / "node") as e:
        e.create_topic("t", partitions=1)
        _produce(e, 0, b"a", b"b", timestamp=1_000)  # 1_000, 1_001
        _produce(e, 0, b"c", timestamp=5_000)
        assert e.snapshot(["t"], at=1_000)[T0].offset == 1
        assert e.snapshot(["t"], at=4_999)[T0].offset == 2


def test_replay_returns_exactly_the_records_below_the_vector_and_ends(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node") as e:
        e.create_topic("t", partitions=2)
        _produce(e, 0, b"a", b"b", b"c")
        _produce(e, 1, b"x")
        until = e.snapshot(["t"])
        _produce(e, 0, b"later")
        with e.replay(until) as replay:
            got = _values(replay)
            assert replay.at_end()
            assert replay.poll() == []
        assert sorted(got) == [(0, 0, b"a"), (0, 1, b"b"), (0, 2, b"c"), (1, 0, b"x")]
        since = OffsetVector({T0: Position(1)})
        with e.replay(until, since) as replay:
            assert sorted(_values(replay)) == [(0, 1, b"b"), (0, 2, b"c"), (1, 0, b"x")]
        with e.replay(until, since) as replay:
            with pytest.raises(ValueError):
                replay.poll(max_records=-1)  # not a count: no record handed out, none lost
            assert sorted(_values(replay.poll(max_records=10))) == [
                (0, 1, b"b"),
                (0, 2, b"c"),
                (1, 0, b"x"),
            ]


def test_a_replay_to_an_empty_vector_ends_at_once(tmp_path: Path) -> None:
    # No record is below it: nothing is owed, so there is nothing to wait for
    # (the stall timeout is short, so a wait shows as ReplayStalled).
    async def read(e: engine.Engine, until: OffsetVector) -> list[object]:
        async with e.replay(until, timeout=0.5) as replay:
            got = [r async for r in replay]
            assert await replay.poll_async() == []
            return got

    with engine.open(tmp_path / "node") as e:
        e.create_topic("t", partitions=1)
        _produce(e, 0, b"a")
        for until in (OffsetVector(), e.snapshot([])):
            with e.replay(until, timeout=0.5) as replay:
                assert replay.at_end()
                assert list(replay) == []
                assert replay.poll() == []
            assert asyncio.run(read(e, until)) == []


def test_async_replay(tmp_path: Path) -> None:
    async def read(e: engine.Engine, until: OffsetVector) -> list[tuple[int, int, bytes | None]]:
        async with e.replay(until) as replay:
            got = [(r.partition, r.offset, r.value) async for r in replay]
            assert replay.at_end()
            return got

    with engine.open(tmp_path / "node") as e:
        e.create_topic("t", partitions=1)
        _produce(e, 0, b"a", b"b")
        until = e.snapshot(["t"])
        _produce(e, 0, b"c")
        assert asyncio.run(read(e, until)) == [(0, 0, b"a"), (0, 1, b"b")]


def test_replay_leaves_out_aborted_records_and_markers(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node") as e:
        e.create_topic("t", partitions=1)
        with e.producer(transactional_id="tx") as producer:
            producer.init_transactions()
            for value, commit in ((b"kept", True), (b"dropped", False), (b"kept2", True)):
                producer.begin_transaction()
                producer.send("t", value, partition=0)
                if commit:
                    producer.commit_transaction()
                else:
                    # written, so the abort leaves it aborted (unsent, it would fail)
                    producer.flush()
                    producer.abort_transaction()
        until = e.snapshot(["t"])
        assert until[T0].offset == 6
        with e.replay(until) as replay:
            assert [r.value for r in replay] == [b"kept", b"kept2"]
        with e.replay(until, isolation_level="read_uncommitted") as replay:
            assert [r.value for r in replay] == [b"kept", b"dropped", b"kept2"]


def test_records_retention_removed_are_a_typed_error_not_a_later_start(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node") as e:
        e.create_topic("t", partitions=1)
        _produce(e, 0, b"a", b"b", b"c")
        until = e.snapshot(["t"])
        e.delete_records("t", 0, 2)
        with pytest.raises(RecordsRemoved) as raised:
            e.replay(until)
        assert (raised.value.offset, raised.value.log_start_offset) == (0, 2)
        with e.replay(until, e.earliest(["t"])) as replay:
            assert [r.value for r in replay] == [b"c"]


def test_records_removed_while_a_replay_runs_are_a_typed_error(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node") as e:
        e.create_topic("t", partitions=1)
        for i in range(4):
            _produce(e, 0, b"v%d" % i)
        with e.replay(e.snapshot(["t"]), max_partition_fetch_bytes=1) as replay:
            assert [r.offset for r in replay.poll(max_records=1)] == [0]
            e.delete_records("t", 0, 3)
            with pytest.raises(RecordsRemoved):
                while not replay.at_end():
                    replay.poll()


def test_a_replay_waiting_on_an_open_transaction_stalls_with_a_typed_error(
    tmp_path: Path,
) -> None:
    with engine.open(tmp_path / "node") as e:
        e.create_topic("t", partitions=1)
        with e.producer(transactional_id="tx") as producer:
            producer.init_transactions()
            producer.begin_transaction()
            producer.send("t", b"open", partition=0)
            producer.flush()
            until = e.snapshot(["t"], isolation_level="read_uncommitted")
            with e.replay(until, timeout=0.2) as replay, pytest.raises(ReplayStalled) as raised:
                list(replay)
            assert raised.value.waiting == {T0: (0, 1)}
            producer.abort_transaction()


def test_a_vector_past_the_log_or_a_since_past_until_is_refused(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node") as e:
        e.create_topic("t", partitions=1)
        _produce(e, 0, b"a")
        with pytest.raises(engine.OffsetOutOfRange):
            e.replay(OffsetVector({T0: Position(5)}))
        with pytest.raises(InvalidVector):
            e.replay(OffsetVector({T0: Position(1)}), OffsetVector({T0: Position(2)}))


@pytest.mark.parametrize("named", ["by_name", "since_id", "until_id"])
def test_a_vector_naming_a_partition_its_topic_never_had_is_unknown_partition(
    tmp_path: Path, named: str
) -> None:
    """The topic exists, and is the one the vectors name: its partition 5
    does not, which Kafka answers UNKNOWN_TOPIC_OR_PARTITION for; never a
    topic said not to exist, or said deleted."""
    with engine.open(tmp_path / "node") as e:
        e.create_topic("t", partitions=1)
        _produce(e, 0, b"a")
        topic_id = e.topic_id("t")
        absent = TopicPartition("t", 5)
        until = OffsetVector(
            {absent: Position(0, -1, topic_id if named == "until_id" else NO_TOPIC_ID)}
        )
        since = OffsetVector({absent: Position(0, -1, topic_id)}) if named == "since_id" else None
        with pytest.raises(UnknownPartition) as raised:
            e.replay(until, since, timeout=1)
        assert raised.value.partition == 5


def test_a_vector_replays_the_same_records_after_a_restart(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node") as e:
        e.create_topic("t", partitions=1)
        _produce(e, 0, b"a", b"b")
        until = e.snapshot(["t"])
        with e.replay(until) as replay:
            before = _values(replay)
    with engine.open(tmp_path / "node") as e:
        _produce(e, 0, b"c")
        assert e.snapshot(["t"])[T0].leader_epoch >= until[T0].leader_epoch
        with e.replay(OffsetVector.from_text(until.to_text())) as replay:
            assert _values(replay) == before


def test_a_vector_naming_records_a_takeover_lost_is_refused(tmp_path: Path) -> None:
    # A local-durability owner acknowledged records its WAL alone held, and a
    # snapshot counted them; its machine is lost, a new owner opens the bucket
    # and writes other records at those offsets, in its own leader epoch.
    bucket = LocalStore(tmp_path / "bucket")
    quiet = engine.EngineConfig(store=QUIET_STORE, cleaner_interval_s=3600.0)
    lost_owner = engine.open(tmp_path / "lost", bucket, quiet)
    try:
        lost_owner.create_topic("t", 1, {"cleanup.policy": "compact"})
        _produce(lost_owner, 0, b"kept-0", b"kept-1")
        assert lost_owner.flush(timeout=30)
        _produce(lost_owner, 0, b"lost-2", b"lost-3")
        seen = lost_owner.snapshot(["t"])
        uploaded = OffsetVector({T0: Position(2, seen[T0].leader_epoch, seen[T0].topic_id)})
        with engine.open(tmp_path / "new", bucket, quiet) as e:
            _produce(e, 0, b"new-2", b"new-3")
            assert e.offsets("t", 0) == (0, 4)  # the vector is inside the log
            for refuse in (
                lambda: e.replay(seen),
                lambda: e.replay(seen, uploaded),
                lambda: e.state_at("t", vector=seen),
                lambda: e.fork("t", seen, name="eval"),
            ):
                with pytest.raises(VectorDiverged) as refused:
                    refuse()
                assert (refused.value.offset, refused.value.epoch_end) == (4, 2)
            assert e.flush(timeout=30)
            with pytest.raises(VectorDiverged):  # from the object store alone too
                stored_state_at(bucket, "t", vector=seen)
            assert stored_state_at(bucket, "t", vector=uploaded).values[b"k"].value == b"kept-1"
            # What the lost owner had uploaded is still what the vector named.
            with e.replay(uploaded) as replay:
                assert [r.value for r in replay] == [b"kept-0", b"kept-1"]
            assert e.state_at("t", vector=uploaded).values[b"k"].value == b"kept-1"
            # A snapshot of the new owner's log reads it whole.
            with e.replay(e.snapshot(["t"])) as replay:
                assert [r.value for r in replay][2:] == [b"new-2", b"new-3"]
    finally:
        lost_owner.close()  # fenced: what only its WAL held is not replayed


def test_a_replay_for_a_principal_that_may_not_read_says_only_that(tmp_path: Path) -> None:
    """As Kafka answers TOPIC_AUTHORIZATION_FAILED before looking at offsets
    or whether the topic exists: a replay opened for a principal that may
    not read reveals neither the log's bounds nor its leader epochs."""
    config = engine.EngineConfig(
        store=QUIET_STORE, authorization=AuthorizationConfig(super_users=("User:admin",))
    )
    with engine.open(tmp_path, config=config) as e:
        e.create_topic("secret", 1)
        e.produce("secret", 0, batch([b"a", b"b", b"c"]))
        e.delete_records("secret", 0, 1)
        secret = TopicPartition("secret", 0)
        places = [
            Position(3),  # inside the log: the reader is refused on its first read
            Position(10),  # past the high watermark
            Position(3, leader_epoch=7),  # an epoch the log never had
        ]
        for position in places:
            with pytest.raises(TopicAuthorizationFailed):
                e.replay(OffsetVector({secret: position}), principal="User:nobody")
        below_the_start = OffsetVector({secret: Position(3)})
        with pytest.raises(TopicAuthorizationFailed):
            e.replay(
                below_the_start, since=OffsetVector({secret: Position(0)}), principal="User:nobody"
            )
        with pytest.raises(TopicAuthorizationFailed):
            e.replay(
                OffsetVector({TopicPartition("absent", 0): Position(1)}), principal="User:nobody"
            )
        with pytest.raises(RecordsRemoved):  # the same, for one who may read
            e.replay(
                below_the_start, since=OffsetVector({secret: Position(0)}), principal="User:admin"
            )


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), -1.0, True, False])
def test_a_replay_or_memory_without_a_finite_timeout_is_refused(
    tmp_path: Path, timeout: float
) -> None:
    # NaN never ran out (the replay waited for ever on an open transaction),
    # infinity failed deep in a wait: every wait here has a bound. A bool is
    # an int to isinstance, but True as "one second" is a slip, not a bound.
    with engine.open(tmp_path, config=engine.EngineConfig(store=QUIET_STORE)) as e:
        e.create_topic("t", 1)
        _produce(e, 0, b"a")
        with pytest.raises(ValueError):
            e.replay(e.snapshot(["t"]), timeout=timeout)
        with pytest.raises(ValueError):
            AgentMemory(e, Actor("agent", "a"), timeout=timeout)
