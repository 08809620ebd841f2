"""What a failed write of the "groups" state log leaves: the groups and
offsets it touched as the state log holds them, which is what a restart
loads (plus records still being written, which a restart loads too once
they are durable).

Kafka's coordinator changes its in-memory state as it builds a write's
records and, when the write fails, reverts that state to the snapshot
taken before it (CoordinatorRuntime with its SnapshotRegistry); the
request is answered with the write's error, NOT_COORDINATOR for a log
that refused it. Here a group's request changes the group in memory
before its write too; when the write fails, the state log has already
undone the record (engine/state_log.py), and each group whose keys the
write held is rebuilt from the log: a classic group as a restart loads it
(Stable with its stored members and their assignments, whose sessions
start again, or Empty), a consumer group with its stored epochs, members
and targets, or no group at all. Members waiting on the group (a
JoinGroup, a SyncGroup) are answered NOT_COORDINATOR: the client finds
the coordinator again and rejoins, as after a coordinator moved. Offsets
the write deleted (OffsetDelete, DeleteGroups, retention, a deleted
topic) are the group's again; a commit is made visible only once durable
(offset_manager.py), so a failed one has nothing to undo. Group configs
go back to the stored ones. A classic group's own writes (its
assignment, a static member's replacement, its Empty record) and a
consumer group's takeover of a classic group are not rebuilt
(GroupExecutor.write's ``rebuilt``): their callbacks leave the group as
Kafka's ClassicGroup, which its snapshots never revert, is left, or put
the taken-over classic group back (docs/design/0102, 0109).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable
from typing import Any

from engine.groups.classic_groups import ClassicGroups
from engine.groups.consumer_groups import ConsumerGroups
from engine.groups.offset_manager import OffsetManager
from engine.groups.records import (
    CONSUMER_GROUP,
    CONSUMER_MEMBER,
    GROUP,
    GROUP_CONFIG,
    OFFSET,
    TXN,
    StoredState,
    group_of_key,
    read_state,
)

log = logging.getLogger("tidelog.groups")

_GROUP_KINDS = frozenset({GROUP, CONSUMER_GROUP, CONSUMER_MEMBER})


def restore(
    puts: Iterable[Hashable],
    deletes: Iterable[Hashable],
    stored: Iterable[tuple[Hashable, Any]],
    classic_groups: ClassicGroups,
    consumer_groups: ConsumerGroups,
    offsets: OffsetManager,
) -> None:
    """The write of ``puts`` and ``deletes`` failed; ``stored`` is every
    key and value of the state log now."""
    touched: dict[str, set[str]] = {}
    deleted_offsets: dict[str, list[Hashable]] = {}
    for key in [*puts, *deletes]:
        group_id = group_of_key(key)
        if group_id is not None:
            assert isinstance(key, tuple)
            touched.setdefault(group_id, set()).add(key[0])
    for key in deletes:
        group_id = group_of_key(key)
        if group_id is not None and isinstance(key, tuple) and key[0] in (OFFSET, TXN):
            deleted_offsets.setdefault(group_id, []).append(key)
    if not touched:
        return
    state = read_state((k, v) for k, v in stored if group_of_key(k) in touched)
    for group_id, kinds in touched.items():
        if group_id in deleted_offsets:
            offsets.restore(deleted_offsets[group_id], state)
        if GROUP_CONFIG in kinds:
            consumer_groups.restore_configs(group_id, state.group_configs.get(group_id))
        if kinds & _GROUP_KINDS:
            _restore_group(group_id, state, classic_groups, consumer_groups, offsets)
        log.warning("group %s: a write of its state failed; back to its stored state", group_id)


def _restore_group(
    group_id: str,
    state: StoredState,
    classic_groups: ClassicGroups,
    consumer_groups: ConsumerGroups,
    offsets: OffsetManager,
) -> None:
    classic = classic_groups.get(group_id)
    if classic is not None:
        classic_groups.drop(classic)
    consumer = consumer_groups.get(group_id)
    if consumer is not None:
        consumer_groups.drop(consumer, write=False)
    if group_id in state.consumer_groups:
        consumer_groups.load(
            {group_id: state.consumer_groups[group_id]},
            {group_id: state.consumer_members.get(group_id, {})},
        )
    elif group_id in state.classic_groups:
        classic_groups.load(group_id, state.classic_groups[group_id])
    elif offsets.has_offsets(group_id):
        classic_groups.create(group_id)  # as a restart makes one for its offsets
