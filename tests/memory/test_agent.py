"""Typed agent records on an embedded engine: every action is one record
the shipped schema accepts and a topic held to it by the broker takes, keyed
and headed as docs/memory.md says; refs round-trip and point at the record;
an invalid action raises InvalidAction and sends nothing; decide-and-act is
all or nothing for read_committed readers, also when the writer raises or
dies before committing; the asyncio twin does the same."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine.acl_bindings import AclBinding, AclPermission, PatternType
from engine.authorization import (
    AclOperation,
    AuthorizationConfig,
    ResourceType,
    TopicAuthorizationFailed,
)
from engine.cli.schemas import agent_action_schema
from engine.clock import ManualClock
from engine.errors import InvalidRecord
from engine.memory import (
    Actor,
    AgentMemory,
    AsyncAgentMemory,
    InvalidAction,
    Policy,
    StoredAction,
    Tool,
    transport,
)
from engine.memory.actions import CAUSATION_HEADER, CORRELATION_HEADER, validate
from engine.memory.snapshot import VectorDiverged
from engine.memory.transport import RecordNotFound
from engine.memory.vector import CONTEXT_HEADER, InvalidVector, OffsetVector, Position, RecordRef
from engine.provenance import LISTENER, PRINCIPAL, RECEIVED_MS, RESERVED_NAMES
from engine.types import ConsumerRecord, TopicPartition
from tests.engine.conftest import FAST_STORE
from tests.memory.conftest import (
    ACTIONS,
    HELD_TO_THE_SCHEMA,
    LONG_TIMEOUT_S,
    governed,
    lost_in_a_takeover,
    read_bounded,
    reads_records_behind_an_open_transaction,
    refuses_what_the_reader_passes_over,
)

SHIPPED = jsonschema.Draft202012Validator(json.loads(agent_action_schema()))
AGENT = Actor("agent", "support-agent")
CONTEXT = OffsetVector({TopicPartition("support.chat", 0): Position(42, 0)})


def committed(opened: engine.Engine, *topics: str, wait: float = 0.05) -> list[ConsumerRecord]:
    """Every record of ``topics`` a read_committed reader sees, up to each
    partition's last stable offset (``wait``: each poll's; 0 on a ManualClock,
    where a poll waits for the clock to move)."""
    partitions = opened.topic_partitions(topics)
    records: list[ConsumerRecord] = []
    stable = {
        tp: opened.list_offset(tp.topic, tp.partition, -1, "read_committed").offset
        for tp in partitions
    }
    with opened.consumer(isolation_level="read_committed", enable_auto_commit=False) as consumer:
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        for _ in range(200):  # bounded: each poll waits at most ``wait``
            records += consumer.poll(wait)
            if all(consumer.position(tp) >= stable[tp] for tp in partitions):
                return records
    raise AssertionError("a read_committed reader did not reach the end")


def headers_of(stored: StoredAction) -> dict[str, bytes]:
    return dict(stored.headers)


def test_each_action_is_one_record_the_schema_and_the_broker_accept(
    memory_engine: engine.Engine,
) -> None:
    human = Actor("human", "lead-sam")
    with (
        AgentMemory(memory_engine, AGENT, principal="User:agent") as agent,
        AgentMemory(memory_engine, human) as lead,
    ):
        call = agent.tool_call(
            "refund",
            correlation_id="refund-7",
            input_ref=RecordRef("support.tool-inputs", 0, 0),
            policy=Policy("not_evaluated"),
        )
        denied = agent.denial(causation=call, reason="above the limit", policy_id="refunds")
        approved = lead.approval(causation=denied, reason="long-time customer")
        overridden = lead.override(causation=denied, reason="the lead's call")
        result = agent.tool_result(
            Tool("refund", "2"), causation=approved, output_ref="payments://refunds/R-88"
        )
        decided = agent.decision(correlation_id="refund-7", context=CONTEXT, causation=result)
        undone = lead.compensation(result, reason="refunded twice")
        refs = [call, denied, approved, overridden, result, decided, undone]
        stored = [agent.read(ref) for ref in refs]

    epoch = memory_engine.partition(ACTIONS, 0).leader_epoch
    assert [ref.offset for ref in refs] == list(range(7))
    types = ["tool_call", "denial", "approval", "override", "tool_result", "decision"]
    for ref, action, action_type in zip(refs, stored, [*types, "compensation"], strict=True):
        assert RecordRef.parse(str(ref)) == ref
        assert (ref.topic, ref.partition, ref.leader_epoch) == (ACTIONS, 0, epoch)
        assert action.ref == ref
        SHIPPED.validate(action.action)
        assert action.action["type"] == action_type
        assert action.correlation_id == "refund-7"
        assert headers_of(action)[CORRELATION_HEADER] == b"refund-7"
    by_ref = {action.ref: action for action in stored}
    assert "causation_id" not in by_ref[call].action
    assert CAUSATION_HEADER not in headers_of(by_ref[call])
    for effect, cause in [(denied, call), (approved, denied), (result, approved), (undone, result)]:
        assert by_ref[effect].action["causation_id"] == by_ref[cause].action_id
        assert headers_of(by_ref[effect])[CAUSATION_HEADER] == by_ref[cause].action_id.encode()
    assert by_ref[call].action["actor"] == {
        "kind": "agent",
        "id": "support-agent",
        "principal": "User:agent",
    }
    assert by_ref[call].action["input_ref"] == {
        "topic": "support.tool-inputs",
        "partition": 0,
        "offset": 0,
    }
    assert by_ref[denied].action["policy"] == {
        "policy_id": "refunds",
        "verdict": "deny",
        "reason": "above the limit",
    }
    assert by_ref[result].action["output_ref"] == {"uri": "payments://refunds/R-88"}
    assert by_ref[decided].action["context_offsets"] == CONTEXT.to_json()
    assert headers_of(by_ref[decided])[CONTEXT_HEADER] == CONTEXT.to_text().encode()
    assert by_ref[undone].action["policy"] == {"verdict": "allow", "reason": "refunded twice"}
    raw = committed(memory_engine, ACTIONS)
    assert [record.key for record in raw] == [b"refund-7"] * 7
    assert len({json.loads(record.value or b"")["action_id"] for record in raw}) == 7


def test_the_topic_refuses_what_is_not_an_action(memory_engine: engine.Engine) -> None:
    """The broker holds agent.actions to the schema: the records above are
    accepted by a check that refuses others."""
    with memory_engine.producer() as producer, pytest.raises(InvalidRecord):
        producer.send(ACTIONS, json.dumps({"type": "tool_call"}), key="k").result(10)
    assert memory_engine.offsets(ACTIONS, 0) == (0, 0)


def test_an_action_whose_context_names_a_key_twice_is_refused(
    memory_engine: engine.Engine,
) -> None:
    """json.loads keeps the last of a key named twice: the action's context
    was read as one of the places its text names, a guess a vector's text
    refuses (InvalidVector), and so does an action's."""
    with AgentMemory(memory_engine, AGENT) as agent:
        decided = agent.read(agent.decision(correlation_id="c-2", context=CONTEXT))
        text = json.dumps(decided.action, separators=(",", ":"))
        place = '{"offset":42,"leader_epoch":0}'
        assert text.count(place) == 1
        twice = {
            "partition": text.replace(place, '{"offset":7,"offset":42,"leader_epoch":0}'),
            "topic": text.replace(
                '"support.chat":', '"support.chat":{"0":{"offset":7}},"support.chat":'
            ),
        }
        for value in twice.values():
            with memory_engine.producer() as producer:
                # the broker's schema check takes it: json.loads kept the last
                sent = producer.send(ACTIONS, value, "c-2", decided.headers).result(10)
            ref = RecordRef(ACTIONS, 0, sent.offset)
            with pytest.raises(InvalidVector, match="named twice"):
                agent.read(ref)
            # left out of the trail, as records that are no action are
            assert [a.ref for a in agent.history("c-2")] == [decided.ref]
        # a key named twice elsewhere in the action is no action at all
        elsewhere = [
            text.replace('"correlation_id":', '"correlation_id":"c-9","correlation_id":', 1),
            text.replace('"kind":', '"kind":"human","kind":', 1),  # in the actor
        ]
        for value in elsewhere:
            with memory_engine.producer() as producer:
                sent = producer.send(ACTIONS, value, key="c-9").result(10)
            with pytest.raises(InvalidAction, match="named twice"):
                agent.read(RecordRef(ACTIONS, 0, sent.offset))


def test_a_compensation_points_at_a_record_this_memory_did_not_write(
    memory_engine: engine.Engine,
) -> None:
    with AgentMemory(memory_engine, AGENT) as agent:
        call = agent.tool_call("email", correlation_id="c-9")
    with AgentMemory(memory_engine, Actor("service", "janitor")) as other:
        # Not among what it wrote: the compensated action is read back by its ref.
        undone = other.compensation(call, reason="sent to the wrong customer")
        compensated, compensation = other.read(call), other.read(undone)
    assert compensation.action["causation_id"] == compensated.action_id
    assert compensation.correlation_id == "c-9"
    assert compensation.action["actor"] == {"kind": "service", "id": "janitor"}


def test_a_compensation_reads_what_it_compensates_as_its_writer(tmp_path: Path) -> None:
    # A writer that may not read the topic compensates nothing, not even its
    # own records: what it links to must be there and readable by it.
    config = engine.EngineConfig(
        store=FAST_STORE,
        cleaner_interval_s=3600.0,
        authorization=AuthorizationConfig(super_users=("User:admin",)),
    )
    with governed(engine.open(tmp_path / "node", None, config)) as opened:
        opened.catalog.add_acls([allowed("User:writer", AclOperation.WRITE)])
        with AgentMemory(opened, AGENT, principal="User:writer") as writer:
            own = writer.tool_call("email", correlation_id="c-1")
            with pytest.raises(TopicAuthorizationFailed):
                writer.compensation(own, reason="unsent")
            with AgentMemory(opened, AGENT, principal="User:admin") as admin:
                stored = admin.read(own)
                with pytest.raises(TopicAuthorizationFailed):
                    writer.compensation(stored, reason="unsent")
                # A read-back action is checked against what its ref holds now.
                other = admin.tool_call("email", correlation_id="c-2")
                forged = stored._replace(ref=other)
                with pytest.raises(RecordNotFound):
                    admin.compensation(forged, reason="unsent")
                undone = admin.read(admin.compensation(stored, reason="unsent"))
        assert undone.action["causation_id"] == stored.action_id
        assert opened.offsets(ACTIONS, 0) == (0, 3)


def test_a_causation_given_as_a_stored_action_is_checked_against_its_record(
    memory_engine: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A StoredAction is a value a caller can make or change: given as a
    causation it is read back at its ref (one read) and refused, nothing
    written, unless that ref holds the very action it says; one the memory
    wrote itself at that ref is known without a read."""
    with (
        AgentMemory(memory_engine, AGENT) as agent,
        AgentMemory(memory_engine, Actor("human", "lead-sam")) as lead,
    ):
        call = agent.tool_call("email", correlation_id="c-1")
        another = agent.tool_call("email", correlation_id="c-2")
        stored = lead.read(call)
        with memory_engine.producer() as producer:
            plain = producer.send("emails", b"not an action", key="c-1").result(10)
        claims = {
            "another action's ref": stored._replace(ref=another),
            "a ref past the log": stored._replace(ref=RecordRef(ACTIONS, 0, 99)),
            "another correlation": stored._replace(
                action={**stored.action, "correlation_id": "c-9"}
            ),
            "another action id": stored._replace(
                action={**stored.action, "action_id": str(uuid.uuid4())}
            ),
        }
        for claim in claims.values():
            with pytest.raises(RecordNotFound):
                lead.approval(causation=claim, reason="checked")
            with pytest.raises(RecordNotFound):
                lead.compensation(claim, reason="checked")
        with pytest.raises(InvalidAction):  # another topic's record, no action
            lead.approval(
                causation=stored._replace(ref=RecordRef("emails", plain.partition, plain.offset)),
                reason="checked",
            )
        assert memory_engine.offsets(ACTIONS, 0) == (0, 2)  # nothing written
        reads: list[RecordRef] = []
        read = transport.EmbeddedTransport.read

        def counted(self: transport.EmbeddedTransport, ref: RecordRef, timeout: float) -> Any:
            reads.append(ref)
            return read(self, ref, timeout)

        monkeypatch.setattr(transport.EmbeddedTransport, "read", counted)
        approved = lead.read(lead.approval(causation=stored, reason="checked"))
        assert reads == [call, approved.ref]  # the causation's one read, then ours
        own = agent.read(call)
        reads.clear()
        agent.tool_result("email", causation=own)  # it wrote what is at that ref
        assert reads == []
    assert approved.action["causation_id"] == stored.action_id
    assert approved.correlation_id == "c-1"


def allowed(principal: str, operation: AclOperation) -> AclBinding:
    return AclBinding(
        ResourceType.TOPIC, ACTIONS, PatternType.LITERAL, principal, "*", operation,
        AclPermission.ALLOW,
    )  # fmt: skip


def test_an_action_needs_a_correlation_and_a_ref_needs_a_record(
    memory_engine: engine.Engine,
) -> None:
    with AgentMemory(memory_engine, AGENT, timeout=1.0) as agent:
        with pytest.raises(InvalidAction) as refused:
            agent.approval(reason="no task named")
        assert refused.value.path == "$.correlation_id"
        with pytest.raises(engine.errors.EngineError):
            agent.compensation(RecordRef(ACTIONS, 0, 5), reason="nothing there")
    assert memory_engine.offsets(ACTIONS, 0) == (0, 0)


def test_a_ref_outside_the_log_is_refused_at_once(
    memory_engine: engine.Engine,
) -> None:
    # Outside the log: refused at once, saying where the log is (a wait could
    # only run out the timeout, 30 s by default).
    with AgentMemory(memory_engine, AGENT) as agent:
        for _ in range(3):
            agent.tool_call("email", correlation_id="c-1")
        memory_engine.delete_records(ACTIONS, 0, 1)
        topic_id = memory_engine.topic_id(ACTIONS)
        for offset in (-1, 0, 3, 1 << 62):
            ref = RecordRef(ACTIONS, 0, offset, -1, topic_id)
            with pytest.raises(RecordNotFound) as refused:
                agent.compensation(ref, reason="nothing there")
            assert (refused.value.log_start_offset, refused.value.high_watermark) == (1, 3)
            with pytest.raises(RecordNotFound):
                agent.read(ref)
    assert memory_engine.offsets(ACTIONS, 0) == (1, 3)


def test_a_ref_the_reader_passes_over_is_refused_without_waiting(
    memory_engine: engine.Engine,
) -> None:
    with AgentMemory(
        memory_engine, AGENT, transactional_id="undoing", timeout=LONG_TIMEOUT_S
    ) as agent:
        refuses_what_the_reader_passes_over(agent)


def test_a_ref_whose_record_is_deleted_mid_read_is_refused_saying_where_the_log_is(
    memory_engine: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DeleteRecords between the read's look at the log and its fetch: the
    reader is not moved to the log's end (to wait there for a record that
    can never be the one named); the read says where the log is now."""
    with AgentMemory(memory_engine, AGENT, timeout=LONG_TIMEOUT_S) as agent:
        written = [agent.tool_call("email", correlation_id=f"c-{n}") for n in range(2)]
        checked = transport.check_record

        def deleted_meanwhile(leader: Any, offset: int, leader_epoch: int) -> None:
            checked(leader, offset, leader_epoch)
            memory_engine.delete_records(ACTIONS, 0, 2)

        monkeypatch.setattr(transport, "check_record", deleted_meanwhile)
        with pytest.raises(RecordNotFound) as refused:
            read_bounded(agent, written[0])
    assert (refused.value.log_start_offset, refused.value.high_watermark) == (2, 2)


def test_a_ref_naming_an_action_a_takeover_lost_is_refused(tmp_path: Path) -> None:
    """Its epoch ended before its offset in the new owner's log: the record
    there now is another's (docs/design/0046), refused as a vector's
    position would be; a ref without an epoch reads what is there."""
    with (
        lost_in_a_takeover(tmp_path, AGENT) as takeover,
        AgentMemory(takeover.new_owner, AGENT) as agent,
    ):
        lost = takeover.lost
        for refuse in (
            lambda: agent.read(lost),
            lambda: agent.compensation(lost, reason="undo"),
            lambda: agent.approval(causation=lost),
        ):
            with pytest.raises(VectorDiverged) as refused:
                refuse()
            assert (refused.value.leader_epoch, refused.value.epoch_end) == (
                lost.leader_epoch,
                lost.offset,
            )
        assert agent.read(takeover.kept).correlation_id == "kept"
        assert agent.read(takeover.taken).correlation_id == "taken"
        no_epoch = RecordRef(ACTIONS, 0, lost.offset, -1, lost.topic_id)
        assert agent.read(no_epoch).correlation_id == "taken"


def test_a_record_behind_an_open_transaction_is_read_once_it_ends(
    memory_engine: engine.Engine,
) -> None:
    with AgentMemory(memory_engine, AGENT) as deciding, AgentMemory(memory_engine, AGENT) as agent:
        reads_records_behind_an_open_transaction(deciding, agent)


def test_a_record_behind_its_own_open_decision_is_refused_at_once(
    memory_engine: engine.Engine,
) -> None:
    # Only the decision's commit would let a read_committed reader have them,
    # and it cannot come while the memory waits (a wait would run the hour).
    with AgentMemory(memory_engine, AGENT, timeout=3600.0) as agent:
        with agent.decide_and_act(correlation_id="c-1") as act:
            sent = agent.tool_call("email", correlation_id="c-2")
            for ref in (act.decision, sent):
                with pytest.raises(RecordNotFound):
                    agent.read(ref)
            with pytest.raises(RecordNotFound):
                agent.compensation(sent, reason="unsent")
        undone = agent.read(agent.compensation(sent, reason="unsent"))
        assert undone.action["causation_id"] == agent.read(sent).action_id


def test_an_actions_patterns_match_as_the_brokers_record_checks_match_them() -> None:
    """RE2's ``$`` is the end of the text, as on the broker: a digest with a
    trailing newline is refused before it is sent, not by the topic."""
    action = {
        "action_id": "a-1",
        "type": "tool_call",
        "actor": {"kind": "agent", "id": "a"},
        "correlation_id": "c-1",
        "timestamps": {"started_ms": 0},
        "input_ref": {"uri": "s3://b/k", "sha256": "ab" * 32},
    }
    validate(action)
    action["input_ref"] = {"uri": "s3://b/k", "sha256": "ab" * 32 + "\n"}
    with pytest.raises(InvalidAction) as refused:
        validate(action)
    assert refused.value.path == "$.input_ref.sha256"


KINDS = st.sampled_from(["agent", "human", "service", "robot", ""])
VERDICTS = st.sampled_from(["allow", "deny", "needs_approval", "not_evaluated", "maybe"])
DIGESTS = st.one_of(
    st.just("ab" * 32), st.text(alphabet="0123456789abcdefABCDEF", min_size=0, max_size=66)
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(KINDS, st.text(max_size=8), st.text(max_size=8), VERDICTS, DIGESTS)
def test_an_action_from_any_fields_is_written_valid_or_refused_unsent(
    memory_engine: engine.Engine,
    kind: str,
    actor_id: str,
    tool: str,
    verdict: str,
    digest: str,
) -> None:
    valid = (
        kind in {"agent", "human", "service"}
        and actor_id != ""
        and tool != ""
        and verdict != "maybe"
        and len(digest) == 64
        and all(c in "0123456789abcdef" for c in digest)
    )
    before = memory_engine.offsets(ACTIONS, 0)[1]
    with AgentMemory(memory_engine, AGENT) as writer:
        writer.actor = Actor(kind, actor_id)
        try:
            ref = writer.tool_call(
                tool,
                correlation_id="c",
                input_ref={"uri": "blob://in", "sha256": digest},
                policy=Policy(verdict),
            )
        except InvalidAction:
            assert not valid
            assert memory_engine.offsets(ACTIONS, 0)[1] == before
            return
        assert valid
        SHIPPED.validate(writer.read(ref).action)


def test_decide_and_act_commits_the_decision_and_its_effects_together(
    memory_engine: engine.Engine,
) -> None:
    with AgentMemory(memory_engine, AGENT, transactional_id="support-agent") as agent:
        with agent.decide_and_act(correlation_id="refund-8", context=CONTEXT) as act:
            paid = act.send("payments", b'{"refund": 30}')
            mailed = act.send("emails", "refunded", key="customer-1")
            assert committed(memory_engine, ACTIONS, "payments", "emails") == []
        assert act.result is not None
        assert act.result.decision == act.decision
        assert act.result.effects == (paid, mailed)
        decision = agent.read(act.result.decision)
    SHIPPED.validate(decision.action)
    assert decision.action["type"] == "decision"
    assert decision.action["context_offsets"] == CONTEXT.to_json()
    seen = committed(memory_engine, ACTIONS, "payments", "emails")
    assert {(r.topic, r.partition, r.offset) for r in seen} == {
        (ref.topic, ref.partition, ref.offset) for ref in [act.decision, paid, mailed]
    }
    effects = {r.topic: r for r in seen if r.topic != ACTIONS}
    assert effects["emails"].key == b"customer-1" and effects["payments"].key == b"refund-8"
    for effect in effects.values():
        assert dict(effect.headers)[CAUSATION_HEADER] == decision.action_id.encode()
        assert dict(effect.headers)[CORRELATION_HEADER] == b"refund-8"


class Boom(Exception):
    pass


def test_decide_and_act_that_raises_leaves_nothing_to_read_committed(
    memory_engine: engine.Engine,
) -> None:
    with AgentMemory(memory_engine, AGENT, transactional_id="support-agent") as agent:
        with pytest.raises(Boom), agent.decide_and_act(correlation_id="refund-9") as act:
            act.send("payments", b'{"refund": 30}')
            raise Boom
        assert act.result is None
        assert committed(memory_engine, ACTIONS, "payments") == []
        with agent.decide_and_act(correlation_id="refund-9") as again:  # the memory goes on
            again.send("payments", b'{"refund": 31}')
    assert [r.value for r in committed(memory_engine, "payments")] == [b'{"refund": 31}']


def test_a_writer_that_dies_before_commit_is_fenced_and_aborted_by_its_successor(
    memory_engine: engine.Engine,
) -> None:
    crashed = AgentMemory(memory_engine, AGENT, transactional_id="support-agent")
    abandoned = crashed.decide_and_act(correlation_id="refund-10")
    act = abandoned.__enter__()  # the block never ends: its process died here
    act.send("payments", b'{"refund": "lost"}')
    assert memory_engine.offsets("payments", act.effects[0].partition)[1] == 1
    with (
        AgentMemory(memory_engine, AGENT, transactional_id="support-agent") as successor,
        successor.decide_and_act(correlation_id="refund-10") as redo,
    ):
        redo.send("payments", b'{"refund": "redone"}')
    seen = committed(memory_engine, ACTIONS, "payments")
    assert [r.value for r in seen if r.topic == "payments"] == [b'{"refund": "redone"}']
    assert [json.loads(r.value or b"")["action_id"] for r in seen if r.topic == ACTIONS] == [
        redo.decision_id
    ]
    with pytest.raises(engine.errors.EngineError):  # the dead writer is fenced
        abandoned.__exit__(None, None, None)
    crashed.close()


def test_the_async_twin_writes_and_decides_alike(memory_engine: engine.Engine) -> None:
    async def work() -> tuple[Any, ...]:
        async with AsyncAgentMemory(memory_engine, AGENT, transactional_id="async") as agent:
            call = await agent.tool_call("refund", correlation_id="a-1")
            undone = await agent.compensation(call, reason="duplicate")
            async with agent.decide_and_act(causation=undone, context=CONTEXT) as act:
                await act.send("payments", b"paid")
            with pytest.raises(Boom):
                async with agent.decide_and_act(correlation_id="a-2") as failed:
                    await failed.send("payments", b"never")
                    raise Boom
            return call, undone, act.result, await agent.read(undone), await agent.read(call)

    call, undone, decided, compensation, compensated = asyncio.run(work())
    assert compensation.action["causation_id"] == compensated.action_id
    assert decided is not None and decided.decision.offset == undone.offset + 1
    seen = committed(memory_engine, ACTIONS, "payments")
    assert [r.value for r in seen if r.topic == "payments"] == [b"paid"]
    assert [r.offset for r in seen if r.topic == ACTIONS] == [0, 1, 2]
    assert RecordRef.parse(str(call)) == call


def test_history_is_every_committed_action_of_one_correlation(
    memory_engine: engine.Engine,
) -> None:
    memory_engine.create_topic("agent.reviews", 3, HELD_TO_THE_SCHEMA)
    routed = {"approval": "agent.reviews", "denial": "agent.reviews"}
    with AgentMemory(memory_engine, AGENT, topics=routed, transactional_id="h") as agent:
        call = agent.tool_call("refund", correlation_id="task-1")
        other = agent.tool_call("search", correlation_id="task-2")
        denied = agent.denial(causation=call, reason="limit")
        with pytest.raises(Boom), agent.decide_and_act(correlation_id="task-1") as failed:
            failed.send("payments", b"never")
            raise Boom
        with agent.decide_and_act(correlation_id="task-1") as act:
            act.send("payments", b"paid")
        history = agent.history("task-1")
        assert [a.ref for a in agent.history("task-2")] == [other]
        assert agent.history("task-1", topics=["payments"]) == []  # effects are not actions
    assert [(a.ref.topic, a.action["type"]) for a in history] == [
        (ACTIONS, "tool_call"),
        (ACTIONS, "decision"),
        ("agent.reviews", "denial"),
    ]
    assert [a.ref for a in history] == [call, act.decision, denied]


def test_over_the_wire_without_confluent_kafka_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import engine.memory.wire

    monkeypatch.setattr(engine.memory.wire, "confluent_kafka", None)
    with pytest.raises(ImportError, match=r"tidelog\[kafka\]"):
        AgentMemory("127.0.0.1:1", AGENT)


def test_a_transaction_left_open_is_aborted_when_its_timeout_passes(tmp_path: Path) -> None:
    clock = ManualClock()
    config = engine.EngineConfig(store=FAST_STORE, cleaner_interval_s=3600.0)
    with engine.open(tmp_path / "timed", None, config, clock=clock) as opened:
        governed(opened, "payments")
        writer = AgentMemory(opened, AGENT, transactional_id="slow", transaction_timeout_ms=5000)
        abandoned = writer.decide_and_act(correlation_id="late")
        act = abandoned.__enter__()  # the writer hangs here, its transaction open
        act.send("payments", b"never")
        tp = act.effects[0]
        assert opened.list_offset("payments", tp.partition, -1, "read_committed").offset == 0
        clock.advance(5 + 11)  # past the timeout and the coordinator's next check
        for _ in range(500):  # bounded: the abort is written by the coordinator's timer thread
            if opened.list_offset("payments", tp.partition, -1, "read_committed").offset > 0:
                break
            time.sleep(0.01)
        assert committed(opened, ACTIONS, "payments", wait=0) == []
        assert all(
            opened.list_offset(t.topic, t.partition, -1, "read_committed").offset
            == opened.offsets(t.topic, t.partition)[1]
            for t in opened.topic_partitions([ACTIONS, "payments"])
        )
        with pytest.raises(engine.errors.EngineError):  # the coordinator fenced it
            abandoned.__exit__(None, None, None)
        writer.close()


STAMPED = {**HELD_TO_THE_SCHEMA, "tidelog.provenance": "stamp"}
"""A topic held to the schema whose records the broker stamps (docs/governance.md)."""


def test_on_a_stamp_topic_history_finds_the_actions_and_decisions_keep_their_context(
    memory_engine: engine.Engine,
) -> None:
    memory_engine.create_topic("agent.stamped", 1, STAMPED)
    with AgentMemory(
        memory_engine,
        AGENT,
        topics="agent.stamped",
        principal="User:agent",
        transactional_id="stamped",
    ) as agent:
        call = agent.tool_call("refund", correlation_id="refund-7")
        decided = agent.decision(causation=call, context=CONTEXT)
        with agent.decide_and_act(correlation_id="refund-7", context=CONTEXT) as act:
            act.send("payments", b"paid")
        history = agent.history("refund-7")
        # A client's copy of a stamp header is still the broker's to write.
        forged = [
            (CORRELATION_HEADER, b"refund-7"),
            (PRINCIPAL, b"User:admin"),
            (LISTENER, b"INTERNAL"),
        ]
        with memory_engine.producer(principal="User:mallory") as producer:
            producer.send("agent.stamped", json.dumps(history[0].action).encode(), headers=forged)
            producer.flush(10)
        copied = agent.history("refund-7")[-1]
    assert [a.ref for a in history] == [call, decided, act.decision]
    for action in history:
        assert headers_of(action)[CORRELATION_HEADER] == b"refund-7"
        assert headers_of(action)[PRINCIPAL] == b"User:agent"
    assert headers_of(history[1])[CAUSATION_HEADER] == history[0].action_id.encode()
    for decision in history[1:]:
        assert headers_of(decision)[CONTEXT_HEADER] == CONTEXT.to_text().encode()
    assert copied.headers[0] == (CORRELATION_HEADER, b"refund-7")
    stamp = [h for h in copied.headers if h[0] in RESERVED_NAMES]
    assert stamp[:2] == [(PRINCIPAL, b"User:mallory"), (LISTENER, b"embedded")]
    assert [name for name, _ in stamp[2:]] == [RECEIVED_MS]


def test_a_compensation_given_an_action_id_checks_it_among_its_correlations_actions(
    memory_engine: engine.Engine,
) -> None:
    # An action id as text is linked only to an action of the correlation
    # that is there and readable by the writer: a made-up id, or one of
    # another task, would file an undo of nothing in the audit trail.
    with AgentMemory(memory_engine, AGENT) as agent:
        call = agent.tool_call("email", correlation_id="c-1")
        elsewhere = agent.tool_call("email", correlation_id="c-2")
        action_id = agent.read(call).action_id
        with pytest.raises(RecordNotFound):
            agent.compensation(str(uuid.uuid4()), reason="undo", correlation_id="c-1")
        with pytest.raises(RecordNotFound):
            agent.compensation(action_id, reason="undo", correlation_id="c-2")
        with pytest.raises(InvalidAction) as refused:
            agent.compensation(action_id, reason="undo")  # whose actions to look among?
        assert refused.value.path == "$.correlation_id"
        assert memory_engine.offsets(ACTIONS, 0) == (0, 2)
        undone = agent.read(agent.compensation(action_id, reason="undo", correlation_id="c-1"))
    assert undone.action["causation_id"] == action_id
    assert undone.correlation_id == "c-1"
    assert elsewhere.offset == 1


def test_an_actor_naming_another_principal_than_the_memory_writes_as_is_refused(
    memory_engine: engine.Engine,
) -> None:
    # Its records would say one principal acted while the engine's ACLs and
    # provenance stamp saw another write them.
    with pytest.raises(InvalidAction) as refused:
        AgentMemory(memory_engine, Actor("agent", "a", "User:admin"), principal="User:mallory")
    assert refused.value.path == "$.actor.principal"
    with AgentMemory(memory_engine, Actor("agent", "a", "User:x"), principal="User:x") as same:
        assert same.read(same.tool_call("t", correlation_id="c")).action["actor"] == {
            "kind": "agent",
            "id": "a",
            "principal": "User:x",
        }


def test_a_history_for_a_principal_that_may_not_read_says_only_that(tmp_path: Path) -> None:
    # As Kafka answers TOPIC_AUTHORIZATION_FAILED whether the topic exists
    # or not: the scan checks the principal before it looks for the topics.
    config = engine.EngineConfig(
        store=FAST_STORE,
        cleaner_interval_s=3600.0,
        authorization=AuthorizationConfig(super_users=("User:admin",)),
    )
    with governed(engine.open(tmp_path / "node", None, config)) as opened:
        opened.catalog.add_acls([allowed("User:nobody", AclOperation.WRITE)])  # writes, no reads
        with AgentMemory(opened, AGENT, principal="User:nobody") as nobody:
            for topics in ([ACTIONS], ["absent"]):
                with pytest.raises(TopicAuthorizationFailed):
                    nobody.history("c-1", topics=topics)
