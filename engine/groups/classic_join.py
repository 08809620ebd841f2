"""How a member joins a classic group (Kafka's ClassicGroup join path):
a new member gets its member id first when the client asks for that
(KIP-394); a known member rejoins, rebalancing the group if it changed;
a static member (KIP-345) joining under a new member id replaces its
predecessor, fencing the old id, and a stable group goes on without a
rebalance when its chosen protocol stays the same."""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import Future

from engine.futures import running_future
from engine.groups.classic import ClassicGroup
from engine.groups.classic_member import JoinRequest, Member, PendingRename
from engine.groups.results import GroupState, JoinResult, SyncResult
from engine.protocol.kafka_code import KafkaCode

log = logging.getLogger("tidelog.groups")


def join(group: ClassicGroup, request: JoinRequest) -> Future[JoinResult]:
    """Answers once the member is in the next generation, or refused."""
    future: Future[JoinResult] = running_future()
    if not _accept_joining_member(group, request.member_id):
        member = group.members.get(request.member_id)
        if member is not None:
            group.drop(member)
        _answer(group, future, KafkaCode.GROUP_MAX_SIZE_REACHED, "")
    elif not request.member_id:
        _join_new_member(group, request, future)
    else:
        _join_known_member(group, request, future)
    if group.state == GroupState.PREPARING_REBALANCE:
        group.try_complete_join()
    return future


def _accept_joining_member(group: ClassicGroup, member_id: str) -> bool:
    limit = group.host.config.group_max_size
    member = group.members.get(member_id)
    if group.state == GroupState.EMPTY:
        return True
    if group.state == GroupState.PREPARING_REBALANCE:
        # Counting the members that rejoined lets a smaller limit push
        # out the last ones to rejoin.
        awaiting = sum(1 for m in group.members.values() if m.join_waiter is not None)
        return (member is not None and member.join_waiter is not None) or awaiting < limit
    return member is not None or len(group.members) < limit


def _answer(
    group: ClassicGroup, future: Future[JoinResult], error: KafkaCode, member_id: str
) -> None:
    group.host.resolve(future, JoinResult(error, member_id=member_id))


def _join_new_member(group: ClassicGroup, request: JoinRequest, future: Future[JoinResult]) -> None:
    if not group.supports_protocols(request.protocol_type, {n for n, _ in request.protocols}):
        _answer(group, future, KafkaCode.INCONSISTENT_GROUP_PROTOCOL, "")
        return
    prefix = request.group_instance_id or request.client_id
    member_id = f"{prefix}-{uuid.uuid4()}"
    if request.group_instance_id is not None:
        old_member_id = group.static_members.get(request.group_instance_id)
        if old_member_id is not None:
            _replace_static_member(group, old_member_id, member_id, request, future)
        else:
            _add_member_and_rebalance(group, member_id, request, future)
    elif request.require_known_member_id:
        group.pending_members[member_id] = group.host.schedule(
            group,
            request.session_timeout_ms / 1000,
            lambda: _pending_member_expired(group, member_id),
        )
        _answer(group, future, KafkaCode.MEMBER_ID_REQUIRED, member_id)
    else:
        _add_member_and_rebalance(group, member_id, request, future)


def _join_known_member(
    group: ClassicGroup, request: JoinRequest, future: Future[JoinResult]
) -> None:
    member_id = request.member_id
    if not group.supports_protocols(request.protocol_type, {n for n, _ in request.protocols}):
        _answer(group, future, KafkaCode.INCONSISTENT_GROUP_PROTOCOL, member_id)
        return
    if member_id in group.pending_members:
        if request.group_instance_id is not None:  # a pending member is never static
            _answer(group, future, KafkaCode.UNKNOWN_MEMBER_ID, member_id)
            return
        group.pending_members.pop(member_id).cancel()
        _add_member_and_rebalance(group, member_id, request, future)
        return
    instance_id = request.group_instance_id
    if group.is_static_member_fenced(instance_id, member_id):
        _answer(group, future, KafkaCode.FENCED_INSTANCE_ID, member_id)
        return
    member = group.members.get(member_id)
    if member is None or (instance_id is not None and instance_id not in group.static_members):
        _answer(group, future, KafkaCode.UNKNOWN_MEMBER_ID, member_id)
        return
    match group.state:
        case GroupState.PREPARING_REBALANCE:
            _update_member_and_rebalance(group, member, request, future, "rejoining")
        case GroupState.COMPLETING_REBALANCE:
            if member.matches(request.protocols):
                # It may have missed the JoinGroup answer: the same again.
                group.host.resolve(future, group.join_result(member))
            else:
                _update_member_and_rebalance(
                    group, member, request, future, "new metadata while completing a rebalance"
                )
        case GroupState.STABLE:
            if member_id == group.leader_id:
                # The leader rejoins to have the assignment made again
                # (a topic changed, say): a rebalance.
                _update_member_and_rebalance(group, member, request, future, "the leader rejoins")
            elif not member.matches(request.protocols):
                _update_member_and_rebalance(group, member, request, future, "new metadata")
            else:
                group.host.resolve(future, group.join_result(member))
        case _:
            _answer(group, future, KafkaCode.UNKNOWN_MEMBER_ID, member_id)


def _add_member_and_rebalance(
    group: ClassicGroup, member_id: str, request: JoinRequest, future: Future[JoinResult]
) -> None:
    member = Member(
        member_id,
        request.group_instance_id,
        request.client_id,
        request.client_host,
        request.rebalance_timeout_ms,
        request.session_timeout_ms,
        list(request.protocols),
    )
    member.is_new = True
    if group.state == GroupState.PREPARING_REBALANCE and group.generation_id == 0:
        group.new_member_added = True  # the initial delay waits a little longer
    if not group.members:
        group.protocol_type = request.protocol_type
    group.members[member_id] = member
    if member.group_instance_id is not None:
        group.static_members[member.group_instance_id] = member_id
    if group.leader_id is None:
        group.leader_id = member_id
    member.join_waiter = future
    group.watch_session(member)
    group.maybe_prepare_rebalance(f"{member_id} joins ({request.reason or 'no reason given'})")


def _update_member_and_rebalance(
    group: ClassicGroup, member: Member, request: JoinRequest, future: Future[JoinResult], why: str
) -> None:
    member.protocols = list(request.protocols)
    if member.join_waiter is not None:  # a second JoinGroup replaces the first
        group.host.resolve(member.join_waiter, JoinResult(KafkaCode.REBALANCE_IN_PROGRESS))
    member.join_waiter = future
    group.maybe_prepare_rebalance(f"{member.member_id}: {why} ({request.reason or 'no reason'})")


def _replace_static_member(
    group: ClassicGroup,
    old_member_id: str,
    member_id: str,
    request: JoinRequest,
    future: Future[JoinResult],
) -> None:
    """A static member joins again under a new member id: the old id is
    fenced, and a stable group goes on without a rebalance if the
    member's protocols leave the chosen protocol as it is."""
    leader = group.leader_id
    member = _rename(group, old_member_id, member_id)
    group.watch_session(member)
    old_protocols = member.protocols
    member.protocols = list(request.protocols)
    member.join_waiter = future
    match group.state:
        case GroupState.STABLE if group.select_protocol() == group.protocol_name:
            assignment = {m.member_id: m.assignment for m in group.members.values()}
            renaming = PendingRename(old_member_id)
            member.pending_renames.append(renaming)

            def stored(error: KafkaCode) -> None:
                # Not answered yet unless a rebalance or another process's
                # join answered it meanwhile.
                answering = member.join_waiter is future
                if answering:
                    member.join_waiter = None
                if error != KafkaCode.NONE:
                    _undo_rename(group, member, renaming, member_id)
                else:
                    member.pending_renames.remove(renaming)
                if not answering:
                    return
                if error != KafkaCode.NONE:
                    member.protocols = old_protocols
                    _answer(group, future, error, "")
                    return
                # The previous leader id, so that this member, even if it
                # led, does not compute an assignment a stable group
                # would not hand out; it syncs to get its own back.
                group.host.resolve(future, group.join_result(member, leader=leader or ""))

            # Refused, ``stored`` renames the member back, as Kafka does.
            group.host.store_group(group, assignment, stored, rebuilt=False)
        case GroupState.STABLE | GroupState.COMPLETING_REBALANCE:
            group.maybe_prepare_rebalance(f"static member {request.group_instance_id} rejoins")
        case _:
            pass  # the rebalance in progress answers it


def _undo_rename(
    group: ClassicGroup, member: Member, renaming: PendingRename, member_id: str
) -> None:
    """The write naming the member ``member_id`` failed: it goes back to the
    id the state log holds. Writes end in the order they were made, so a
    later replacement still being written (another process with the same
    instance id) goes back to that id in turn if it fails too; memory and
    the state log never name different member ids."""
    index = member.pending_renames.index(renaming)
    del member.pending_renames[index]
    if index < len(member.pending_renames):
        member.pending_renames[index].back_to = renaming.back_to
    elif group.members.get(member_id) is member:
        _rename(group, member_id, renaming.back_to)


def _rename(group: ClassicGroup, old_member_id: str, member_id: str) -> Member:
    member = group.members.pop(old_member_id)
    if member.join_waiter is not None:
        group.host.resolve(
            member.join_waiter,
            JoinResult(KafkaCode.FENCED_INSTANCE_ID, member_id=old_member_id),
        )
        member.join_waiter = None
    if member.sync_waiter is not None:
        group.host.resolve(member.sync_waiter, SyncResult(KafkaCode.FENCED_INSTANCE_ID))
        member.sync_waiter = None
    member.member_id = member_id
    group.members[member_id] = member
    if group.leader_id == old_member_id:
        group.leader_id = member_id
    if member.group_instance_id is not None:
        group.static_members[member.group_instance_id] = member_id
    if old_member_id in group.pending_sync:
        group.pending_sync.discard(old_member_id)
        group.pending_sync.add(member_id)
    return member


def _pending_member_expired(group: ClassicGroup, member_id: str) -> None:
    if group.pending_members.pop(member_id, None) is not None:
        log.info("group %s: pending member %s never joined", group.group_id, member_id)
        if group.state == GroupState.PREPARING_REBALANCE:
            group.try_complete_join()
