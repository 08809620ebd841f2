"""The coordinator's groups of Kafka's classic group protocol, by id:
their host (classic.GroupHost: the clock, timers and writes of their
metadata, under the coordinator's lock), their loading, their going once
nothing holds them, and the member check of their offset commits. The
coordinator decides between these and its consumer groups (KIP-848); a
group id is in one or the other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterator, Mapping
from concurrent.futures import Future
from typing import Any

from engine.groups.classic import ClassicGroup
from engine.groups.config import GroupConfig
from engine.groups.executor import GroupExecutor
from engine.groups.records import StoredGroup, classic_group_key
from engine.groups.results import GroupState
from engine.groups.timers import Timer
from engine.protocol.kafka_code import KafkaCode

log = logging.getLogger("tidelog.groups")

STORE_AGAIN_FIRST_S = 0.5
"""How long after a failed write a kept group's record is written again;
the wait doubles while the writes fail, up to STORE_AGAIN_MAX_S."""
STORE_AGAIN_MAX_S = 30.0


class ClassicGroups:
    """``has_offsets(group_id)``: whether the group has committed or
    pending offsets (a group with some is kept when it empties)."""

    def __init__(
        self, run: GroupExecutor, config: GroupConfig, has_offsets: Callable[[str], bool]
    ) -> None:
        self.config = config
        self._run = run
        self._has_offsets = has_offsets
        self._groups: dict[str, ClassicGroup] = {}

    # -- the host of the groups (classic.GroupHost) ------------------------------------

    def now_ms(self) -> int:
        return self._run.now_ms()

    def monotonic(self) -> float:
        return self._run.monotonic()

    def resolve(self, future: Future[Any], value: Any) -> None:
        self._run.resolve(future, value)

    def schedule(self, group: ClassicGroup, delay_s: float, callback: Callable[[], None]) -> Timer:
        def run() -> None:
            with self._run.locked():
                if not self._run.closed and self._groups.get(group.group_id) is group:
                    callback()
                    self.forget_if_unused(group)

        return self._run.call_later(delay_s, run)

    def store_group(
        self,
        group: ClassicGroup,
        assignment: Mapping[str, bytes],
        then: Callable[[KafkaCode], None] | None = None,
        rebuilt: bool = True,
    ) -> None:
        value = group.to_stored(assignment).to_value()

        def stored(error: KafkaCode) -> None:
            if error != KafkaCode.NONE:
                log.warning("group %s: storing its metadata failed", group.group_id)
            if then is not None and self._groups.get(group.group_id) is group:
                then(error)

        self._run.write({classic_group_key(group.group_id): value}, [], stored, rebuilt=rebuilt)

    def store_again(self, group: ClassicGroup) -> None:
        if group.store_again_timer is not None or self._run.store_stopped():
            # One is due; or a failed, fenced or closed store, which takes
            # no write until the engine is opened again (and a restart
            # loads what the state log holds, as Kafka's does).
            return
        delay_s = min(max(group.store_again_delay_s * 2, STORE_AGAIN_FIRST_S), STORE_AGAIN_MAX_S)
        group.store_again_delay_s = delay_s

        def again() -> None:
            group.store_again_timer = None
            if group.state not in (GroupState.EMPTY, GroupState.STABLE):
                return  # the rebalance in progress writes the group when it ends
            assignment = {m.member_id: m.assignment for m in group.members.values()}

            def stored(error: KafkaCode) -> None:
                if error == KafkaCode.NONE:
                    group.store_again_delay_s = 0.0
                else:
                    self.store_again(group)

            self.store_group(group, assignment, stored, rebuilt=False)

        group.store_again_timer = self.schedule(group, delay_s, again)

    # -- the groups ---------------------------------------------------------------------

    def get(self, group_id: str) -> ClassicGroup | None:
        return self._groups.get(group_id)

    def __contains__(self, group_id: object) -> bool:
        return group_id in self._groups

    def __iter__(self) -> Iterator[ClassicGroup]:
        return iter(list(self._groups.values()))

    def __len__(self) -> int:
        return len(self._groups)

    def create(self, group_id: str) -> ClassicGroup:
        group = self._groups[group_id] = ClassicGroup(group_id, self)
        return group

    def load(self, group_id: str, stored: StoredGroup) -> None:
        self._groups[group_id] = ClassicGroup.load(group_id, self, stored)

    def drop(
        self, group: ClassicGroup, error: KafkaCode = KafkaCode.NOT_COORDINATOR
    ) -> list[Hashable]:
        """Forgets the group (not its offsets); returns its key to delete.
        Members waiting to join or sync are answered ``error``."""
        del self._groups[group.group_id]
        group.unload(error)
        return [classic_group_key(group.group_id)]

    def set_aside(self, group: ClassicGroup) -> None:
        """Takes the group out of the coordinator's groups, as it is (a
        takeover by a consumer group is being written); ``put_back``
        brings it back if that write fails."""
        del self._groups[group.group_id]

    def put_back(self, group: ClassicGroup) -> None:
        self._groups[group.group_id] = group

    def forget_if_unused(self, group: ClassicGroup) -> None:
        """A group that never formed and holds nothing is not kept (a
        refused first JoinGroup, say)."""
        if (
            group.state == GroupState.EMPTY
            and group.generation_id == 0
            and not group.members
            and not group.pending_members
            and not self._has_offsets(group.group_id)
        ):
            self._groups.pop(group.group_id, None)

    def forget_if_empty(self, group: ClassicGroup) -> list[Hashable]:
        """Drops a group left with neither members nor offsets; returns its
        key to delete."""
        if (
            group.state != GroupState.EMPTY
            or group.pending_members
            or self._has_offsets(group.group_id)
        ):
            return []
        return self.drop(group)

    def commit_error(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        transactional: bool,
        missing_group: KafkaCode = KafkaCode.GROUP_ID_NOT_FOUND,
    ) -> KafkaCode:
        """Kafka's validateOffsetCommit: members commit for their
        generation; a commit from outside the group (generation < 0, with
        or without a member id) only while the group has no members. A
        member's plain commit counts as a sign of life. A plain commit
        with a generation (or member epoch) for a group that does not exist
        answers ``missing_group``: OffsetCommit v9+ GROUP_ID_NOT_FOUND,
        older versions ILLEGAL_GENERATION, as Kafka's OffsetMetadataManager."""
        group = self._groups.get(group_id)
        error = _commit_error(
            group, generation_id, member_id, group_instance_id, transactional, missing_group
        )
        if error == KafkaCode.NONE and group is not None and not transactional:
            if group.state == GroupState.COMPLETING_REBALANCE:
                # The member has its new generation but no assignment
                # yet: it must not commit for the old one.
                error = KafkaCode.REBALANCE_IN_PROGRESS
            elif group.state != GroupState.EMPTY:
                group.watch_session(group.members[member_id])
        return error

    def unload(self) -> None:
        """Answers every waiting member NOT_COORDINATOR and stops the
        groups' timers (the coordinator is closing)."""
        for group in self._groups.values():
            group.unload(KafkaCode.NOT_COORDINATOR)


def _commit_error(
    group: ClassicGroup | None,
    generation_id: int,
    member_id: str,
    group_instance_id: str | None,
    transactional: bool,
    missing_group: KafkaCode,
) -> KafkaCode:
    # Generation -1 is a "simple" consumer's commit (an admin, or a consumer
    # that assigns its partitions itself: a KIP-848 one names its member id
    # too), taken while the group does not exist or is empty, as Kafka's
    # OffsetMetadataManager and ClassicGroup.validateOffsetCommit do.
    if generation_id < 0 and (group is None or group.state == GroupState.EMPTY):
        return KafkaCode.NONE
    if group is None:
        # A generation (>= 0 here) of a group that is gone; Kafka's
        # transactional check answers ILLEGAL_GENERATION in every version.
        return KafkaCode.ILLEGAL_GENERATION if transactional else missing_group
    if generation_id >= 0 or member_id or group_instance_id is not None:
        if group.is_static_member_fenced(group_instance_id, member_id):
            return KafkaCode.FENCED_INSTANCE_ID
        if not group.has_member(member_id):
            return KafkaCode.UNKNOWN_MEMBER_ID
        if generation_id != group.generation_id:
            return KafkaCode.ILLEGAL_GENERATION
        return KafkaCode.NONE
    if not transactional and group.state != GroupState.EMPTY:
        return KafkaCode.UNKNOWN_MEMBER_ID
    return KafkaCode.NONE
