"""What a failed write of the groups' state leaves behind: the group as it
was before the request. A write the store refuses (nothing accepted) or
accepts and then fails (the WAL's write failing) is answered
NOT_COORDINATOR, as Kafka answers a write its log refused, and the
consumer group, the classic group and the offsets it touched are what
they were, in the engine that failed to write and in the engine a restart
opens on the same WAL and bucket (engine/groups/failed_writes.py, as
Kafka's coordinator reverts to its snapshot before the failed write)."""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.clock import ManualClock
from engine.engine import Engine
from engine.errors import StorageError
from engine.groups import LeaveResult
from engine.groups.consumer_group import ConsumerGroup
from engine.groups.consumer_heartbeat import Heartbeat
from engine.groups.records import read_state
from engine.protocol.consumer_protocol import (
    Assignment,
    Subscription,
    encode_assignment,
    encode_subscription,
)
from engine.protocol.kafka_code import KafkaCode
from engine.types import OffsetAndMetadata, TopicPartition
from s3stream import StoreFailed
from tests.engine.conftest import FAST_STORE
from tests.engine.helpers_records import batch
from tests.engine.reopening import reopening
from tests.engine.test_group_migration import _taken_over
from tests.engine.test_groups import advance_until, wait_for
from wal.segment import SegmentWriter

TIMEOUT = 30.0
TOPIC = "t"
GROUPS = engine.GroupConfig(group_initial_rebalance_delay_ms=0, group_min_session_timeout_ms=10)


def refuse_next_group_write(monkeypatch: pytest.MonkeyPatch, e: Engine) -> None:
    """The store refuses the groups state log's next append, as a failed
    or fenced store does (nothing accepted); later appends are written."""
    state_log = e.groups._run.state_log
    submit = state_log.store.submit
    failures = iter([StoreFailed(OSError(errno.EIO, "the object store is down"))])

    def submit_failing_once(stream_id: int, *args: Any, **kwargs: Any) -> Future[int]:
        failure = next(failures, None) if stream_id == state_log.stream_id else None
        if failure is not None:
            raise failure
        return submit(stream_id, *args, **kwargs)

    monkeypatch.setattr(state_log.store, "submit", submit_failing_once)


def fail_wal_writes(monkeypatch: pytest.MonkeyPatch, e: Engine) -> None:
    """The WAL's next write fails before a byte reaches the file: the
    append was accepted, and the store fails with the WAL."""

    def failing_write(self: SegmentWriter, buffers: list[bytes | memoryview]) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(SegmentWriter, "write", failing_write)


FAILURES = {"store refuses": refuse_next_group_write, "WAL write fails": fail_wal_writes}


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Callable[[], Engine]]:
    """Opens the engine on the same WAL and bucket each time (closing the
    one before), on a clock that stands: the classic members' sessions and
    rebalance timeouts run out only when a test moves it, not while a
    loaded machine restarts an engine."""
    config = engine.EngineConfig(store=FAST_STORE, cleaner_interval_s=3600, groups=GROUPS)
    yield from reopening(tmp_path, config, TOPIC, 4, ManualClock())


def _heartbeat(e: Engine, member_id: str, epoch: int, group_id: str = "g") -> Any:
    return e.groups.consumer_group_heartbeat(
        Heartbeat(
            group_id,
            member_id,
            epoch,
            rebalance_timeout_ms=30_000,
            subscribed_topic_names=[TOPIC],
            owned_partitions={},
        )
    ).result(TIMEOUT)


def _consumer_group(e: Engine) -> Any:
    (described,) = e.groups.consumer_group_describe(["g"])
    members = sorted(
        (m.member_id, m.member_epoch, m.assignment, m.target_assignment) for m in described.members
    )
    return described.error, described.group_epoch, described.assignment_epoch, members


def _classic_group(e: Engine, group_id: str) -> Any:
    (described,) = e.groups.describe_groups([group_id])
    members = sorted((m.member_id, m.assignment) for m in described.members)
    return described.error, described.state, described.protocol_name, members


def _offsets(e: Engine, group_id: str) -> dict[TopicPartition, int | None]:
    fetched = e.groups.fetch_offsets(group_id, [TopicPartition(TOPIC, p) for p in range(2)])
    return {tp: (om.offset if om is not None else None) for tp, (om, _) in fetched.items()}


@pytest.mark.parametrize("failure", FAILURES)
def test_a_consumer_group_heartbeat_whose_write_fails_changes_nothing(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    first = node()
    joined = _heartbeat(first, "a", 0)
    assert joined.error == KafkaCode.NONE
    before = _consumer_group(first)
    with monkeypatch.context() as faults:
        FAILURES[failure](faults, first)
        refused = _heartbeat(first, "b", 0)
    assert refused.error == KafkaCode.NOT_COORDINATOR
    assert _consumer_group(first) == before  # "b" is not a member, the epoch did not move
    if failure == "store refuses":  # the store writes on: so does the group
        assert _heartbeat(first, "a", joined.member_epoch).error == KafkaCode.NONE
        assert _heartbeat(first, "b", 0).error == KafkaCode.NONE
        before = _consumer_group(first)
    restarted = node()
    assert _consumer_group(restarted) == before


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("epoch", [-1, -2])
def test_a_consumer_protocol_leave_whose_write_fails_is_answered_not_coordinator(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch, failure: str, epoch: int
) -> None:
    """A ConsumerGroupHeartbeat that leaves (-1; -2, a static member for
    now) is answered once its write is durable: NOT_COORDINATOR when it
    fails, the member still in the group at its epoch."""
    first = node()
    joined = first.groups.consumer_group_heartbeat(
        Heartbeat(
            "g",
            "a",
            0,
            instance_id="i-a" if epoch == -2 else None,
            rebalance_timeout_ms=30_000,
            subscribed_topic_names=[TOPIC],
            owned_partitions={},
        )
    ).result(TIMEOUT)
    assert joined.error == KafkaCode.NONE
    before = _consumer_group(first)
    with monkeypatch.context() as faults:
        FAILURES[failure](faults, first)
        left = first.groups.consumer_group_heartbeat(
            Heartbeat("g", "a", epoch, instance_id="i-a" if epoch == -2 else None)
        ).result(TIMEOUT)
    assert left.error == KafkaCode.NOT_COORDINATOR
    assert _consumer_group(first) == before


def _stable_classic_group(e: Engine, group_id: str) -> Any:
    """A classic group Stable with one member; returns its JoinGroup answer."""
    joined = e.groups.join_group(
        group_id, "", None, "consumer", [("range", b"m")], 10_000, 5_000,
        require_known_member_id=False,
    ).result(TIMEOUT)  # fmt: skip
    assert joined.error == KafkaCode.NONE
    synced = e.groups.sync_group(
        group_id, joined.generation_id, joined.member_id, None, "consumer", "range",
        {joined.member_id: b"assigned"},
    ).result(TIMEOUT)  # fmt: skip
    assert synced.error == KafkaCode.NONE
    return joined


def _stored_classic_group(e: Engine, group_id: str) -> Any:
    """The classic group's record in the state log: (generation, member ids)."""
    stored = read_state(e.groups._run.state_log.items()).classic_groups[group_id]
    return stored.generation_id, [m.member_id for m in stored.members]


@pytest.mark.parametrize("failure", FAILURES)
def test_a_classic_group_emptied_by_a_write_that_fails_stays_empty(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """The last member leaves: the group's Empty record fails to write, and
    the leave is answered NOT_COORDINATOR once it has. The group stays
    Empty, its member gone, as Kafka's ClassicGroup (which its
    coordinator's revert never touches) stays. A store that writes again
    is given the record again: a restart loads the Empty group memory
    holds. A failed store takes no write until the engine is opened again:
    its restart loads the generation before, as Kafka's does."""
    first = node()
    joined = _stable_classic_group(first, "c")
    stable = _classic_group(first, "c")
    assert stable[1] == "Stable"
    with monkeypatch.context() as faults:
        FAILURES[failure](faults, first)
        left = first.groups.leave_group("c", [(joined.member_id, None)]).result(TIMEOUT)
    assert left == LeaveResult(KafkaCode.NOT_COORDINATOR, [])
    empty = _classic_group(first, "c")
    assert empty[1:] == ("Empty", "", [])
    if failure == "WAL write fails":
        assert _classic_group(node(), "c") == stable
        return
    clock = first.clock
    assert isinstance(clock, ManualClock)
    advance_until(
        clock, lambda: _stored_classic_group(first, "c") == (joined.generation_id + 1, [])
    )
    assert _classic_group(first, "c") == empty
    assert _classic_group(node(), "c") == empty


@pytest.mark.parametrize("failure", FAILURES)
def test_a_classic_members_leave_from_a_consumer_group_whose_write_fails_changes_nothing(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """A classic member of a consumer group leaves (LeaveGroup): the write
    deleting it fails, the leave is answered NOT_COORDINATOR once it has,
    and the group still holds the member, as its stored records do."""
    first = node()
    classic, _ = _taken_over(first.groups)
    before = _consumer_group(first)
    assert classic in [member for member, *_ in before[3]]
    with monkeypatch.context() as faults:
        FAILURES[failure](faults, first)
        left = first.groups.leave_group("g", [(classic, None)]).result(TIMEOUT)
    assert left == LeaveResult(KafkaCode.NOT_COORDINATOR, [])
    assert _consumer_group(first) == before
    restarted = node()
    assert _consumer_group(restarted) == before


@pytest.mark.parametrize("failure", FAILURES)
def test_a_group_deletion_whose_write_fails_keeps_the_group_and_its_offsets(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    first = node()
    offsets = {TopicPartition(TOPIC, 0): OffsetAndMetadata(5)}
    committed = first.groups.commit_offsets("d", -1, "", None, offsets).result(TIMEOUT)
    assert committed == {TopicPartition(TOPIC, 0): KafkaCode.NONE}
    with monkeypatch.context() as faults:
        FAILURES[failure](faults, first)
        deleted = first.groups.delete_groups(["d"]).result(TIMEOUT)
    assert deleted == {"d": KafkaCode.NOT_COORDINATOR}
    expected = {TopicPartition(TOPIC, 0): 5, TopicPartition(TOPIC, 1): None}
    assert "d" in [g.group_id for g in first.groups.list_groups()]
    assert _offsets(first, "d") == expected
    restarted = node()
    assert "d" in [g.group_id for g in restarted.groups.list_groups()]
    assert _offsets(restarted, "d") == expected


@pytest.mark.parametrize("failure", FAILURES)
def test_an_offset_delete_whose_write_fails_keeps_the_offsets(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    first = node()
    offsets = {TopicPartition(TOPIC, p): OffsetAndMetadata(3 + p) for p in range(2)}
    first.groups.commit_offsets("o", -1, "", None, offsets).result(TIMEOUT)
    with monkeypatch.context() as faults:
        FAILURES[failure](faults, first)
        answer = first.groups.delete_offsets("o", [TopicPartition(TOPIC, 0)]).result(TIMEOUT)
    assert answer == {TopicPartition(TOPIC, 0): KafkaCode.NOT_COORDINATOR}
    expected = {TopicPartition(TOPIC, 0): 3, TopicPartition(TOPIC, 1): 4}
    assert _offsets(first, "o") == expected
    restarted = node()
    assert _offsets(restarted, "o") == expected


def test_a_refused_commit_is_not_written_by_a_later_compaction(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state log kept a refused record's change in memory, and its next
    compaction rewrote it: the commit its client was told failed was
    loaded by the next start."""
    first = node()
    tp = TopicPartition(TOPIC, 0)
    with monkeypatch.context() as faults:
        refuse_next_group_write(faults, first)
        refused = first.groups.commit_offsets("k", -1, "", None, {tp: OffsetAndMetadata(9)})
        assert refused.result(TIMEOUT) == {tp: KafkaCode.NOT_COORDINATOR}
    first.groups._run.state_log.compact()
    assert _offsets(first, "k")[tp] is None
    restarted = node()
    assert _offsets(restarted, "k")[tp] is None


def test_offsets_of_a_deleted_topic_are_not_put_back_when_their_deletion_fails(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A topic's deletion is durable in the catalog; the deletion of its
    offsets from the groups' state log is refused: those offsets are not
    the group's again (a start drops them too), the other topic's stay."""
    first = node()
    first.create_topic("u", 1)
    offsets = {
        TopicPartition(TOPIC, 0): OffsetAndMetadata(1),
        TopicPartition("u", 0): OffsetAndMetadata(2),
    }
    first.groups.commit_offsets("x", -1, "", None, offsets).result(TIMEOUT)
    with monkeypatch.context() as faults:
        refuse_next_group_write(faults, first)
        first.delete_topic("u")

    def committed(e: Engine) -> dict[TopicPartition, int]:
        fetched = e.groups.fetch_offsets("x", None)
        return {tp: om.offset for tp, (om, _) in fetched.items() if om is not None}

    assert committed(first) == {TopicPartition(TOPIC, 0): 1}
    assert committed(node()) == {TopicPartition(TOPIC, 0): 1}


def _consumer_protocol_join(e: Engine, group_id: str, member_id: str = "") -> Future[Any]:
    metadata = encode_subscription(Subscription([TOPIC], None, []), 1)
    return e.groups.join_group(
        group_id, member_id, None, "consumer", [("range", metadata)], 10_000, 5_000,
        require_known_member_id=False,
    )  # fmt: skip


def _sync_everything(e: Engine, group_id: str, leader: Any) -> None:
    """The classic group's leader syncs, assigned every partition of TOPIC."""
    everything = encode_assignment(Assignment([TopicPartition(TOPIC, p) for p in range(4)]))
    synced = e.groups.sync_group(
        group_id, leader.generation_id, leader.member_id, None, "consumer", "range",
        {leader.member_id: everything},
    ).result(TIMEOUT)  # fmt: skip
    assert synced.error == KafkaCode.NONE


@pytest.mark.parametrize("failure", FAILURES)
def test_a_takeover_whose_write_fails_leaves_the_classic_group(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """A consumer-protocol member takes a classic group with members over
    (docs/design/0078) in one write: refused, the classic group is there
    with its member, in memory and after a restart, and no consumer group."""
    first = node()
    joined = _consumer_protocol_join(first, "m").result(TIMEOUT)
    _sync_everything(first, "m", joined)
    before = _classic_group(first, "m")
    with monkeypatch.context() as faults:
        FAILURES[failure](faults, first)
        refused = _heartbeat(first, "modern", 0, "m")
    assert refused.error == KafkaCode.NOT_COORDINATOR
    assert _classic_group(first, "m") == before
    assert first.groups.consumer_group_describe(["m"])[0].error == KafkaCode.GROUP_ID_NOT_FOUND
    restarted = node()
    assert _classic_group(restarted, "m") == before
    assert restarted.groups.consumer_group_describe(["m"])[0].error == KafkaCode.GROUP_ID_NOT_FOUND


def _fail_the_store(monkeypatch: pytest.MonkeyPatch, e: Engine) -> None:
    """The WAL's next write fails (a record of the topic's): the store stops."""
    fail_wal_writes(monkeypatch, e)
    with pytest.raises(StorageError):
        e.produce(TOPIC, 1, batch([b"x"]))
    assert e.groups._run.state_log.store.fenced_or_failed()


@pytest.mark.parametrize("commit", ["fails", "is durable"])
def test_a_refused_offset_delete_behind_a_commit_in_flight_keeps_the_stored_offset(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch, commit: str
) -> None:
    """A commit is written; the store fails before the coordinator hears
    of its outcome (its thread is late: the lock is held here); an
    OffsetDelete of the same partition is refused at once. The offset the
    state log holds once the commit's outcome is known (the commit's, or
    the one before it) is the committed one, in memory as after a restart:
    the refused deletion had dropped it, and the commit it waited for
    never made it visible."""
    first = node()
    tp = TopicPartition(TOPIC, 0)
    first.groups.commit_offsets("w", -1, "", None, {tp: OffsetAndMetadata(3)}).result(TIMEOUT)
    state_log = first.groups._run.state_log
    with monkeypatch.context() as faults, first.groups._locked():
        if commit == "fails":
            held = threading.Event()

            def held_then_failing(self: SegmentWriter, buffers: list[bytes | memoryview]) -> None:
                held.wait(TIMEOUT)
                raise OSError(errno.EIO, "Input/output error")

            faults.setattr(SegmentWriter, "write", held_then_failing)
            committing = first.groups.commit_offsets("w", -1, "", None, {tp: OffsetAndMetadata(7)})
            held.set()
            wait_for(state_log.store.fenced_or_failed)
        else:
            end = state_log.store.end_offset(state_log.stream_id)
            committing = first.groups.commit_offsets("w", -1, "", None, {tp: OffsetAndMetadata(7)})
            wait_for(lambda: state_log.store.end_offset(state_log.stream_id) > end)
            _fail_the_store(faults, first)
        deleting = first.groups.delete_offsets("w", [tp])
    expected = 3 if commit == "fails" else 7
    answer = KafkaCode.NOT_COORDINATOR if commit == "fails" else KafkaCode.NONE
    assert committing.result(TIMEOUT) == {tp: answer}
    assert deleting.result(TIMEOUT) == {tp: KafkaCode.NOT_COORDINATOR}
    assert _offsets(first, "w")[tp] == expected
    assert _offsets(node(), "w")[tp] == expected


def test_a_refused_leave_behind_a_write_in_flight_is_answered_once_its_failure_is_taken(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit is durable but the coordinator has not taken its outcome
    (its timer thread is busy); the store fails; the last member's leave
    is refused at once. Its NOT_COORDINATOR waits for the commit's
    outcome (the failed writes' groups are settled only then), and the
    group is Empty: the member is gone, as from Kafka's ClassicGroup. The
    store failed: a restart loads the Stable group the state log holds."""
    first = node()
    joined = _stable_classic_group(first, "c")
    before = _classic_group(first, "c")
    busy, free = threading.Event(), threading.Event()

    def occupy() -> None:
        busy.set()
        free.wait(TIMEOUT)

    first.groups._run._timers.call_soon(occupy)
    assert busy.wait(TIMEOUT)
    tp = TopicPartition(TOPIC, 0)
    state_log = first.groups._run.state_log
    end = state_log.store.end_offset(state_log.stream_id)
    try:
        with monkeypatch.context() as faults:
            committing = first.groups.commit_offsets("w", -1, "", None, {tp: OffsetAndMetadata(7)})
            wait_for(lambda: state_log.store.end_offset(state_log.stream_id) > end)
            _fail_the_store(faults, first)
            leaving = first.groups.leave_group("c", [(joined.member_id, None)])
            assert not leaving.done()  # the commit's outcome is not taken yet
    finally:
        free.set()
    assert committing.result(TIMEOUT) == {tp: KafkaCode.NONE}
    assert leaving.result(TIMEOUT) == LeaveResult(KafkaCode.NOT_COORDINATOR, [])
    assert _classic_group(first, "c")[1:] == ("Empty", "", [])
    assert _classic_group(node(), "c") == before


@pytest.mark.parametrize("failure", FAILURES)
def test_a_takeover_whose_write_fails_keeps_the_classic_groups_rebalance(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """A classic group is rebalancing (a second member joined, the first
    not rejoined yet) when a consumer-protocol member takes it over, and
    that write fails. The classic group is back as memory held it, both
    members in its rebalance, as Kafka's revert puts the same ClassicGroup
    back: the rebalance was dropped with the joined member, rebuilt
    Stable from the state log. The rebalance then ends as any does, and
    what it stores is what a restart loads."""
    first = node()
    leader = _consumer_protocol_join(first, "m").result(TIMEOUT)
    _sync_everything(first, "m", leader)
    joining = _consumer_protocol_join(first, "m")
    (described,) = first.groups.describe_groups(["m"])
    assert described.state == "PreparingRebalance" and len(described.members) == 2
    with monkeypatch.context() as faults:
        FAILURES[failure](faults, first)
        refused = _heartbeat(first, "modern", 0, "m")
    assert refused.error == KafkaCode.NOT_COORDINATOR
    assert first.groups.consumer_group_describe(["m"])[0].error == KafkaCode.GROUP_ID_NOT_FOUND
    (described,) = first.groups.describe_groups(["m"])
    assert described.state == "PreparingRebalance"
    members = {m.member_id for m in described.members}
    assert leader.member_id in members and len(members) == 2
    if joining.done():  # answered by the takeover: it joins again with its id
        answered = joining.result()
        assert answered.error == KafkaCode.REBALANCE_IN_PROGRESS
        joining = _consumer_protocol_join(first, "m", answered.member_id)
    rejoined = _consumer_protocol_join(first, "m", leader.member_id).result(TIMEOUT)
    joined = joining.result(TIMEOUT)
    assert (rejoined.error, joined.error) == (KafkaCode.NONE, KafkaCode.NONE)
    assert rejoined.generation_id == joined.generation_id == leader.generation_id + 1
    assert {rejoined.member_id, joined.member_id} == members
    if failure == "WAL write fails":  # the store takes no write: a restart loads generation 1
        restarted = _classic_group(node(), "m")
        assert restarted[1] == "Stable" and [m for m, _ in restarted[3]] == [leader.member_id]
        return
    new_leader, follower = (rejoined, joined) if rejoined.members else (joined, rejoined)
    half = encode_assignment(Assignment([TopicPartition(TOPIC, p) for p in range(2)]))
    syncs = [
        first.groups.sync_group(
            "m", follower.generation_id, follower.member_id, None, "consumer", "range", {}
        ),
        first.groups.sync_group(
            "m", new_leader.generation_id, new_leader.member_id, None, "consumer", "range",
            {new_leader.member_id: half, follower.member_id: half},
        ),
    ]  # fmt: skip
    assert [s.result(TIMEOUT).error for s in syncs] == [KafkaCode.NONE, KafkaCode.NONE]
    in_memory = _classic_group(first, "m")
    assert in_memory[1] == "Stable" and {m for m, _ in in_memory[3]} == members
    assert _classic_group(node(), "m") == in_memory


@pytest.mark.parametrize("failure", FAILURES)
def test_a_downgrade_whose_write_fails_keeps_the_consumer_group(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """The last consumer-protocol member of a group with a classic member
    leaves: a classic group takes the group's place in memory and its
    write fails. The group is the consumer group it was, with the member
    that left (its leave answered NOT_COORDINATOR), in memory and after a
    restart: as Kafka's revert puts its timeline back (the classic group
    it made is dropped with it), what the state log holds."""
    first = node()
    classic, _ = _taken_over(first.groups)
    before = _consumer_group(first)
    (modern,) = [m for m, *_ in before[3] if m != classic]
    epoch = next(e for m, e, *_ in before[3] if m == modern)
    with monkeypatch.context() as faults:
        FAILURES[failure](faults, first)
        left = first.groups.consumer_group_heartbeat(Heartbeat("g", modern, -1)).result(TIMEOUT)
    assert left.error == KafkaCode.NOT_COORDINATOR
    assert epoch >= 0 and _consumer_group(first) == before
    assert first.groups.describe_groups(["g"])[0].error == KafkaCode.GROUP_ID_NOT_FOUND
    assert _consumer_group(node()) == before


def test_a_takeover_whose_heartbeat_raises_leaves_the_classic_group(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The takeover's heartbeat raises (a defect, not an answer): the
    classic group, set aside while the consumer group is built, is there
    again, and no consumer group."""
    first = node()
    leader = _consumer_protocol_join(first, "m").result(TIMEOUT)
    synced = first.groups.sync_group(
        "m", leader.generation_id, leader.member_id, None, "consumer", "range",
        {leader.member_id: b""},
    ).result(TIMEOUT)  # fmt: skip
    assert synced.error == KafkaCode.NONE
    before = _classic_group(first, "m")

    def raising(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a defect")

    with monkeypatch.context() as faults:
        faults.setattr(ConsumerGroup, "heartbeat", raising)
        with pytest.raises(RuntimeError):
            first.groups.consumer_group_heartbeat(
                Heartbeat(
                    "m", "modern", 0, rebalance_timeout_ms=30_000,
                    subscribed_topic_names=[TOPIC], owned_partitions={},
                )
            )  # fmt: skip
    assert _classic_group(first, "m") == before
    assert first.groups.consumer_group_describe(["m"])[0].error == KafkaCode.GROUP_ID_NOT_FOUND
