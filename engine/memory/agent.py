"""Typed agent records: :class:`AgentMemory` writes each step of an agent's
work (tool calls and results, decisions, approvals, denials, overrides,
compensations) as one record in the agent-action schema, and returns its
:class:`~engine.memory.vector.RecordRef` once it is durable.

``decide_and_act`` writes a decision and the records that carry it out in
one Kafka transaction: a read_committed reader sees all of them or none.

The same calls run embedded (on an open Engine, as a principal) or over the
wire (on a bootstrap address, through confluent-kafka); see docs/memory.md.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

from engine.authorization import ANONYMOUS
from engine.clock import SYSTEM, Clock
from engine.errors import InvalidTxnState
from engine.memory.actions import (
    ACTION_TYPES,
    CAUSATION_HEADER,
    CORRELATION_HEADER,
    ActionRecord,
    ActionType,
    Actor,
    InvalidAction,
    Policy,
    Reference,
    Tool,
    build_action,
    validate,
)
from engine.memory.replay import check_timeout
from engine.memory.transport import EmbeddedTransport, RecordNotFound, StoredRecord, Transport
from engine.memory.vector import InvalidVector, OffsetVector, RecordRef, once_each
from engine.types import Header

if TYPE_CHECKING:
    from engine.engine import Engine

DEFAULT_TOPIC = "agent.actions"

_KNOWN_CAUSES = 4096
"""How many written actions' ids are remembered by reference, so a causation
given as a RecordRef needs no read."""


class StoredAction(NamedTuple):
    """An action read back: where it is, the action, and its record's headers."""

    ref: RecordRef
    action: dict[str, Any]
    headers: tuple[Header, ...]

    @property
    def action_id(self) -> str:
        return str(self.action["action_id"])

    @property
    def correlation_id(self) -> str:
        return str(self.action["correlation_id"])


Cause = RecordRef | StoredAction | str
"""What caused an action: its record (by reference or read back) or its action_id."""


class Decided(NamedTuple):
    """A committed decide-and-act: the decision's record and its effects'."""

    decision: RecordRef
    effects: tuple[RecordRef, ...]


class AgentMemory:
    """Writes an actor's typed agent records; thread-safe for writes, one
    decide-and-act at a time. Use as a context manager (or call close)."""

    def __init__(
        self,
        target: Engine | str,
        actor: Actor,
        *,
        topics: str | Mapping[str, str] = DEFAULT_TOPIC,
        principal: str | None = None,
        transactional_id: str | None = None,
        transaction_timeout_ms: int = 60_000,
        clock: Clock | None = None,
        timeout: float = 30.0,
        kafka_config: Mapping[str, Any] | None = None,
    ) -> None:
        """``target``: an open Engine (embedded, writing as ``principal``) or a
        bootstrap address (over the wire; ``kafka_config`` adds librdkafka
        settings, e.g. security). ``topics``: one topic for every action, or
        a mapping from action type to topic (types not named go to
        ``agent.actions``). ``transactional_id``: decide-and-act's; keep it
        stable across restarts so a new run fences a crashed one and aborts
        its open transaction. ``timeout``: the longest any call waits.
        An actor naming a principal other than ``principal`` is refused
        (InvalidAction): its records would name one while another wrote them."""
        check_timeout(timeout)
        if principal is not None and actor.principal not in (None, principal):
            raise InvalidAction(
                f"the actor names principal {actor.principal!r}, but the memory writes "
                f"as {principal!r}",
                "$.actor.principal",
            )
        self.actor = actor if principal is None or actor.principal else _with(actor, principal)
        self.timeout = timeout
        self._topics = topics
        self._causes: OrderedDict[RecordRef, tuple[str, str]] = OrderedDict()
        """Written actions' ids by their full ref: the topic id tells a topic
        created again (same positions, same epoch) from the one written to."""
        self._transport: Transport
        if isinstance(target, str):
            from engine.memory.wire import WireTransport  # noqa: PLC0415 (optional client)

            self._clock = clock or SYSTEM
            self._transport = WireTransport(
                target,
                clock=self._clock,
                transactional_id=transactional_id,
                transaction_timeout_ms=transaction_timeout_ms,
                config=kafka_config,
            )
        else:
            self._clock = clock or target.clock
            self._transport = EmbeddedTransport(
                target,
                principal=principal or actor.principal or ANONYMOUS,
                transactional_id=transactional_id,
                transaction_timeout_ms=transaction_timeout_ms,
            )
        self._deciding = False
        self._deciding_thread: int | None = None
        self._held_from: dict[tuple[str, int], int] = {}
        """Each partition the open decide_and_act wrote, and the offset of its
        first record there: read_committed readers are given nothing from it
        on until the transaction ends."""

    def topic_for(self, action_type: str) -> str:
        if isinstance(self._topics, str):
            return self._topics
        return self._topics.get(action_type, DEFAULT_TOPIC)

    # -- the actions -----------------------------------------------------------------

    def tool_call(
        self,
        tool: Tool | str,
        *,
        correlation_id: str | None = None,
        input_ref: Reference | None = None,
        causation: Cause | None = None,
        policy: Policy | None = None,
        context: OffsetVector | None = None,
        started_ms: int | None = None,
    ) -> RecordRef:
        """Records that the actor called ``tool`` (its input kept at ``input_ref``)."""
        return self._write(
            "tool_call",
            correlation_id,
            causation,
            tool=_tool(tool),
            input_ref=input_ref,
            policy=policy,
            context=context,
            started_ms=started_ms,
        )

    def tool_result(
        self,
        tool: Tool | str,
        *,
        correlation_id: str | None = None,
        output_ref: Reference | None = None,
        causation: Cause | None = None,
        policy: Policy | None = None,
        context: OffsetVector | None = None,
        started_ms: int | None = None,
        finished_ms: int | None = None,
    ) -> RecordRef:
        """Records what a tool call gave back (kept at ``output_ref``)."""
        return self._write(
            "tool_result",
            correlation_id,
            causation,
            tool=_tool(tool),
            output_ref=output_ref,
            policy=policy,
            context=context,
            started_ms=started_ms,
            finished_ms=finished_ms,
        )

    def decision(
        self,
        *,
        correlation_id: str | None = None,
        context: OffsetVector | None = None,
        causation: Cause | None = None,
        policy: Policy | None = None,
        output_ref: Reference | None = None,
        started_ms: int | None = None,
    ) -> RecordRef:
        """Records a decision and the context (offset vector) it was based on."""
        return self._write(
            "decision",
            correlation_id,
            causation,
            context=context,
            policy=policy,
            output_ref=output_ref,
            started_ms=started_ms,
        )

    def approval(
        self,
        *,
        reason: str | None = None,
        correlation_id: str | None = None,
        causation: Cause | None = None,
        policy_id: str | None = None,
        policy_version: str | None = None,
        started_ms: int | None = None,
    ) -> RecordRef:
        """Records that the actor allowed what ``causation`` asked for."""
        policy = Policy("allow", policy_id, policy_version, reason)
        return self._write(
            "approval", correlation_id, causation, policy=policy, started_ms=started_ms
        )

    def denial(
        self,
        *,
        reason: str | None = None,
        correlation_id: str | None = None,
        causation: Cause | None = None,
        policy_id: str | None = None,
        policy_version: str | None = None,
        started_ms: int | None = None,
    ) -> RecordRef:
        """Records that the actor (often a policy service) refused ``causation``."""
        policy = Policy("deny", policy_id, policy_version, reason)
        return self._write(
            "denial", correlation_id, causation, policy=policy, started_ms=started_ms
        )

    def override(
        self,
        *,
        reason: str,
        correlation_id: str | None = None,
        causation: Cause | None = None,
        policy_id: str | None = None,
        policy_version: str | None = None,
        started_ms: int | None = None,
    ) -> RecordRef:
        """Records that the actor allowed what a policy denied (``causation``: the denial)."""
        policy = Policy("allow", policy_id, policy_version, reason)
        return self._write(
            "override", correlation_id, causation, policy=policy, started_ms=started_ms
        )

    def compensation(
        self,
        of: Cause,
        *,
        reason: str,
        output_ref: Reference | None = None,
        correlation_id: str | None = None,
        started_ms: int | None = None,
    ) -> RecordRef:
        """Records that the actor undid ``of`` (its causation), under the
        compensated action's correlation id unless another is given.

        A compensated record (a ``RecordRef``, or a ``StoredAction``'s ref)
        is read first, as this memory's principal, even one it wrote: it
        must be there, readable by the writer, and hold that action
        (RecordNotFound, the read's authorization error, InvalidAction).
        An action id given as text needs ``correlation_id`` (InvalidAction)
        and is looked for among that correlation's actions on this memory's
        action topics, as :meth:`history` reads them (a scan: pass the ref
        where it is known); RecordNotFound if none has it (docs/design/0066)."""
        return self._write(
            "compensation",
            correlation_id,
            self._compensated(of, correlation_id),
            policy=Policy("allow", reason=reason),
            output_ref=output_ref,
            started_ms=started_ms,
        )

    # -- decide and act ----------------------------------------------------------------

    @contextmanager
    def decide_and_act(
        self,
        *,
        correlation_id: str | None = None,
        context: OffsetVector | None = None,
        causation: Cause | None = None,
        policy: Policy | None = None,
    ) -> Iterator[Act]:
        """Writes a decision and, through the yielded :class:`Act`, its
        effects, in one transaction: committed when the block ends, aborted
        if it raises (the exception goes on). ``act.result`` holds the refs
        once committed."""
        if self._deciding:
            raise InvalidTxnState("one decide_and_act at a time per AgentMemory")
        decision = self._record(
            "decision", correlation_id, causation, context=context, policy=policy
        )
        self._deciding = True
        self._deciding_thread = threading.get_ident()
        try:
            self._transport.begin(self.timeout)
            try:
                written = self._transport.write_in_transaction(
                    decision.topic, decision.value, decision.key, decision.headers, self.timeout
                )
                self._hold(written)
                act = Act(self, decision, written)
                yield act
            except BaseException:
                self._transport.abort(self.timeout)
                raise
            try:
                self._transport.commit(self.timeout)
            except BaseException:
                # A failed commit can only be aborted (Kafka's abortable
                # error); a fenced writer's abort fails too, and its error is
                # the one worth raising.
                with contextlib.suppress(Exception):
                    self._transport.abort(self.timeout)
                raise
            act.result = Decided(act.decision, tuple(act.effects))
            self._remember(act.decision, decision)
        finally:
            self._deciding = False
            self._deciding_thread = None
            self._held_from.clear()

    def _hold(self, written: RecordRef) -> None:
        self._held_from.setdefault((written.topic, written.partition), written.offset)

    # -- reading -------------------------------------------------------------------------

    def read(self, ref: RecordRef) -> StoredAction:
        """The action stored at ``ref`` (read_committed); RecordNotFound if
        none is, InvalidAction if the record there is not an action.

        A record at or after one of the decide_and_act this thread has open
        is refused at once: only that transaction's end could let it be
        read, and it cannot end while its own thread waits."""
        held = self._held_from.get((ref.topic, ref.partition))
        if held is not None and ref.offset >= held and self._in_decide_and_act():
            raise RecordNotFound(
                f"no record at {ref} yet: this thread's open decide_and_act holds "
                f"{ref.topic}-{ref.partition} from offset {held}, until it ends"
            )
        return parse_stored(self._transport.read(ref, self.timeout))

    def _in_decide_and_act(self) -> bool:
        return self._deciding_thread == threading.get_ident()

    def history(
        self, correlation_id: str, *, topics: Sequence[str] | None = None
    ) -> list[StoredAction]:
        """Every committed action of ``correlation_id`` on ``topics`` (default:
        the topics this memory writes actions to), ordered by topic, then
        partition and offset (one correlation id keys one partition per
        topic, so within a topic this is the order they were written).

        A scan: it reads the topics from their start, keeping the records
        whose correlation header matches; records there that are not agent
        actions (a decide-and-act's effects), or that no action could be read
        from (a key named twice, in its context too: :func:`parse_stored`),
        are left out, so one such record cannot stop the trail's reads;
        :meth:`read` of its ref says what is wrong with it."""
        wanted = topics if topics is not None else self._action_topics()
        header = (CORRELATION_HEADER, correlation_id.encode())
        found: list[StoredAction] = []
        for stored in sorted(self._transport.scan(wanted, header, self.timeout)):
            try:
                found.append(parse_stored(stored))
            except (InvalidAction, InvalidVector):
                continue
        return found

    def _action_topics(self) -> list[str]:
        return sorted({self.topic_for(action_type) for action_type in ACTION_TYPES})

    # -- the parts -----------------------------------------------------------------------

    def _record(
        self,
        action_type: ActionType,
        correlation_id: str | None,
        causation: Cause | None,
        *,
        started_ms: int | None = None,
        **fields: Any,
    ) -> ActionRecord:
        causation_id, cause_correlation = self._cause(causation)
        correlation = correlation_id or cause_correlation
        if correlation is None:
            raise InvalidAction(
                f"a {action_type} needs a correlation_id (or a causation that has one)",
                "$.correlation_id",
            )
        now = self._clock.time_ms()
        action = build_action(
            action_type,
            action_id=str(uuid.uuid4()),
            actor=self.actor,
            correlation_id=correlation,
            causation_id=causation_id,
            started_ms=now if started_ms is None else started_ms,
            recorded_ms=now,
            **fields,
        )
        return ActionRecord(action, self.topic_for(action_type))

    def _write(
        self,
        action_type: ActionType,
        correlation_id: str | None,
        causation: Cause | None,
        **fields: Any,
    ) -> RecordRef:
        record = self._record(action_type, correlation_id, causation, **fields)
        ref = self._transport.write(
            record.topic, record.value, record.key, record.headers, self.timeout
        )
        self._remember(ref, record)
        return ref

    def _remember(self, ref: RecordRef, record: ActionRecord) -> None:
        self._causes[ref] = (record.action_id, record.correlation_id)
        while len(self._causes) > _KNOWN_CAUSES:
            self._causes.popitem(last=False)

    def _compensated(self, of: Cause, correlation_id: str | None) -> Cause:
        """``of`` read back from its record, or found by its action id among
        ``correlation_id``'s actions (see compensation)."""
        if isinstance(of, str):
            if correlation_id is None:
                raise InvalidAction(
                    f"a compensation of action {of} needs the correlation_id it is in",
                    "$.correlation_id",
                )
            for action in self.history(correlation_id):
                if action.action_id == of:
                    return action
            raise RecordNotFound(
                f"no action {of} among the actions of correlation {correlation_id!r} "
                f"on {', '.join(self._action_topics())}"
            )
        if isinstance(of, StoredAction):
            return self._held_at_ref(of)
        return self.read(of)

    def _held_at_ref(self, claimed: StoredAction) -> StoredAction:
        """The action at ``claimed.ref``, read back, if it is the action
        ``claimed`` says it is (the same fields, its id and correlation
        among them); RecordNotFound if another action is there (or none:
        the read's own errors, InvalidAction for a record that is no
        action). A StoredAction is only a value: built by hand, or read
        before its topic was created again, it would otherwise name a
        causation the log does not hold."""
        stored = self.read(claimed.ref)
        if stored.action != claimed.action:
            raise RecordNotFound(
                f"no action {claimed.action_id} of correlation {claimed.correlation_id!r} "
                f"as given at {claimed.ref}: it holds action {stored.action_id} of "
                f"correlation {stored.correlation_id!r}"
            )
        return stored

    def _cause(self, causation: Cause | None) -> tuple[str | None, str | None]:
        """The causing action's id and correlation id (None if unknown)."""
        if causation is None:
            return None, None
        if isinstance(causation, str):
            return causation, None
        if isinstance(causation, StoredAction):
            # Checked against the log, as a RecordRef is read: one read,
            # unless this memory wrote the action at that ref (remembered
            # with the id and correlation the new record names).
            claimed = (causation.action_id, causation.correlation_id)
            if self._causes.get(causation.ref) == claimed:
                return claimed
            stored = self._held_at_ref(causation)
            return stored.action_id, stored.correlation_id
        known = self._causes.get(causation)
        if known is not None:
            return known
        stored = self.read(causation)
        return stored.action_id, stored.correlation_id

    def close(self) -> None:
        self._transport.close(self.timeout)

    def __enter__(self) -> AgentMemory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Act:
    """The effects of one decide-and-act: each ``send`` writes a record in
    the decision's transaction (keyed by the correlation id unless a key is
    given, with the correlation and the decision's id as headers)."""

    def __init__(self, memory: AgentMemory, decision: ActionRecord, written: RecordRef) -> None:
        self._memory = memory
        self.decision_id = decision.action_id
        self.correlation_id = decision.correlation_id
        self.decision = written
        """The decision's ref (written, visible once committed)."""
        self.effects: list[RecordRef] = []
        self.result: Decided | None = None
        """Set once the transaction commits."""

    def send(
        self,
        topic: str,
        value: bytes | str,
        *,
        key: bytes | str | None = None,
        headers: Sequence[Header] = (),
    ) -> RecordRef:
        """Writes an effect; returns its ref (visible to read_committed
        readers only once the block commits)."""
        key_bytes = self.correlation_id.encode() if key is None else _bytes(key)
        linked = (
            (CORRELATION_HEADER, self.correlation_id.encode()),
            (CAUSATION_HEADER, self.decision_id.encode()),
            *headers,
        )
        memory = self._memory
        ref = memory._transport.write_in_transaction(
            topic, _bytes(value), key_bytes, linked, memory.timeout
        )
        memory._hold(ref)
        self.effects.append(ref)
        return ref


def parse_stored(stored: StoredRecord) -> StoredAction:
    """A stored record as an action; InvalidAction if it is not one (a key
    named twice in it is one such), and InvalidVector if its
    ``context_offsets`` names a key twice, as a vector's text naming one
    twice is: of a key named twice json.loads keeps the last, a guess."""
    repeated: list[InvalidVector] = []
    try:
        action = json.loads(
            stored.value or b"", object_pairs_hook=lambda pairs: _named_once(pairs, repeated)
        )
    except ValueError as error:
        raise InvalidAction(f"{stored.ref}: not JSON: {error}") from error
    if repeated:
        context = action.get("context_offsets") if isinstance(action, dict) else None
        if isinstance(context, _NamedTwice):
            raise InvalidVector(f"{stored.ref}: context_offsets: {context.refusal}")
        raise InvalidAction(f"{stored.ref}: not an agent action: {repeated[0]}")
    if not isinstance(action, dict):
        raise InvalidAction(f"{stored.ref}: not a JSON object")
    validate(action)
    return StoredAction(stored.ref, action, stored.headers)


class _NamedTwice(dict[str, Any]):
    """An object naming a key twice, or holding (as a value) one that does:
    json.loads builds inner objects first, so the mark rises to the value
    of ``context_offsets`` (objects all the way down) when it is in there."""

    refusal: InvalidVector


def _named_once(pairs: list[tuple[str, Any]], repeated: list[InvalidVector]) -> dict[str, Any]:
    """The vector text's own check (:func:`once_each`), noting a refusal in
    ``repeated`` and marking the object instead of raising, so the action
    can say whether the key was in its context."""
    try:
        found = once_each(pairs)
    except InvalidVector as refusal:
        repeated.append(refusal)
        found = _NamedTwice(pairs)
        found.refusal = refusal
        return found
    inner = next((v for v in found.values() if isinstance(v, _NamedTwice)), None)
    if inner is None:
        return found
    marked = _NamedTwice(found)
    marked.refusal = inner.refusal
    return marked


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _tool(tool: Tool | str) -> Tool:
    return Tool(tool) if isinstance(tool, str) else tool


def _with(actor: Actor, principal: str) -> Actor:
    return Actor(actor.kind, actor.id, principal)
