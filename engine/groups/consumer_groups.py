"""The coordinator's consumer groups of Kafka's consumer group protocol
(KIP-848), by id: their host (consumer_group.ConsumerGroupHost: the
clock, timers and writes, under the coordinator's lock), their loading,
their going once nothing holds them, and the groups' own configs
(group_configs.py), which a group times its members by. The coordinator decides between
these and its classic groups; a group id is in one or the other.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Hashable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from engine.config import ConfigEntry
from engine.errors import NotCoordinator
from engine.futures import done, running_future
from engine.groups.config import GroupConfig
from engine.groups.consumer_group import ConsumerGroup, ConsumerGroupState
from engine.groups.consumer_group_description import ConsumerGroupDescription, describe
from engine.groups.consumer_member import ConsumerMember
from engine.groups.executor import GroupExecutor
from engine.groups.group_configs import GroupConfigs
from engine.groups.records import (
    StoredConsumerGroup,
    StoredConsumerMember,
    StoredGroupConfig,
    consumer_member_key,
)
from engine.groups.timers import Timer
from engine.groups.topic_subscriptions import TopicInfo
from engine.protocol.kafka_code import KafkaCode


class ConsumerGroups:
    """``has_offsets(group_id)``: whether the group has committed or
    pending offsets (a group with some is kept when it empties)."""

    def __init__(
        self,
        run: GroupExecutor,
        config: GroupConfig,
        topics: Callable[[], Mapping[str, TopicInfo]],
        has_offsets: Callable[[str], bool],
        downgrade: Callable[[ConsumerGroup, ConsumerMember | None], bool] = (
            lambda group, member: False
        ),
    ) -> None:
        self.config = config
        self._downgrade = downgrade
        self._configs = GroupConfigs(config)
        """Groups' own configs (GROUP config resources), whether or not the group exists."""
        self._run = run
        self._topics = topics
        self._has_offsets = has_offsets
        self._groups: dict[str, ConsumerGroup] = {}

    # -- the host of the groups (consumer_group.ConsumerGroupHost) ---------------------

    def now_ms(self) -> int:
        return self._run.now_ms()

    def resolve(self, future: Future[Any], value: Any) -> None:
        self._run.resolve(future, value)

    def take_over_as_classic(self, group: ConsumerGroup, leaving: ConsumerMember | None) -> bool:
        return self._downgrade(group, leaving)

    def schedule_consumer(
        self, group: ConsumerGroup, delay_s: float, callback: Callable[[], None]
    ) -> Timer:
        def run() -> None:
            with self._run.locked():
                if not self._run.closed and self._groups.get(group.group_id) is group:
                    callback()

        return self._run.call_later(delay_s, run)

    def write_consumer(
        self,
        puts: dict[Hashable, Any],
        deletes: list[Hashable],
        then: Callable[[KafkaCode], None] | None = None,
        rebuilt: bool = True,
    ) -> None:
        self._run.write(puts, deletes, then, rebuilt=rebuilt)

    def topics(self) -> Mapping[str, TopicInfo]:
        return self._topics()

    # -- the groups ---------------------------------------------------------------------

    def get(self, group_id: str) -> ConsumerGroup | None:
        return self._groups.get(group_id)

    def __contains__(self, group_id: object) -> bool:
        return group_id in self._groups

    def __iter__(self) -> Iterator[ConsumerGroup]:
        return iter(list(self._groups.values()))

    def __len__(self) -> int:
        return len(self._groups)

    def create(self, group_id: str) -> ConsumerGroup:
        settings = self._configs.settings(group_id)
        group = self._groups[group_id] = ConsumerGroup(group_id, self, settings)
        return group

    def load(
        self,
        groups: Mapping[str, StoredConsumerGroup],
        members: Mapping[str, Mapping[str, StoredConsumerMember]],
    ) -> list[Hashable]:
        """Loads the stored consumer groups; returns the keys of members
        whose group is gone (to delete)."""
        for group_id, stored in groups.items():
            self._groups[group_id] = ConsumerGroup.load(
                group_id, self, stored, members.get(group_id, {}), self._configs.settings(group_id)
            )
        return [
            consumer_member_key(group_id, member_id)
            for group_id, of_group in members.items()
            if group_id not in groups
            for member_id in of_group
        ]

    def drop(self, group: ConsumerGroup, write: bool = True) -> list[Hashable]:
        """Forgets a consumer group (not its offsets); its keys are deleted,
        or returned to be deleted if not ``write``."""
        del self._groups[group.group_id]
        group.unload()
        keys = group.keys()
        if write:
            self._run.write({}, keys)
        return keys

    def forget_if_unused(self, group: ConsumerGroup) -> None:
        """A group whose first join was refused holds nothing: not kept."""
        if group.is_empty and group.epoch == 0 and not self._has_offsets(group.group_id):
            del self._groups[group.group_id]
            group.unload()

    def forget_if_empty(self, group: ConsumerGroup) -> list[Hashable]:
        """Drops a group left with neither members nor offsets; returns its
        keys to delete."""
        if not group.is_empty or self._has_offsets(group.group_id):
            return []
        return self.drop(group, write=False)

    def describe(
        self, group_ids: Sequence[str], classic: Container[str]
    ) -> list[ConsumerGroupDescription]:
        """ConsumerGroupDescribe: a group that is not a consumer group (one
        of ``classic``, or none) is GROUP_ID_NOT_FOUND."""
        described = []
        for group_id in group_ids:
            group = self._groups.get(group_id)
            if group is not None:
                described.append(describe(group))
                continue
            message = (
                f"group {group_id} is not a consumer group"
                if group_id in classic
                else f"group {group_id} not found"
            )
            described.append(
                ConsumerGroupDescription(
                    group_id,
                    KafkaCode.GROUP_ID_NOT_FOUND,
                    message,
                    ConsumerGroupState.DEAD.value,
                    -1,
                    -1,
                    "",
                    [],
                    {},
                )
            )
        return described

    # -- group configs -------------------------------------------------------------------

    def load_configs(self, stored: Mapping[str, StoredGroupConfig]) -> None:
        """Takes the stored group configs; before the groups are loaded."""
        self._configs.load(stored)

    def restore_configs(self, group_id: str, stored: StoredGroupConfig | None) -> None:
        """The group's stored configs again (a write of them failed)."""
        self._configs.restore(group_id, stored)
        group = self._groups.get(group_id)
        if group is not None:
            group.settings = self._configs.settings(group_id)

    def describe_configs(self, group_id: str) -> list[ConfigEntry]:
        return self._configs.describe(group_id)

    def alter_configs(
        self, group_id: str, changes: Mapping[str, str | None], validate_only: bool
    ) -> Future[None]:
        """Validates (raising InvalidConfig, EmptyGroupName) and stores a
        group's configs; the group, if it exists, times its members by them
        from their next heartbeat. Done once durable (NotCoordinator if not)."""
        overrides = self._configs.altered(group_id, changes)
        if validate_only:
            return done(None)
        puts, deletes = self._configs.store(group_id, overrides)
        group = self._groups.get(group_id)
        if group is not None:
            group.settings = self._configs.settings(group_id)
        future: Future[None] = running_future()

        def written(error: KafkaCode) -> None:
            failure = NotCoordinator(f"storing the configs of group {group_id} failed")
            self.resolve(future, None if error == KafkaCode.NONE else failure)

        self._run.write(puts, deletes, written)
        return future

    def unload(self) -> None:
        """Stops every group's timers (the coordinator is closing)."""
        for group in self._groups.values():
            group.unload()
