"""An embedded consumer's membership in a consumer group: Kafka's classic
group protocol, spoken to the engine's group coordinator in process.

The member joins with a ConsumerProtocolSubscription for each of its
assignors (engine/client/assignors.py), computes every member's assignment when
the coordinator makes it the group's leader, and syncs. Its own thread
answers the coordinator: it sends SyncGroup as soon as JoinGroup is
answered, heartbeats every heartbeat.interval.ms, and leaves the group
when the consumer has not polled for max.poll.interval.ms (as Kafka's
heartbeat thread does). What touches the consumer's positions or runs its
callbacks happens in poll, on the consumer's thread: ``step`` hands the
consumer the next thing to do, and the consumer does it before asking
again.

As in Kafka's Java client, a member with only cooperative assignors
follows the cooperative protocol (KIP-429) and any other the eager one. An
eager member revokes every partition before it joins again. A cooperative
member keeps its partitions, revokes those the new assignment leaves out
and joins again, so the next rebalance can give them to their new owner.
Partitions are lost, not revoked, when the member learns it is no longer
part of the group's generation (its session expired, or it stopped
polling): another member may own them already. A static member
(group.instance.id) does not leave the group when it closes, so a restart
with the same instance id within the session timeout gets its partitions
back without a rebalance (KIP-345).

A join or sync answered COORDINATOR_NOT_AVAILABLE or NOT_COORDINATOR (the
group's write refused for room, or failed) is sent again after a backoff,
the member keeping its member id and generation, as Kafka's consumer
marks its coordinator unknown, finds it again and rejoins: the group
rebuilt after the failed write (engine/groups/failed_writes.py) still
has the member if it had it stored, and answers UNKNOWN_MEMBER_ID if
not. A heartbeat answered so keeps the member.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING

from engine.client.assignors import (
    Assignor,
    RebalanceProtocol,
    rebalance_protocol,
)
from engine.client.leader_assignment import assign_members
from engine.client.membership import (
    CLIENT_HOST,
    Assigned,
    ConsumerGroupMetadata,
    MemberState,
    Rebalancing,
    Revoke,
    Step,
    group_error,
)
from engine.clock import SYSTEM, Clock
from engine.errors import (
    EngineError,
    RebalanceInProgress,
    UnknownMemberId,
)
from engine.futures import running_future
from engine.protocol.consumer_protocol import (
    CONSUMER_PROTOCOL_TYPE,
    ConsumerProtocolError,
    Subscription,
    decode_assignment,
    encode_subscription,
)
from engine.protocol.kafka_code import KafkaCode
from engine.types import TopicPartition

if TYPE_CHECKING:
    from engine.groups import GroupCoordinator, JoinResult, SyncResult

log = logging.getLogger("tidelog.consumer")

JOIN_RETRY_BACKOFF_S = 0.1
"""The first wait before a join the coordinator could not store (or
whose store failed) is sent again (Kafka's retry.backoff.ms), doubled at each refusal up to
``JOIN_RETRY_BACKOFF_MAX_S`` (retry.backoff.max.ms)."""
JOIN_RETRY_BACKOFF_MAX_S = 1.0


class GroupMember:
    """One consumer's membership; ``partition_counts(topics)`` gives the
    partition count of each of ``topics`` that exists (the leader assigns
    from it)."""

    def __init__(
        self,
        coordinator: GroupCoordinator,
        group_id: str,
        *,
        partition_counts: Callable[[Iterable[str]], Mapping[str, int]],
        assignors: Sequence[Assignor],
        group_instance_id: str | None = None,
        client_id: str = "tidelog-consumer",
        session_timeout_ms: int = 45_000,
        rebalance_timeout_ms: int = 300_000,
        heartbeat_interval_ms: int = 3000,
        clock: Clock = SYSTEM,
    ) -> None:
        if not assignors:
            raise ValueError("a group member needs at least one partition assignment strategy")
        self.group_id = group_id
        self.group_instance_id = group_instance_id
        self.client_id = client_id
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        """Kafka's consumers use max.poll.interval.ms as their rebalance timeout."""
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.protocol = rebalance_protocol(assignors)
        self._coordinator = coordinator
        self._partition_counts = partition_counts
        self._assignors = {a.name: a for a in assignors}
        self._clock = clock
        """The session, heartbeat and poll-interval timers run on it."""
        self._lock = threading.RLock()
        self._signal = threading.Event()
        """Wakes the member's thread. Futures settle on other threads (other
        members', the wire server's), which must never wait for this
        member's lock: they only set this."""
        self.state = MemberState.UNJOINED
        self.member_id = ""
        self.generation_id = -1
        self.protocol_name: str | None = None
        self.leader_id = ""
        self._topics: tuple[str, ...] = ()
        self._joined_topics: tuple[str, ...] | None = None
        """The subscription the current generation was joined with."""
        self._owned: set[TopicPartition] = set()
        """What the consumer holds (assignments it was handed, less revocations)."""
        self._lost = False
        """The owned partitions are lost: the member left the generation."""
        self._rejoin = False
        self._rejoin_reason = ""
        self._assignment: list[TopicPartition] | None = None
        """An assignment received and not yet handed to the consumer."""
        self._snapshot: dict[str, int] | None = None
        """The leader's: partition counts of the group's topics it assigned from."""
        self._join: Future[JoinResult] | None = None
        self._join_protocols: list[tuple[str, bytes]] = []
        self._sync: Future[SyncResult] | None = None
        self._done: Future[None] = _resolved_future()
        self._error: BaseException | None = None
        self._last_poll = clock.monotonic()
        self._next_heartbeat = 0.0
        self._join_again_at: float | None = None
        """When a join refused COORDINATOR_NOT_AVAILABLE or NOT_COORDINATOR is
        sent again."""
        self._join_backoff = JOIN_RETRY_BACKOFF_S
        self._closed = False
        self._thread: threading.Thread | None = None

    # -- facts ------------------------------------------------------------------------

    @property
    def subscribed(self) -> bool:
        return bool(self._topics)

    @property
    def subscription(self) -> tuple[str, ...]:
        return self._topics

    @property
    def is_leader(self) -> bool:
        with self._lock:
            return bool(self.member_id) and self.leader_id == self.member_id

    def metadata(self) -> ConsumerGroupMetadata:
        with self._lock:
            return ConsumerGroupMetadata(
                self.group_id, self.generation_id, self.member_id, self.group_instance_id
            )

    def commit_identity(self) -> tuple[int, str, str | None]:
        """The generation, member id and instance id a commit is made with:
        the latest generation the member joined (the coordinator refuses a
        commit for a generation that is over). Raises RebalanceInProgress
        while a rebalance is under way and the member has no generation, and
        UnknownMemberId when it is not in the group."""
        with self._lock:
            if self.generation_id >= 0 and self.member_id:
                return self.generation_id, self.member_id, self.group_instance_id
            if self.state in (MemberState.JOINING, MemberState.SYNCING):
                raise RebalanceInProgress(
                    f"group {self.group_id}: the consumer is joining the group; poll to complete it"
                )
            raise UnknownMemberId(
                f"group {self.group_id}: the consumer is not part of an active generation "
                "(its partitions may be another member's now); poll to rejoin"
            )

    # -- the consumer's thread --------------------------------------------------------

    def subscribe(self, topics: Iterable[str]) -> None:
        """The topics to consume; a change makes the member join again at
        its next step."""
        with self._lock:
            self._topics = tuple(sorted(set(topics)))

    def polled(self) -> None:
        """The consumer polled: the max.poll.interval.ms clock starts over."""
        with self._lock:
            self._last_poll = self._clock.monotonic()

    def step(self) -> Step:
        """The next thing the consumer must do for the group, or None when
        it is a stable member (or not subscribed). Raises the error that
        ended the membership (FencedInstanceId, NotCoordinator, ...)."""
        with self._lock:
            if self._error is not None:
                raise self._error
            if self._closed:
                return None
            if self._assignment is not None:
                return self._deliver()
            if self.state in (MemberState.JOINING, MemberState.SYNCING):
                return Rebalancing(self._done)
            if not self._topics:
                return None
            if self.state == MemberState.STABLE and not self._rejoin:
                why = self._why_rejoin()
                if why is None:
                    return None
                self._request_rejoin(why)
            revoke = self._revoke_before_join()
            if revoke is not None:
                return revoke
            self._start_join()
            return Rebalancing(self._done)

    def release(self) -> Revoke | None:
        """Before leaving: the partitions the consumer must give up."""
        with self._lock:
            if not self._owned:
                return None
            lost = self._lost or self.generation_id < 0
            owned, self._owned, self._lost = self._owned, set(), False
            return Revoke(sorted(owned), lost)

    def leave(self, reason: str) -> None:
        """Leaves the group (a static member only forgets its generation:
        its session keeps its place until it comes back or expires)."""
        with self._lock:
            if self.group_instance_id is None and self.member_id:
                self._send_leave(reason)
            self._reset(member_id=True)
            self._owned = set()
            self._lost = False
            self._rejoin = False
            self._joined_topics = None
            self._topics = ()

    def _send_leave(self, reason: str) -> None:
        """LeaveGroup, answered once the coordinator's write of it is
        durable; a failure is logged (as Kafka's consumer does): the
        coordinator keeps the member until its session ends. Waits at most
        a session timeout, after which the member is gone either way."""
        try:
            left = self._coordinator.leave_group(self.group_id, [(self.member_id, None)], reason)
            result = left.result(self.session_timeout_ms / 1000)
        except (EngineError, TimeoutError) as error:
            log.info("group %s: leaving failed: %r", self.group_id, error)
            return
        code = result.error if result.error != KafkaCode.NONE else result.members[0]
        if code != KafkaCode.NONE:
            log.info("group %s: leaving failed: %s", self.group_id, code.name)
        else:
            log.info("group %s: %s left: %s", self.group_id, self.member_id, reason)

    def close(self) -> None:
        """Stops the member's thread (leave first to leave the group)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        self._signal.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    # -- steps ---------------------------------------------------------------------------

    def _why_rejoin(self) -> str | None:
        if self._joined_topics != self._topics:
            return "the subscription changed"
        if self._snapshot is not None:
            counts = self._partition_counts(self._snapshot)
            if {t: counts.get(t, 0) for t in self._snapshot} != self._snapshot:
                return "the partitions of the group's topics changed"
        return None

    def _request_rejoin(self, reason: str) -> None:
        if not self._rejoin:
            log.info("group %s: %s rejoins: %s", self.group_id, self.member_id, reason)
        self._rejoin = True
        self._rejoin_reason = reason

    def _revoke_before_join(self) -> Revoke | None:
        if not self._owned:
            self._lost = False
            return None
        if self._lost:
            owned, self._owned, self._lost = self._owned, set(), False
            return Revoke(sorted(owned), True)
        if self.protocol == RebalanceProtocol.EAGER:
            owned, self._owned = self._owned, set()
            return Revoke(sorted(owned), False)
        gone = {tp for tp in self._owned if tp.topic not in self._topics}
        if gone:
            self._owned -= gone
            return Revoke(sorted(gone), False)
        return None

    def _start_join(self) -> None:
        reason = self._rejoin_reason or "joining the group"
        self._rejoin = False
        self._rejoin_reason = ""
        self._joined_topics = self._topics
        self._snapshot = None
        self._done = running_future()
        self.state = MemberState.JOINING
        owned = sorted(self._owned) if self.protocol == RebalanceProtocol.COOPERATIVE else []
        self._join_protocols = [
            (
                name,
                encode_subscription(
                    Subscription(
                        list(self._topics),
                        each.user_data(self.generation_id),
                        owned,
                        self.generation_id,
                    )
                ),
            )
            for name, each in self._assignors.items()
        ]
        self._send_join(reason)
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"tidelog-group-{self.group_id}", daemon=True
            )
            # A clock that jumps (a ManualClock) makes the thread look again.
            self._clock.on_advance(self._wake)
            self._thread.start()

    def _send_join(self, reason: str) -> None:
        self._join = self._coordinator.join_group(
            self.group_id,
            self.member_id,
            self.group_instance_id,
            CONSUMER_PROTOCOL_TYPE,
            self._join_protocols,
            self.session_timeout_ms,
            self.rebalance_timeout_ms,
            client_id=self.client_id,
            client_host=CLIENT_HOST,
            require_known_member_id=True,
            reason=reason,
        )
        self._join.add_done_callback(self._wake)

    def _deliver(self) -> Assigned:
        assert self._assignment is not None
        assigned = set(self._assignment)
        self._assignment = None
        added = assigned - self._owned
        revoked = self._owned - assigned
        self._owned = assigned
        if revoked and self.protocol == RebalanceProtocol.COOPERATIVE:
            # Their new owners get them in the rebalance this one starts.
            self._request_rejoin(f"{len(revoked)} partitions were revoked")
        return Assigned(sorted(assigned), sorted(added), sorted(revoked))

    # -- the member's thread ----------------------------------------------------------

    def _wake(self, _: object = None) -> None:
        self._signal.set()

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._closed or self._error is not None:
                    return
                try:
                    timeout = self._turn()
                except Exception as error:  # a bug must end the membership, not hang it
                    log.exception("group %s: the member failed", self.group_id)
                    self._fail(error)
                    return
            if timeout is None or timeout > 0:
                self._signal.wait(timeout)
            # Every turn looks at the whole state, so clearing before it loses nothing.
            self._signal.clear()

    def _turn(self) -> float | None:
        """Does what is due; returns how long to wait for more (None: until woken)."""
        if self._join_again_at is not None:
            wait = self._join_again_at - self._clock.monotonic()
            if wait > 0:
                return wait
            self._join_again_at = None
            try:
                self._send_join("joining again after the coordinator was not available")
            except EngineError as error:  # a closed engine's: this member is over
                self._fail(error)
            return 0.0
        if self._join is not None and self._join.done():
            self._joined(self._join.result())
            return 0.0
        if self._sync is not None and self._sync.done():
            self._synced(self._sync.result())
            return 0.0
        if self.state != MemberState.STABLE:
            return None
        now = self._clock.monotonic()
        poll_deadline = self._last_poll + self.rebalance_timeout_ms / 1000
        if now >= poll_deadline:
            self._poll_timed_out()
            return None
        if now >= self._next_heartbeat:
            self._heartbeat()
            self._next_heartbeat = now + self.heartbeat_interval_ms / 1000
            return 0.0
        return min(self._next_heartbeat, poll_deadline) - now

    def _joined(self, result: JoinResult) -> None:
        self._join = None
        if self.state != MemberState.JOINING:
            return  # it left meanwhile
        code = result.error
        if code == KafkaCode.NONE:
            self.member_id = result.member_id
            self.generation_id = result.generation_id
            self.protocol_name = result.protocol_name
            self.leader_id = result.leader
            assignments = self._assign(result) if result.leader == result.member_id else {}
            self.state = MemberState.SYNCING
            self._sync = self._coordinator.sync_group(
                self.group_id,
                self.generation_id,
                self.member_id,
                self.group_instance_id,
                CONSUMER_PROTOCOL_TYPE,
                self.protocol_name,
                assignments,
            )
            self._sync.add_done_callback(self._wake)
        elif code == KafkaCode.MEMBER_ID_REQUIRED:
            self.member_id = result.member_id  # KIP-394: join again with it
            self._send_join("joining with the member id the coordinator gave")
        elif code == KafkaCode.UNKNOWN_MEMBER_ID:
            self._lose(member_id=True, why="the coordinator does not know the member")
        elif code == KafkaCode.REBALANCE_IN_PROGRESS:
            self._retry("the join was superseded")
        elif code in _COORDINATOR_UNKNOWN:
            self._join_later(f"the coordinator could not store the join ({code.name})")
        else:
            self._fail(group_error(code, f"group {self.group_id}: joining failed"))

    def _synced(self, result: SyncResult) -> None:
        self._sync = None
        if self.state != MemberState.SYNCING:
            return
        code = result.error
        if code == KafkaCode.NONE:
            try:
                self._assignment = decode_assignment(result.assignment).partitions
            except ConsumerProtocolError as error:
                log.error(
                    "group %s: the leader's assignment does not parse (%s); nothing assigned",
                    self.group_id,
                    error,
                )
                self._assignment = []
            self.state = MemberState.STABLE
            self._join_backoff = JOIN_RETRY_BACKOFF_S
            self._next_heartbeat = self._clock.monotonic() + self.heartbeat_interval_ms / 1000
            log.info(
                "group %s: %s is in generation %d with %d partitions",
                self.group_id,
                self.member_id,
                self.generation_id,
                len(self._assignment),
            )
            _resolve(self._done)
        elif code == KafkaCode.REBALANCE_IN_PROGRESS:
            self._retry("the group began another rebalance")
        elif code == KafkaCode.ILLEGAL_GENERATION:
            self._lose(member_id=False, why=f"generation {self.generation_id} is over")
        elif code == KafkaCode.UNKNOWN_MEMBER_ID:
            self._lose(member_id=True, why="the coordinator does not know the member")
        elif code in _COORDINATOR_UNKNOWN:
            self._join_later(f"the coordinator could not store the assignment ({code.name})")
        else:
            self._fail(group_error(code, f"group {self.group_id}: syncing failed"))

    def _heartbeat(self) -> None:
        code = self._coordinator.heartbeat(
            self.group_id, self.generation_id, self.member_id, self.group_instance_id
        )
        if code == KafkaCode.NONE:
            return
        if code == KafkaCode.REBALANCE_IN_PROGRESS:
            self._request_rejoin("the group is rebalancing")
        elif code == KafkaCode.ILLEGAL_GENERATION:
            self._lose(member_id=False, why=f"generation {self.generation_id} is over")
        elif code == KafkaCode.UNKNOWN_MEMBER_ID:
            self._lose(member_id=True, why="the coordinator does not know the member")
        elif code in _COORDINATOR_UNKNOWN:
            # Kafka's heartbeat thread (marking the coordinator unknown on
            # NOT_COORDINATOR, then finding it again) sends the next one
            # after the backoff and the member stays; here it is sent at the
            # next interval, and a group that lost the member in its failed
            # write answers it UNKNOWN_MEMBER_ID.
            log.info("group %s: heartbeat refused: %s", self.group_id, code.name)
        else:
            self._fail(group_error(code, f"group {self.group_id}: heartbeat failed"))

    def _poll_timed_out(self) -> None:
        log.warning(
            "group %s: %s has not polled for max.poll.interval.ms (%d ms); it leaves the "
            "group and its partitions go to others",
            self.group_id,
            self.member_id,
            self.rebalance_timeout_ms,
        )
        if self.group_instance_id is None:
            self._send_leave("consumer poll timeout has expired")
        self._lose(member_id=True, why="its poll timeout expired")

    def _assign(self, result: JoinResult) -> dict[str, bytes]:
        """The leader's part: every member's assignment by the chosen assignor."""
        assignments, self._snapshot = assign_members(
            self.group_id, self.member_id, result, self._assignors, self._partition_counts
        )
        return assignments

    # -- state changes ----------------------------------------------------------------

    def _reset(self, *, member_id: bool) -> None:
        if member_id:
            self.member_id = ""
        self.generation_id = -1
        self.leader_id = ""
        self.state = MemberState.UNJOINED
        self._join = None
        self._join_again_at = None
        self._sync = None
        self._assignment = None
        self._snapshot = None
        _resolve(self._done)

    def _retry(self, why: str) -> None:
        """Back to joining (at the consumer's next step), keeping the generation."""
        self.state = MemberState.UNJOINED
        self._join = None
        self._sync = None
        self._request_rejoin(why)
        _resolve(self._done)

    def _join_later(self, why: str) -> None:
        """The coordinator could not store the group (COORDINATOR_NOT_AVAILABLE:
        its store past the unuploaded headroom, which takes writes again once
        uploads resume; NOT_COORDINATOR: the write failed): the member sends
        its join again after a backoff, with its member id and generation,
        still rebalancing (the consumer's poll waits, raising nothing), as
        Kafka's consumer rejoins after a retriable error (retry.backoff.ms,
        doubling up to retry.backoff.max.ms; AbstractCoordinator's
        joinGroupIfNeeded, after marking the coordinator unknown on
        NOT_COORDINATOR)."""
        log.info("group %s: %s; joining again", self.group_id, why)
        self.state = MemberState.JOINING
        self._join = None
        self._sync = None
        self._assignment = None
        self._join_again_at = self._clock.monotonic() + self._join_backoff
        self._join_backoff = min(2 * self._join_backoff, JOIN_RETRY_BACKOFF_MAX_S)

    def _lose(self, *, member_id: bool, why: str) -> None:
        """The member is out of the generation: what it owns is lost."""
        log.info(
            "group %s: %s is out of the group's generation: %s", self.group_id, self.member_id, why
        )
        self._lost = bool(self._owned)
        self._reset(member_id=member_id)
        self._request_rejoin(why)

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._reset(member_id=False)


_COORDINATOR_UNKNOWN = frozenset({KafkaCode.COORDINATOR_NOT_AVAILABLE, KafkaCode.NOT_COORDINATOR})
"""The answers Kafka's consumer takes as its coordinator gone for now: it
finds the coordinator again and sends the request again."""


def _resolved_future() -> Future[None]:
    future: Future[None] = running_future()
    future.set_result(None)
    return future


def _resolve(future: Future[None]) -> None:
    if not future.done():
        future.set_result(None)
