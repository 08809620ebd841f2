"""A topic deleted and created again under the same name starts at offset 0
in the same leader epoch, so (topic, partition, offset, epoch) names a
record of either incarnation: a record reference carries the topic's id,
and a reference to the deleted incarnation never resolves to the new one."""

from __future__ import annotations

import json
from typing import Any

import pytest

import engine
from engine.authorization import AclOperation, TopicAuthorizationFailed
from engine.errors import UnknownTopicId
from engine.memory import Actor, AgentMemory
from engine.memory.replay import Replay
from engine.memory.transport import EmbeddedTransport, StoredRecord
from engine.memory.vector import OffsetVector, RecordRef
from engine.types import TopicPartition
from tests.engine.helpers_records import batch
from tests.memory.conftest import ACTIONS, HELD_TO_THE_SCHEMA

AGENT = Actor("agent", "support-agent")
LEAD = Actor("human", "lead-sam")
ORDERS = TopicPartition("orders", 0)


def recreate(opened: engine.Engine, topic: str) -> None:
    opened.delete_topic(topic)
    opened.create_topic(topic, 1, HELD_TO_THE_SCHEMA)


def written_again(
    opened: engine.Engine, agent: AgentMemory, lead: AgentMemory
) -> tuple[RecordRef, str, RecordRef]:
    """A tool call by ``agent`` (its ref and action id), then, once the topic
    is created again, one by ``lead`` at the same place: ``agent`` still
    remembers the first one's ids."""
    old = agent.tool_call("refund", correlation_id="old-task")
    old_id = agent.read(old).action_id
    recreate(opened, ACTIONS)
    return old, old_id, lead.tool_call("refund", correlation_id="new-task")


def test_a_cause_at_a_remembered_position_of_a_recreated_topic_is_the_new_record(
    memory_engine: engine.Engine,
) -> None:
    with AgentMemory(memory_engine, AGENT) as agent, AgentMemory(memory_engine, LEAD) as lead:
        old, old_id, new = written_again(memory_engine, agent, lead)
        assert (new.topic, new.partition, new.offset, new.leader_epoch) == (
            old.topic,
            old.partition,
            old.offset,
            old.leader_epoch,
        )
        assert new != old and new.topic_id != old.topic_id
        new_action = lead.read(new).action

        approved = agent.approval(causation=new)

        action = agent.read(approved).action
        assert action["causation_id"] == new_action["action_id"] != old_id
        assert action["correlation_id"] == "new-task"


def test_a_reference_to_a_deleted_incarnation_reads_no_record_of_the_new_one(
    memory_engine: engine.Engine,
) -> None:
    with AgentMemory(memory_engine, AGENT) as agent, AgentMemory(memory_engine, LEAD) as lead:
        old, old_id, _ = written_again(memory_engine, agent, lead)
        with pytest.raises(UnknownTopicId) as refused:
            agent.read(old)
        assert refused.value.topic_id == old.topic_id
        # The ref still names the old action exactly: a cause given by it is
        # that action (remembered), though its record is gone.
        approved = agent.approval(causation=RecordRef.parse(str(old)))
        assert lead.read(approved).action["causation_id"] == old_id


def test_a_topic_recreated_while_a_record_is_written_or_read_raises(
    memory_engine: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: the topic is deleted and created again between the
    send and its acknowledgement, then inside a read: the record's topic is
    gone, so neither gives a ref (or a record) of the new topic."""
    with AgentMemory(memory_engine, AGENT) as agent:
        transport = agent._transport
        assert isinstance(transport, EmbeddedTransport)
        producer = transport._producer
        send = producer.send

        def send_then_recreate(*args: Any, **kwargs: Any) -> Any:
            sent = send(*args, **kwargs)
            sent.result(10)
            recreate(memory_engine, ACTIONS)
            return sent

        monkeypatch.setattr(producer, "send", send_then_recreate)
        sent_to = memory_engine.topic_id(ACTIONS)
        with pytest.raises(UnknownTopicId) as refused:
            agent.tool_call("refund", correlation_id="task")
        assert refused.value.topic_id == sent_to
        monkeypatch.undo()

        written = agent.tool_call("refund", correlation_id="task")
        read = transport._read

        def read_then_recreate(ref: RecordRef, timeout: float) -> StoredRecord:
            stored = read(ref, timeout)
            recreate(memory_engine, ACTIONS)
            return stored

        monkeypatch.setattr(transport, "_read", read_then_recreate)
        with pytest.raises(UnknownTopicId):
            agent.read(written)


def test_a_vector_cut_in_a_deleted_topic_is_refused_by_replay_state_and_fork(
    memory_engine: engine.Engine,
) -> None:
    """A vector's positions are places in the topic it was cut in: after
    the topic is created again, a replay, a state and a fork of the new
    topic at that vector (which would read other records at the same
    offsets) raise UnknownTopicId; the old text, without ids, names the
    topic by name and still reads the new one."""
    e = memory_engine
    e.create_topic("orders", 1)
    e.produce("orders", 0, batch([b"old"]))
    vector = e.snapshot(["orders"])
    e.delete_topic("orders")
    e.create_topic("orders", 1)
    e.produce("orders", 0, batch([b"new"]))
    assert e.snapshot(["orders"]).to_json()["orders"]["0"]["offset"] == vector[ORDERS].offset
    with pytest.raises(UnknownTopicId):
        e.replay(vector)
    with pytest.raises(UnknownTopicId):
        e.state_at("orders", vector=vector)
    with pytest.raises(UnknownTopicId):
        e.fork("orders", vector, name="orders.eval")
    old_text = json.dumps({"orders": {"0": {"offset": 1, "leader_epoch": -1}}})
    by_name = OffsetVector.from_text(old_text)
    assert [r.value for r in e.replay(by_name)] == [b"new"]
    assert e.state_at("orders", vector=by_name).values[b"k"].value == b"new"


@pytest.mark.parametrize("reader", ["replay", "consumer"])
def test_a_topic_recreated_while_a_replay_runs_ends_it_with_unknown_topic_id(
    memory_engine: engine.Engine, reader: str
) -> None:
    """A replay (and a consumer bounded by a vector) checked the vector's
    topic id when it opened; records it fetches after the topic is deleted
    and created again are the other topic's, at the same offsets, and are
    never handed out as records below the vector."""
    e = memory_engine
    e.create_topic("orders", 1)
    for i in range(6):
        e.produce("orders", 0, batch([b"old-%d" % i]))
    vector = e.snapshot(["orders"])
    one_batch = {"max_partition_fetch_bytes": 1, "fetch_max_bytes": 1}
    opened = (
        e.replay(vector, timeout=5, **one_batch)
        if reader == "replay"
        else e.consumer(until=vector, auto_offset_reset="earliest", **one_batch)
    )
    with opened as replay:

        def poll(max_records: int | None = None) -> list[bytes | None]:
            if isinstance(replay, Replay):
                return [r.value for r in replay.poll(max_records)]
            return [r.value for r in replay.poll(5, max_records)]

        assert poll(1) == [b"old-0"]
        e.delete_topic("orders")
        e.create_topic("orders", 1)
        for i in range(6):
            e.produce("orders", 0, batch([b"new-%d" % i]))
        handed: list[bytes | None] = []
        with pytest.raises(UnknownTopicId):
            while not replay.at_end():
                handed += poll()
        assert not any(value is not None and value.startswith(b"new") for value in handed)


def test_a_topic_recreated_with_fewer_partitions_mid_replay_is_unknown_topic_id(
    memory_engine: engine.Engine,
) -> None:
    e = memory_engine
    e.create_topic("orders", 2)
    for i in range(4):
        e.produce("orders", 1, batch([b"old-%d" % i]))
    vector = e.snapshot(["orders"])
    with e.replay(vector, timeout=5, max_partition_fetch_bytes=1, fetch_max_bytes=1) as replay:
        assert [r.value for r in replay.poll(1)] == [b"old-0"]
        e.delete_topic("orders")
        e.create_topic("orders", 1)
        with pytest.raises(UnknownTopicId):
            while not replay.at_end():
                replay.poll()


def deleted_and_created_with(opened: engine.Engine, topic: str, partitions: int) -> None:
    """``topic`` deleted, and created again with ``partitions`` (0: not)."""
    opened.delete_topic(topic)
    if partitions:
        opened.create_topic(topic, partitions)


SHAPES = pytest.mark.parametrize("partitions", [0, 1, 3], ids=["deleted", "fewer", "more"])


@SHAPES
def test_a_history_of_a_topic_deleted_after_its_partitions_are_listed_is_unknown_topic_id(
    memory_engine: engine.Engine, monkeypatch: pytest.MonkeyPatch, partitions: int
) -> None:
    """The scan listed the topic's two partitions, then the topic is gone
    (or another of the name, with fewer partitions or more) before it
    reads them: the topic it began on is gone, as a scan that ends with
    it gone says, never UnknownTopic or UnknownPartition for a listed
    partition the new topic lacks."""
    with AgentMemory(memory_engine, AGENT) as agent:
        with agent.decide_and_act(correlation_id="task") as act:
            act.send("payments", b"paid")
        scanned = memory_engine.topic_id("payments")
        listed = memory_engine.topic_partitions
        changed: list[bool] = []

        def listed_then_changed(topics: Any) -> Any:
            found = listed(topics)
            if not changed:
                changed.append(True)
                deleted_and_created_with(memory_engine, "payments", partitions)
            return found

        monkeypatch.setattr(memory_engine, "topic_partitions", listed_then_changed)
        with pytest.raises(UnknownTopicId) as refused:
            agent.history("task", topics=["payments"])
        assert changed
        assert refused.value.topic_id == scanned


def test_a_history_refused_to_a_principal_is_refused_also_when_the_topic_goes_meanwhile(
    memory_engine: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A principal that may not read the topic learns nothing of it, as
    Kafka answers TOPIC_AUTHORIZATION_FAILED whether the topic exists or
    not: not its id, nor that it was deleted while its read was refused."""
    with AgentMemory(memory_engine, AGENT) as agent, agent.decide_and_act(correlation_id="t") as a:
        a.send("payments", b"paid")
    deleted: list[bool] = []

    class RefusingReadsAsTheTopicGoes:
        def authorize(
            self, principal: str, operation: AclOperation, *args: Any, **kwargs: Any
        ) -> bool:
            if principal != "User:nobody" or operation != AclOperation.READ:
                return True
            if not deleted:
                deleted.append(True)
                memory_engine.delete_topic("payments")
            return False

    monkeypatch.setattr(memory_engine, "authorizer", RefusingReadsAsTheTopicGoes())
    with (
        AgentMemory(memory_engine, AGENT, principal="User:nobody") as nobody,
        pytest.raises(TopicAuthorizationFailed) as refused,
    ):
        nobody.history("t", topics=["payments"])
    assert deleted
    assert type(refused.value) is TopicAuthorizationFailed
