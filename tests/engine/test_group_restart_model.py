"""Valid but hostile sequences of one group's requests through the embedded
coordinator: consumer-protocol members joining, acknowledging, leaving and
coming back static; a classic member joining a classic group or one of the
consumer protocol (migration both ways); commits by members, by a group
with no member and of offsets deleted; the group deleted. After each
sequence, and at restarts drawn into it, the group a restart loads is the
group that was served: its kind, state, epochs, members and assignments,
and its committed offsets."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import precondition, rule

import engine
from engine.clock import ManualClock
from engine.errors import EngineError
from engine.groups.consumer_heartbeat import Heartbeat
from engine.protocol.consumer_protocol import (
    Assignment,
    Subscription,
    encode_assignment,
    encode_subscription,
)
from engine.protocol.kafka_code import KafkaCode
from engine.types import OffsetAndMetadata, TopicPartition
from tests.engine.conftest import FAST_STORE
from tests.engine.restart_machine import RestartMachine
from tests.long_runs import LONG, sized

E = KafkaCode
GROUP = "g"
TOPIC = "t"
PARTITIONS = 4
TIMEOUT = 30.0
REBALANCE_MS = 60_000
SESSION_MS = 60_000
CONSUMERS = 3
OTHER = "u"
SUBSCRIPTIONS = ([TOPIC], [TOPIC, OTHER], [OTHER], "t|u", "u.*")
CLASSIC = "classic"
REBALANCING = ("preparingrebalance", "completingrebalance")


def _open(directory: Path, clock: ManualClock) -> engine.Engine:
    groups = engine.GroupConfig(group_initial_rebalance_delay_ms=0, group_min_session_timeout_ms=10)
    config = engine.EngineConfig(store=FAST_STORE, cleaner_interval_s=3600.0, groups=groups)
    return engine.open(directory, None, config, clock=clock)


def _served(opened: engine.Engine) -> Any:
    """What the coordinator serves of the group, in a form two engines'
    answers compare by."""
    groups = opened.groups
    committed = {
        (tp.topic, tp.partition): (found.offset, found.metadata)
        for tp, (found, _) in groups.fetch_offsets(GROUP, None).items()
        if found is not None
    }
    listed = {(g.group_id, g.group_type, g.state.lower()) for g in groups.list_groups()}
    if any(group_type == "consumer" for _, group_type, _ in listed):
        (described,) = groups.consumer_group_describe([GROUP])
        members = sorted(
            (
                m.member_id,
                m.instance_id,
                m.member_epoch,
                m.classic,
                sorted((t, sorted(p)) for t, p in m.assignment.items()),
                sorted((t, sorted(p)) for t, p in m.target_assignment.items()),
            )
            for m in described.members
        )
        group: Any = (described.group_epoch, described.assignment_epoch, members)
    else:
        classic = groups._classic_groups.get(GROUP)
        (described,) = groups.describe_groups([GROUP])
        group = (
            None if classic is None else classic.generation_id,
            described.protocol_name,
            sorted((m.member_id, m.group_instance_id, m.assignment) for m in described.members),
        )
        if described.state.lower() in REBALANCING:
            # A classic group's rebalance in progress is never stored, in
            # Kafka as here: a restart loads the generation before it
            # (Stable with its members, who rejoin when told to, or Empty);
            # a member that joined only in this rebalance is not among them.
            group = REBALANCING
    return listed, group, committed


class GroupRestartMachine(RestartMachine):
    directory_prefix = "group-restart-"

    def __init__(self) -> None:
        super().__init__()
        self.engine.create_topic(TOPIC, PARTITIONS)
        # consumer members: index -> (member id, epoch, instance id, owned)
        self.consumers: dict[int, tuple[str, int, str | None, dict[bytes, list[int]]]] = {}
        self.classic: tuple[str, int] | None = None
        """The classic member's id and generation, once it joined."""
        self.restarts = 0

    def open_engine(self, directory: Path, clock: ManualClock) -> engine.Engine:
        return _open(directory, clock)

    def served(self, opened: engine.Engine) -> Any:
        return _served(opened)

    def compared(self, served: Any, loaded: Any) -> tuple[Any, Any]:
        if served[1] == REBALANCING:
            served = ({(g, t) for g, t, _ in served[0]}, REBALANCING, served[2])
            loaded = ({(g, t) for g, t, _ in loaded[0]}, REBALANCING, loaded[2])
        return served, loaded

    def _beat(self, request: Heartbeat) -> Any:
        return self.engine.groups.consumer_group_heartbeat(request).result(TIMEOUT)

    @rule(
        index=st.integers(0, CONSUMERS - 1),
        static=st.booleans(),
        subscription=st.sampled_from(SUBSCRIPTIONS),
    )
    def consumer_join(self, index: int, static: bool, subscription: Any) -> None:
        member_id = f"consumer-{index}-{self.restarts}-{len(self.consumers)}"
        instance_id = f"instance-{index}" if static else None
        if index in self.consumers:
            member_id, _, instance_id, _ = self.consumers.pop(index)
        answer = self._beat(
            Heartbeat(
                GROUP,
                member_id,
                0,
                instance_id=instance_id,
                rebalance_timeout_ms=REBALANCE_MS,
                subscribed_topic_names=subscription if isinstance(subscription, list) else None,
                subscribed_topic_regex=subscription if isinstance(subscription, str) else None,
                owned_partitions={},
            )
        )
        if answer.error == E.NONE:
            owned = {t: sorted(p) for t, p in (answer.assignment or {}).items()}
            self.consumers[index] = (member_id, answer.member_epoch, instance_id, owned)

    @precondition(lambda self: self.consumers)
    @rule(data=st.data())
    def consumer_heartbeat(self, data: st.DataObject) -> None:
        index = data.draw(st.sampled_from(sorted(self.consumers)))
        member_id, epoch, instance_id, owned = self.consumers[index]
        answer = self._beat(
            Heartbeat(GROUP, member_id, epoch, instance_id=instance_id, owned_partitions=owned)
        )
        if answer.error == E.NONE:
            if answer.assignment is not None:
                owned = {t: sorted(p) for t, p in answer.assignment.items()}
            self.consumers[index] = (member_id, answer.member_epoch, instance_id, owned)
        else:
            del self.consumers[index]

    @precondition(lambda self: self.consumers)
    @rule(data=st.data(), temporarily=st.booleans())
    def consumer_leave(self, data: st.DataObject, temporarily: bool) -> None:
        index = data.draw(st.sampled_from(sorted(self.consumers)))
        member_id, _epoch, instance_id, _ = self.consumers.pop(index)
        leave_epoch = -2 if temporarily and instance_id is not None else -1
        self._beat(Heartbeat(GROUP, member_id, leave_epoch, instance_id=instance_id))

    @rule(owned=st.booleans())
    def classic_join(self, owned: bool) -> None:
        """The classic member joins (or rejoins) and syncs as its group's
        leader; alone among classic members, its join never waits on another."""
        groups = self.engine.groups
        member_id = self.classic[0] if self.classic else ""
        owns = (
            [TopicPartition(TOPIC, p) for p in range(PARTITIONS)] if owned and self.classic else []
        )
        metadata = encode_subscription(Subscription([TOPIC], None, owns), 1)
        try:
            joined = groups.join_group(
                GROUP,
                member_id,
                None,
                "consumer",
                [("range", metadata)],
                SESSION_MS,
                REBALANCE_MS,
                require_known_member_id=False,
            ).result(TIMEOUT)
        except EngineError:
            self.classic = None
            return
        if joined.error != E.NONE:
            self.classic = None
            return
        everything = encode_assignment(
            Assignment([TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
        )
        assignments = {joined.member_id: everything} if joined.leader == joined.member_id else {}
        # A member once joined stays one, synced or not (a consumer group
        # may answer its sync REBALANCE_IN_PROGRESS while another member
        # revokes): it rejoins by its id, never as a second classic member.
        self.classic = (joined.member_id, joined.generation_id)
        groups.sync_group(
            GROUP, joined.generation_id, joined.member_id, None, "consumer", "range", assignments
        ).result(TIMEOUT)

    @precondition(lambda self: self.classic is not None)
    @rule()
    def classic_leave(self) -> None:
        assert self.classic is not None
        member_id, _ = self.classic
        self.classic = None
        self.engine.groups.leave_group(GROUP, [(member_id, None)]).result(TIMEOUT)

    @rule(
        partition=st.integers(0, PARTITIONS - 1),
        offset=st.integers(0, 1000),
        by=st.sampled_from(["consumer", CLASSIC, "admin"]),
        data=st.data(),
    )
    def commit(self, partition: int, offset: int, by: str, data: st.DataObject) -> None:
        offsets = {TopicPartition(TOPIC, partition): OffsetAndMetadata(offset, f"m{offset}")}
        groups = self.engine.groups
        if by == "consumer" and self.consumers:
            index = data.draw(st.sampled_from(sorted(self.consumers)))
            member_id, epoch, _, _ = self.consumers[index]
            committing = groups.commit_offsets(GROUP, epoch, member_id, None, offsets)
        elif by == CLASSIC and self.classic is not None:
            member_id, generation = self.classic
            committing = groups.commit_offsets(
                GROUP, generation, member_id, None, offsets, member_epochs=False
            )
        else:
            committing = groups.commit_offsets(GROUP, -1, "", None, offsets)
        # Refused or not, as the group's state says: what was served is checked
        with contextlib.suppress(EngineError):
            committing.result(TIMEOUT)

    @rule(partition=st.integers(0, PARTITIONS - 1))
    def delete_offset(self, partition: int) -> None:
        with contextlib.suppress(EngineError):
            self.engine.groups.delete_offsets(GROUP, [TopicPartition(TOPIC, partition)]).result(
                TIMEOUT
            )

    @rule()
    def delete_every_offset(self) -> None:
        # Deletions one partition at a time seldom leave a group with none
        # (a group no generation made is then forgotten, docs/groups.md),
        # and a later commit would hide it from the next restart's check.
        every = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
        with contextlib.suppress(EngineError):
            self.engine.groups.delete_offsets(GROUP, every).result(TIMEOUT)
        self.restart()

    @rule()
    def delete_group(self) -> None:
        with contextlib.suppress(EngineError):
            self.engine.groups.delete_groups([GROUP]).result(TIMEOUT)

    @precondition(lambda self: self.consumers)
    @rule(data=st.data(), delta=st.sampled_from([-2, -1, 1, 7]))
    def consumer_wrong_epoch(self, data: st.DataObject, delta: int) -> None:
        """A heartbeat at an epoch the member is not at: fenced, it rejoins."""
        index = data.draw(st.sampled_from(sorted(self.consumers)))
        member_id, epoch, instance_id, owned = self.consumers[index]
        answer = self._beat(
            Heartbeat(
                GROUP, member_id, max(epoch + delta, 1), instance_id=instance_id,
                owned_partitions=owned,
            )
        )  # fmt: skip
        if answer.error != E.NONE:
            del self.consumers[index]

    @precondition(lambda self: self.consumers)
    @rule(data=st.data())
    def consumer_takes_an_instance_id(self, data: st.DataObject) -> None:
        """A new member naming an instance id another member holds."""
        index = data.draw(st.sampled_from(sorted(self.consumers)))
        held = self.consumers[index][2] or f"instance-{index}"
        self._beat(
            Heartbeat(
                GROUP, f"impostor-{len(self.consumers)}-{self.restarts}", 0, instance_id=held,
                rebalance_timeout_ms=REBALANCE_MS, subscribed_topic_names=[TOPIC],
                owned_partitions={},
            )
        )  # fmt: skip

    @rule(partitions=st.integers(1, 3))
    def create_other(self, partitions: int) -> None:
        if OTHER not in self.engine.list_topics():
            self.engine.create_topic(OTHER, partitions)

    @rule()
    def delete_other(self) -> None:
        if OTHER in self.engine.list_topics():
            self.engine.delete_topic(OTHER)

    @rule()
    def restart(self) -> None:
        self.restarts += 1
        self._check_restart()


GroupRestartMachine.TestCase.settings = settings(
    max_examples=sized(8, 200), stateful_step_count=sized(12, 40), deadline=None
)


@pytest.mark.timeout(3600 if LONG else 300)
def test_group_restart_model() -> None:
    GroupRestartMachine.TestCase("runTest").runTest()
