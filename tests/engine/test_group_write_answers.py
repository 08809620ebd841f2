"""When a request whose group write failed is answered, and what a classic
group in a rebalance keeps. A write refused while an earlier write is
still being written cannot have its groups rebuilt until that one's
outcome is known (docs/design/0095); its request is answered only then,
never while its group still shows what the failed write changed, as
Kafka's coordinator answers a failed write after reverting to its
snapshot (docs/design/0102). A classic group's assignment is applied
once durable: a failed write of it leaves the group in its rebalance,
as Kafka's ClassicGroup, which its snapshots never revert, is left."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.engine import Engine
from engine.groups.consumer_heartbeat import Heartbeat
from engine.protocol.kafka_code import KafkaCode
from engine.types import OffsetAndMetadata, TopicPartition
from tests.engine.conftest import FAST_STORE
from tests.engine.reopening import reopening
from tests.engine.test_group_write_failures import (
    FAILURES,
    GROUPS,
    TOPIC,
    _classic_group,
    _consumer_group,
    _fail_the_store,
)
from tests.engine.test_groups import wait_for

TIMEOUT = 10.0
PROTOCOLS = [("range", b"m")]


@pytest.fixture
def e(tmp_path: Path) -> Iterator[Engine]:
    config = engine.EngineConfig(store=FAST_STORE, cleaner_interval_s=3600, groups=GROUPS)
    opened = engine.open(tmp_path / "data", f"file://{tmp_path / 'objects'}", config)
    opened.create_topic(TOPIC, 4)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[Callable[[], Engine]]:
    """Opens the engine on the same WAL and bucket each time (closing the
    one before)."""
    config = engine.EngineConfig(store=FAST_STORE, cleaner_interval_s=3600, groups=GROUPS)
    yield from reopening(tmp_path, config, TOPIC, 4)


def _join(e: Engine, group_id: str, member_id: str = "", instance_id: str | None = None) -> Any:
    return e.groups.join_group(
        group_id, member_id, instance_id, "consumer", PROTOCOLS, 10_000, 5_000,
        require_known_member_id=False,
    )  # fmt: skip


def _sync(e: Engine, group_id: str, joined: Any, assignments: dict[str, bytes]) -> Any:
    return e.groups.sync_group(
        group_id, joined.generation_id, joined.member_id, None, "consumer", "range", assignments
    )


def _stable(e: Engine, group_id: str, instance_id: str | None = None) -> Any:
    joined = _join(e, group_id, instance_id=instance_id).result(TIMEOUT)
    assert joined.error == KafkaCode.NONE
    synced = _sync(e, group_id, joined, {joined.member_id: b"assigned"}).result(TIMEOUT)
    assert synced.error == KafkaCode.NONE
    return joined


def _heartbeat(e: Engine, member_id: str) -> Future[Any]:
    return e.groups.consumer_group_heartbeat(
        Heartbeat(
            "g",
            member_id,
            0,
            rebalance_timeout_ms=30_000,
            subscribed_topic_names=[TOPIC],
            owned_partitions={},
        )
    )


def _behind_a_write_in_flight(
    e: Engine, monkeypatch: pytest.MonkeyPatch, send: Callable[[], Future[Any]]
) -> Future[Any]:
    """A commit is durable but the coordinator has not taken its outcome
    (its timer thread is busy); the store fails; ``send``'s write is
    refused at once. Its answer must wait for the rebuild, which waits for
    the commit's outcome: it is asserted not given before the timer
    thread is free. Returns that answer."""
    busy, free = threading.Event(), threading.Event()

    def occupy() -> None:
        busy.set()
        free.wait(TIMEOUT)

    e.groups._run._timers.call_soon(occupy)
    assert busy.wait(TIMEOUT)
    tp = TopicPartition(TOPIC, 0)
    state_log = e.groups._run.state_log
    end = state_log.store.end_offset(state_log.stream_id)
    try:
        with monkeypatch.context() as faults:
            committing = e.groups.commit_offsets("w", -1, "", None, {tp: OffsetAndMetadata(7)})
            wait_for(lambda: state_log.store.end_offset(state_log.stream_id) > end)
            _fail_the_store(faults, e)
            answer = send()
            assert not answer.done()  # its groups are not rebuilt yet
    finally:
        free.set()
    assert committing.result(TIMEOUT) == {tp: KafkaCode.NONE}
    return answer


def test_a_refused_heartbeat_behind_a_write_in_flight_is_answered_once_its_group_is_rebuilt(
    e: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member joins a consumer group (its epoch moved, its target
    computed, in memory); the write is refused; whoever hears the
    NOT_COORDINATOR finds the group without it."""
    assert _heartbeat(e, "a").result(TIMEOUT).error == KafkaCode.NONE
    before = _consumer_group(e)
    answer = _behind_a_write_in_flight(e, monkeypatch, lambda: _heartbeat(e, "b"))
    seen: list[Any] = []
    answer.add_done_callback(lambda _: seen.append(_consumer_group(e)))
    assert answer.result(TIMEOUT).error == KafkaCode.NOT_COORDINATOR
    assert seen == [before]


def test_a_refused_commit_behind_a_write_in_flight_is_answered_once_rebuilt(
    e: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    tp = TopicPartition(TOPIC, 1)
    offsets = {tp: OffsetAndMetadata(4)}
    answer = _behind_a_write_in_flight(
        e, monkeypatch, lambda: e.groups.commit_offsets("c", -1, "", None, offsets)
    )
    assert answer.result(TIMEOUT) == {tp: KafkaCode.NOT_COORDINATOR}
    fetched = e.groups.fetch_offsets("c", [tp], require_stable=True)
    assert fetched == {tp: (None, KafkaCode.NONE)}


def test_a_refused_static_join_behind_a_write_in_flight_is_answered_once_rebuilt(
    e: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A static member's new process joins a Stable group under a new
    member id (the old one fenced, the group written with the new one);
    the write is refused: the answer comes with the old member id back in
    place, as the state log holds it."""
    old = _stable(e, "s", instance_id="i")
    before = _classic_group(e, "s")
    answer = _behind_a_write_in_flight(e, monkeypatch, lambda: _join(e, "s", instance_id="i"))
    seen: list[Any] = []
    answer.add_done_callback(lambda _: seen.append(_classic_group(e, "s")))
    assert answer.result(TIMEOUT).error == KafkaCode.NOT_COORDINATOR
    assert seen == [before]
    assert [m for m, _ in before[3]] == [old.member_id]


def test_a_refused_sync_behind_a_write_in_flight_is_answered_once_the_failure_is_taken(
    e: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The leader's SyncGroup of a forming generation: its assignment's
    write is refused; the members are answered NOT_COORDINATOR once the
    failure is taken, the group still in the rebalance (below)."""
    joined = _join(e, "y").result(TIMEOUT)
    assert joined.error == KafkaCode.NONE
    answer = _behind_a_write_in_flight(
        e, monkeypatch, lambda: _sync(e, "y", joined, {joined.member_id: b"assigned"})
    )
    assert answer.result(TIMEOUT).error == KafkaCode.NOT_COORDINATOR


def _forming_second_generation(e: Engine) -> tuple[Any, Any]:
    """A member Stable at generation 1; a second joins and the first
    rejoins: both are in generation 2, CompletingRebalance (the state log
    holds generation 1). Returns (leader, follower)."""
    first = _stable(e, "r")
    joining = _join(e, "r")
    rejoining = _join(e, "r", first.member_id)
    leader, follower = rejoining.result(TIMEOUT), joining.result(TIMEOUT)
    assert (leader.error, follower.error) == (KafkaCode.NONE, KafkaCode.NONE)
    assert leader.members and not follower.members
    assert leader.generation_id == follower.generation_id == first.generation_id + 1
    return leader, follower


@pytest.mark.parametrize("failure", FAILURES)
def test_a_failed_assignment_write_keeps_the_classic_groups_rebalance(
    e: Engine, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """Generation 2 is forming; the leader's assignment fails to write.
    Both members' SyncGroups are answered NOT_COORDINATOR and the group
    prepares the next rebalance with both of them at generation 2, as
    Kafka's does (its ClassicGroup is not reverted; the write's callback
    propagates the error and rebalances): not rebuilt Stable at
    generation 1 with its one member, the joined one gone."""
    leader, follower = _forming_second_generation(e)
    with monkeypatch.context() as faults:
        follower_synced = _sync(e, "r", follower, {})
        FAILURES[failure](faults, e)
        leader_synced = _sync(e, "r", leader, {leader.member_id: b"a", follower.member_id: b"b"})
        assert leader_synced.result(TIMEOUT).error == KafkaCode.NOT_COORDINATOR
        assert follower_synced.result(TIMEOUT).error == KafkaCode.NOT_COORDINATOR
        (described,) = e.groups.describe_groups(["r"])
        assert described.state == "PreparingRebalance"
        assert {m.member_id for m in described.members} == {leader.member_id, follower.member_id}
        group = e.groups._classic_groups.get("r")
        assert group is not None and group.generation_id == leader.generation_id
    if failure == "store refuses":  # the store writes on: the members rejoin as they are
        again = [_join(e, "r", leader.member_id), _join(e, "r", follower.member_id)]
        rejoined = [f.result(TIMEOUT) for f in again]
        assert [r.error for r in rejoined] == [KafkaCode.NONE, KafkaCode.NONE]
        assert {r.generation_id for r in rejoined} == {leader.generation_id + 1}


def test_a_join_into_a_group_whose_empty_record_failed_goes_on_with_its_rebalance(
    e: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last member leaves and the Empty record is refused behind a
    write in flight; a new member joins the group, Empty in memory, and
    waits in its rebalance. The group is kept as memory holds it, as
    Kafka's ClassicGroup is: the leave is answered NOT_COORDINATOR, the
    member that left stays gone, and the rebalance goes on to answer the
    joining member with the generation after the Empty one (it was
    answered NOT_COORDINATOR at a rebuild of the group from the state
    log, which dropped the rebalance; docs/design/0109)."""
    member = _stable(e, "v")
    leaving: list[Future[Any]] = []

    def leave_then_join() -> Future[Any]:
        leaving.append(e.groups.leave_group("v", [(member.member_id, None)]))
        joining = _join(e, "v")
        assert not leaving[0].done()
        return joining

    joining = _behind_a_write_in_flight(e, monkeypatch, leave_then_join)
    joined = joining.result(TIMEOUT)
    assert joined.error == KafkaCode.NONE
    assert joined.generation_id == member.generation_id + 2
    assert leaving[0].result(TIMEOUT).error == KafkaCode.NOT_COORDINATOR
    (described,) = e.groups.describe_groups(["v"])
    assert [m.member_id for m in described.members] == [joined.member_id]


@pytest.mark.parametrize("failure", FAILURES)
def test_a_commit_whose_groups_rebuild_raises_is_still_answered(
    e: Engine, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """Rebuilding a failed write's groups raises (a state log value it
    cannot read): the commit held for that rebuild is answered all the
    same, not left waiting forever, and the coordinator goes on serving."""

    def unreadable(puts: Any, deletes: Any) -> None:
        raise ValueError("a stored group value that does not parse")

    tp = TopicPartition(TOPIC, 2)
    with monkeypatch.context() as faults:
        faults.setattr(e.groups._run, "on_failed_write", unreadable)
        FAILURES[failure](faults, e)
        answer = e.groups.commit_offsets("u", -1, "", None, {tp: OffsetAndMetadata(3)})
        assert answer.result(TIMEOUT) == {tp: KafkaCode.NOT_COORDINATOR}
    if failure == "store refuses":  # the store writes on
        again = e.groups.commit_offsets("u", -1, "", None, {tp: OffsetAndMetadata(3)})
        assert again.result(TIMEOUT) == {tp: KafkaCode.NONE}


def test_the_rebalance_kept_after_a_failed_assignment_is_what_a_restart_loads_once_written(
    restartable: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Generation 2's assignment is refused; the members rejoin and sync
    generation 3, which is written: a restart loads generation 3 Stable
    with both members, their assignments, the leader's protocol, as the
    group was in memory."""
    e = restartable()
    leader, follower = _forming_second_generation(e)
    with monkeypatch.context() as faults:
        FAILURES["store refuses"](faults, e)
        refused = _sync(e, "r", leader, {leader.member_id: b"a", follower.member_id: b"b"})
        assert refused.result(TIMEOUT).error == KafkaCode.NOT_COORDINATOR
    again = [_join(e, "r", leader.member_id), _join(e, "r", follower.member_id)]
    rejoined = {r.member_id: r for r in (f.result(TIMEOUT) for f in again)}
    new_leader = next(r for r in rejoined.values() if r.members)
    assignments = {leader.member_id: b"a3", follower.member_id: b"b3"}
    syncs = [_sync(e, "r", r, assignments if r is new_leader else {}) for r in rejoined.values()]
    assert [s.result(TIMEOUT).error for s in syncs] == [KafkaCode.NONE, KafkaCode.NONE]
    in_memory = _classic_group(e, "r")
    generation = e.groups._classic_groups.get("r").generation_id  # type: ignore[union-attr]
    assert generation == leader.generation_id + 1
    restarted = restartable()
    assert _classic_group(restarted, "r") == in_memory
    loaded = restarted.groups._classic_groups.get("r")
    assert loaded is not None and loaded.generation_id == generation
    assert loaded.leader_id == new_leader.member_id


def test_two_processes_of_a_static_member_both_refused_leave_the_member_id_the_log_holds(
    restartable: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two new processes with one instance id join a Stable group, one
    after the other, before either write's outcome is taken: each renames
    the member (the first process fenced by the second), and both writes
    fail (the WAL's write fails: the first is accepted and fails after the
    second is made). The member goes back to the id the state log holds,
    the one before both: it went back to the first process's id, which no
    record holds, so memory and a restart named different members."""
    e = restartable()
    old = _stable(e, "s", instance_id="i")
    with monkeypatch.context() as faults:
        with e.groups._locked():  # neither outcome is taken before both joins
            FAILURES["WAL write fails"](faults, e)
            first = _join(e, "s", instance_id="i")
            second = _join(e, "s", instance_id="i")
        assert first.result(TIMEOUT).error == KafkaCode.FENCED_INSTANCE_ID
        assert second.result(TIMEOUT).error == KafkaCode.NOT_COORDINATOR
    in_memory = _classic_group(e, "s")
    assert [m for m, _ in in_memory[3]] == [old.member_id]
    assert _classic_group(restartable(), "s") == in_memory
