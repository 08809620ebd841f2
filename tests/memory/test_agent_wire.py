"""Typed agent records over the wire: AgentMemory on a bootstrap address,
through confluent-kafka, to the wire server on an engine whose
``agent.actions`` topic the broker holds to the shipped schema. Each action
is accepted and read back where its ref points, with the leader epoch the
broker gave; decide-and-act is all or nothing for a read_committed
confluent-kafka consumer, also when the writing process dies before
committing (its successor with the same transactional id fences it and
aborts its transaction)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import confluent_kafka
import jsonschema
import pytest

import engine
from engine.cli.schemas import agent_action_schema
from engine.clock import ManualClock
from engine.errors import UnknownTopicId
from engine.memory import Actor, AgentMemory, AsyncAgentMemory
from engine.memory.actions import CAUSATION_HEADER, CORRELATION_HEADER
from engine.memory.snapshot import VectorDiverged
from engine.memory.transport import RecordNotFound
from engine.memory.vector import CONTEXT_HEADER, OffsetVector, Position, RecordRef
from engine.memory.wire import WireTransport
from engine.protocol.apis import ApiKey
from engine.provenance import CLIENT_ADDRESS, PRINCIPAL, RESERVED_NAMES
from engine.types import TopicPartition
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
from tests.server.in_process import InProcessServer

SHIPPED = jsonschema.Draft202012Validator(json.loads(agent_action_schema()))
AGENT = Actor("agent", "support-agent")
CONTEXT = OffsetVector({TopicPartition("support.chat", 0): Position(7, 0)})
QUIET = {"log_level": 0}


class Served:
    def __init__(self, opened: engine.Engine, server: InProcessServer) -> None:
        self.engine = opened
        self.server = server
        self.bootstrap = server.bootstrap

    def list_offsets_answered(self) -> int:
        """ListOffsets requests the server has answered (its request metrics)."""
        requests = self.server.on_loop(lambda: dict(self.server.server.request_metrics.requests))
        return sum(count for (api, _, _), count in requests.items() if api == ApiKey.LIST_OFFSETS)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    config = engine.EngineConfig(store=FAST_STORE, cleaner_interval_s=3600.0)
    opened = governed(engine.open(tmp_path / "node", None, config), "payments")
    server = InProcessServer(opened)
    try:
        yield Served(opened, server)
    finally:
        server.stop()
        opened.close()


def committed(bootstrap: str, *topics: str) -> list[Any]:
    """Every message of ``topics`` a read_committed consumer sees, up to
    each partition's end (librdkafka's partition EOF: the last stable offset)."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            **QUIET,
        }
    )
    try:
        metadata = consumer.list_topics(timeout=10)
        waiting = {(topic, p) for topic in topics for p in metadata.topics[topic].partitions}
        consumer.assign([confluent_kafka.TopicPartition(t, p, 0) for t, p in waiting])
        messages: list[Any] = []
        for _ in range(200):  # bounded: each poll waits at most 0.1 s
            message = consumer.poll(0.1)
            if message is None:
                continue
            error = message.error()
            if error is None:
                messages.append(message)
            elif error.code() == confluent_kafka.KafkaError._PARTITION_EOF:
                waiting.discard((message.topic(), message.partition()))
                if not waiting:
                    return messages
        raise AssertionError(f"a read_committed consumer did not reach the end of {waiting}")
    finally:
        consumer.close()


def test_each_action_over_the_wire_is_accepted_and_read_back_at_its_ref(
    served: Served,
) -> None:
    with AgentMemory(served.bootstrap, AGENT, kafka_config=QUIET) as agent:
        call = agent.tool_call("refund", correlation_id="refund-7", input_ref="blob://in/1")
        denied = agent.denial(causation=call, reason="above the limit")
        approved = agent.approval(causation=denied, reason="ok by the lead")
        overridden = agent.override(causation=denied, reason="the lead's call")
        result = agent.tool_result("refund", causation=approved, output_ref="payments://R-88")
        decided = agent.decision(causation=result, context=CONTEXT)
        undone = agent.compensation(result, reason="refunded twice")
        refs = [call, denied, approved, overridden, result, decided, undone]
        stored = [agent.read(RecordRef.parse(str(ref))) for ref in refs]
        agent.tool_call("search", correlation_id="another-task")
        history = agent.history("refund-7")
    epoch = served.engine.partition(ACTIONS, 0).leader_epoch
    topic_id = served.engine.topic_id(ACTIONS)
    assert [(r.topic, r.partition, r.offset, r.leader_epoch, r.topic_id) for r in refs] == [
        (ACTIONS, 0, offset, epoch, topic_id) for offset in range(7)
    ]
    for action in stored:
        SHIPPED.validate(action.action)
        assert dict(action.headers)[CORRELATION_HEADER] == b"refund-7"
    assert stored[-1].action["causation_id"] == stored[4].action_id
    assert dict(stored[-1].headers)[CAUSATION_HEADER] == stored[4].action_id.encode()
    assert dict(stored[5].headers)[CONTEXT_HEADER] == CONTEXT.to_text().encode()
    assert history == stored
    keys = [m.key() for m in committed(served.bootstrap, ACTIONS)]
    assert keys == [b"refund-7"] * 7 + [b"another-task"]


def test_decide_and_act_over_the_wire_is_all_or_nothing(served: Served) -> None:
    with AgentMemory(
        served.bootstrap, AGENT, transactional_id="wire-agent", kafka_config=QUIET
    ) as agent:
        with pytest.raises(ZeroDivisionError), agent.decide_and_act(correlation_id="r-1") as act:
            act.send("payments", b"half-done")
            _ = 1 / 0
        with agent.decide_and_act(correlation_id="r-1", context=CONTEXT) as done:
            paid = done.send("payments", b"paid")
        decision = agent.read(done.decision)
    assert act.result is None and done.result is not None
    assert done.result.effects == (paid,)
    seen = committed(served.bootstrap, ACTIONS, "payments")
    assert [m.value() for m in seen if m.topic() == "payments"] == [b"paid"]
    assert [m.offset() for m in seen if m.topic() == ACTIONS] == [done.decision.offset]
    assert decision.action["context_offsets"] == CONTEXT.to_json()


CRASHING_WRITER = """
import os, sys
from engine.memory import Actor, AgentMemory
agent = AgentMemory(sys.argv[1], Actor("agent", "support-agent"),
                    transactional_id="wire-agent", kafka_config={"log_level": 0})
block = agent.decide_and_act(correlation_id="r-2")
act = block.__enter__()
act.send("payments", b"lost")
print(act.decision, flush=True)
os._exit(9)  # dies with its transaction open
"""


def test_a_writer_process_that_dies_before_commit_is_aborted_by_its_successor(
    served: Served,
) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, served.bootstrap],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert crashed.returncode == 9, crashed.stderr
    lost = RecordRef.parse(crashed.stdout.strip())
    assert served.engine.offsets(ACTIONS, 0)[1] == lost.offset + 1  # written, not committed
    assert committed(served.bootstrap, ACTIONS, "payments") == []
    with (
        AgentMemory(
            served.bootstrap, AGENT, transactional_id="wire-agent", kafka_config=QUIET
        ) as successor,
        successor.decide_and_act(correlation_id="r-2") as redo,
    ):
        redo.send("payments", b"redone")
    seen = committed(served.bootstrap, ACTIONS, "payments")
    assert [m.value() for m in seen if m.topic() == "payments"] == [b"redone"]
    assert [m.offset() for m in seen if m.topic() == ACTIONS] == [redo.decision.offset]


def test_the_async_twin_over_the_wire(served: Served) -> None:
    async def work() -> tuple[RecordRef, RecordRef]:
        async with AsyncAgentMemory(served.bootstrap, AGENT, kafka_config=QUIET) as agent:
            call = await agent.tool_call("search", correlation_id="q-1")
            return call, await agent.tool_result("search", causation=call)

    call, result = asyncio.run(work())
    assert (call.offset, result.offset) == (0, 1)
    with AgentMemory(served.engine, AGENT) as reader:
        assert reader.read(result).action["causation_id"] == reader.read(call).action_id


def test_over_the_wire_a_recreated_topics_record_is_not_the_old_ones(served: Served) -> None:
    with (
        AgentMemory(served.bootstrap, AGENT, kafka_config=QUIET) as agent,
        AgentMemory(served.bootstrap, Actor("human", "lead-sam"), kafka_config=QUIET) as lead,
    ):
        old = agent.tool_call("refund", correlation_id="old-task")
        old_id = agent.read(old).action_id
        served.engine.delete_topic(ACTIONS)
        served.engine.create_topic(ACTIONS, 1, HELD_TO_THE_SCHEMA)
        new = lead.tool_call("refund", correlation_id="new-task")
        assert (new.offset, new.topic_id) == (old.offset, served.engine.topic_id(ACTIONS))
        approved = agent.approval(causation=new)
        action = agent.read(approved).action
        with pytest.raises(UnknownTopicId):
            agent.read(old)
    assert action["causation_id"] == action_id_at(served, new) != old_id
    assert action["correlation_id"] == "new-task"


def test_over_the_wire_a_ref_outside_the_log_is_refused_at_once(
    served: Served,
) -> None:
    # ListOffsets says where the log is: outside it, a wait could only run
    # out the timeout (30 s by default).
    with AgentMemory(served.bootstrap, AGENT, kafka_config=QUIET) as agent:
        written = agent.tool_call("refund", correlation_id="task")
        past = RecordRef(ACTIONS, 0, written.offset + 1, -1, written.topic_id)
        for ref in (past, RecordRef(ACTIONS, 0, 1 << 62)):
            with pytest.raises(RecordNotFound) as refused:
                agent.compensation(ref, reason="nothing there")
            assert (refused.value.log_start_offset, refused.value.high_watermark) == (0, 1)


def test_over_the_wire_a_read_asks_where_the_log_is_only_when_it_finds_nothing(
    served: Served,
) -> None:
    """A read of a record that is there costs no ListOffsets round trip; a
    ref outside the log is refused from its fetch's out-of-range answer,
    which carries the log's bounds (below its start, far past its end), or
    asks one when its fetch comes back empty (at the end)."""
    with AgentMemory(served.bootstrap, AGENT, kafka_config=QUIET) as agent:
        written = [agent.tool_call("search", correlation_id=f"q-{n}") for n in range(3)]
        served.engine.delete_records(ACTIONS, 0, 1)
        asked = served.list_offsets_answered()
        for ref in written[1:]:
            assert agent.read(ref).correlation_id == f"q-{ref.offset}"
        assert served.list_offsets_answered() == asked
        for offset in (0, 3, 1 << 62):
            outside = RecordRef(ACTIONS, 0, offset, -1, written[0].topic_id)
            with pytest.raises(RecordNotFound) as refused:
                agent.read(outside)
            assert (refused.value.log_start_offset, refused.value.high_watermark) == (1, 3)
            # At the end, one look at the log start and the high watermark
            # (librdkafka asks each in a ListOffsets request of its own).
            looked = 2 if offset == 3 else 0
            assert served.list_offsets_answered() == asked + looked
            asked += looked


def test_over_the_wire_a_fetch_out_of_range_inside_the_log_is_sought_again_once(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fetch answers OFFSET_OUT_OF_RANGE though the log holds the ref's
    offset (a fetch racing the log's bounds, made to lose every time). The
    read takes the bounds from that answer, seeks again once, and is then
    refused, rather than seek again at each answer until its deadline."""
    with AgentMemory(served.bootstrap, AGENT, timeout=LONG_TIMEOUT_S, kafka_config=QUIET) as agent:
        sent = agent.tool_call("email", correlation_id="there")
        partition = served.engine.partition(ACTIONS, 0)
        fetch = partition.fetch_async
        answered: list[int] = []

        async def out_of_range(
            offset: int,
            max_bytes: int,
            read_committed: bool = False,
            last_stable: int | None = None,
        ) -> Any:
            if offset == sent.offset:
                answered.append(offset)
                raise partition._out_of_range(offset)
            return await fetch(offset, max_bytes, read_committed, last_stable)

        fetch_hot = partition.fetch_hot

        def out_of_range_at_once(
            offset: int, max_bytes: int, read_committed: bool, last_stable: int
        ) -> Any:
            if offset == sent.offset:
                answered.append(offset)
                raise partition._out_of_range(offset)
            return fetch_hot(offset, max_bytes, read_committed, last_stable)

        monkeypatch.setattr(partition, "fetch_async", out_of_range)
        # The server's Fetch reads the log cache at once, without fetch_async.
        monkeypatch.setattr(partition, "fetch_hot", out_of_range_at_once)
        with pytest.raises(RecordNotFound, match="out of range again"):
            read_bounded(agent, sent)
        assert len(answered) == 2
        monkeypatch.undo()
        assert agent.read(sent).correlation_id == "there"


def test_over_the_wire_a_ref_naming_an_action_a_takeover_lost_is_refused(
    tmp_path: Path,
) -> None:
    """The record read at its offset was written in a later leader epoch
    than the ref names: the one named was lost (docs/design/0046)."""
    with (
        lost_in_a_takeover(tmp_path, AGENT) as takeover,
        InProcessServer(takeover.new_owner) as server,
        AgentMemory(server.bootstrap, AGENT, kafka_config=QUIET) as agent,
    ):
        lost = takeover.lost
        for refuse in (
            lambda: agent.read(lost),
            lambda: agent.compensation(lost, reason="undo"),
        ):
            with pytest.raises(VectorDiverged) as refused:
                refuse()
            assert (refused.value.leader_epoch, refused.value.epoch_end) == (
                lost.leader_epoch,
                lost.offset,
            )
            assert (refused.value.log_start_offset, refused.value.high_watermark) == (0, 2)
        assert agent.read(takeover.kept).correlation_id == "kept"
        assert agent.read(takeover.taken).correlation_id == "taken"
        no_epoch = RecordRef(ACTIONS, 0, lost.offset, -1, lost.topic_id)
        assert agent.read(no_epoch).correlation_id == "taken"


def test_over_the_wire_a_ref_the_reader_passes_over_is_refused_without_waiting(
    served: Served,
) -> None:
    with AgentMemory(
        served.bootstrap,
        AGENT,
        transactional_id="undoing",
        timeout=LONG_TIMEOUT_S,
        kafka_config=QUIET,
    ) as agent:
        refuses_what_the_reader_passes_over(agent)


def test_over_the_wire_a_ref_deleted_while_its_read_waits_is_refused_saying_where_the_log_is(
    served: Served,
) -> None:
    """The read waits behind another writer's open transaction (its first
    miss asked where the log is: inside); DeleteRecords then moves the log
    start past the ref: the fetch's out-of-range asks again, and the read
    is refused with the log's bounds now."""
    with (
        AgentMemory(served.bootstrap, AGENT, kafka_config=QUIET) as deciding,
        AgentMemory(served.bootstrap, AGENT, timeout=LONG_TIMEOUT_S, kafka_config=QUIET) as agent,
        deciding.decide_and_act(correlation_id="deciding"),
    ):
        sent = agent.tool_call("email", correlation_id="behind")
        asked = served.list_offsets_answered()
        with ThreadPoolExecutor(1) as reads:
            read = reads.submit(read_bounded, agent, sent)
            until(lambda: served.list_offsets_answered() > asked)  # its first miss
            high_watermark = served.engine.offsets(ACTIONS, 0)[1]
            served.engine.delete_records(ACTIONS, 0, sent.offset + 1)
            with pytest.raises(RecordNotFound) as refused:
                read.result()
    assert (refused.value.log_start_offset, refused.value.high_watermark) == (
        sent.offset + 1,
        high_watermark,
    )


def test_over_the_wire_a_ref_a_takeover_lost_read_as_the_deadline_runs_out_is_still_diverged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record comes with no time left to ask where the log is: the
    fetch's own bounds make the VectorDiverged, not a RecordNotFound that
    would say the record is not there."""
    clock = ManualClock()
    polled = WireTransport._poll_at

    def read_as_the_deadline_runs_out(self: WireTransport, *args: Any, **kwargs: Any) -> Any:
        message = polled(self, *args, **kwargs)
        clock.advance(LONG_TIMEOUT_S)
        return message

    with (
        lost_in_a_takeover(tmp_path, AGENT) as takeover,
        InProcessServer(takeover.new_owner) as server,
        AgentMemory(server.bootstrap, AGENT, clock=clock, kafka_config=QUIET) as agent,
    ):
        monkeypatch.setattr(WireTransport, "_poll_at", read_as_the_deadline_runs_out)
        with pytest.raises(VectorDiverged) as refused:
            agent.read(takeover.lost)
    assert (refused.value.log_start_offset, refused.value.high_watermark) == (0, 2)


def test_over_the_wire_a_record_behind_an_open_transaction_is_read_once_it_ends(
    served: Served,
) -> None:
    with (
        AgentMemory(served.bootstrap, AGENT, kafka_config=QUIET) as deciding,
        AgentMemory(served.bootstrap, AGENT, kafka_config=QUIET) as agent,
    ):
        reads_records_behind_an_open_transaction(deciding, agent)


def until(condition: Callable[[], bool]) -> None:
    """Waits for ``condition``; a minute is a bound on the test, not a timing."""
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)


def action_id_at(served: Served, ref: RecordRef) -> str:
    with AgentMemory(served.engine, AGENT) as reader:
        return reader.read(ref).action_id


def test_the_epoch_reader_holds_no_partition_between_writes(served: Served) -> None:
    """A write reads its record's epoch with a consumer of its own; left
    assigned, that consumer's next fetch waits at the broker, and the next
    write's assignment is served only once it returns."""
    with AgentMemory(served.bootstrap, AGENT, kafka_config=QUIET) as agent:
        transport = agent._transport
        assert isinstance(transport, WireTransport)
        for n in range(3):
            ref = agent.tool_call("search", correlation_id=f"q-{n}")
            assert ref.offset == n
            assert transport._epochs.assignment() == []


class _DescribedAtTheirTimeouts:
    """An admin client whose DescribeTopics answers come back (from the
    broker) as late as a quarter of the time each was given, by the
    transport's clock: it notes, per call, the time it was given and what
    was left of the caller's timeout."""

    def __init__(self, real: Any, clock: ManualClock, deadline: float) -> None:
        self._real, self._clock, self._deadline = real, clock, deadline
        self.calls: list[tuple[float, float]] = []

    def describe_topics(self, topics: Any, request_timeout: float) -> dict[str, Any]:
        return {
            name: _LateAnswer(answer, self)
            for name, answer in self._real.describe_topics(topics, request_timeout=10).items()
        }


class _LateAnswer:
    def __init__(self, answer: Any, admin: _DescribedAtTheirTimeouts) -> None:
        self._answer, self._admin = answer, admin

    def result(self, timeout: float) -> Any:
        left = self._admin._deadline - self._admin._clock.monotonic()
        self._admin.calls.append((timeout, left))
        found = self._answer.result(10)
        self._admin._clock.advance(max(timeout, 0) / 4)
        return found


def test_a_scan_describes_its_topics_within_the_callers_timeout(served: Served) -> None:
    """Each topic's id is described before and after the scan; every one of
    those waits is given only what is left of the scan's timeout, not the
    whole of it again (three topics could otherwise wait three timeouts)."""
    topics = ["scan.a", "scan.b", "scan.c"]
    for topic in topics:
        served.engine.create_topic(topic, 1)
    clock = ManualClock()
    transport = WireTransport(served.bootstrap, clock=clock, config=QUIET)
    try:
        timeout = 30.0
        admin = _DescribedAtTheirTimeouts(transport._admin, clock, clock.monotonic() + timeout)
        transport._admin = admin
        assert transport.scan(topics, ("tidelog.test", b"x"), timeout) == []
    finally:
        transport.close(10)
    assert len(admin.calls) == 2 * len(topics)
    assert all(given <= left for given, left in admin.calls), admin.calls


def test_over_the_wire_on_a_stamp_topic_the_memorys_headers_stay_and_a_forged_stamp_goes(
    served: Served,
) -> None:
    served.engine.create_topic(
        "agent.stamped", 1, {**HELD_TO_THE_SCHEMA, "tidelog.provenance": "stamp"}
    )
    with AgentMemory(
        served.bootstrap,
        AGENT,
        topics="agent.stamped",
        transactional_id="stamped",
        kafka_config=QUIET,
    ) as agent:
        call = agent.tool_call("refund", correlation_id="refund-7")
        with agent.decide_and_act(causation=call, context=CONTEXT) as act:
            act.send("payments", b"paid")
        history = agent.history("refund-7")
        forger = confluent_kafka.Producer({"bootstrap.servers": served.bootstrap, **QUIET})
        forger.produce(
            "agent.stamped",
            json.dumps(history[0].action).encode(),
            partition=0,
            headers=[
                (CORRELATION_HEADER, b"refund-7"),
                (PRINCIPAL, b"User:admin"),
                (CLIENT_ADDRESS, b"10.0.0.1:1"),
            ],
        )
        assert forger.flush(30) == 0
        copied = agent.history("refund-7")[-1]
    assert [a.ref for a in history] == [call, act.decision]
    assert dict(history[1].headers)[CAUSATION_HEADER] == history[0].action_id.encode()
    assert dict(history[1].headers)[CONTEXT_HEADER] == CONTEXT.to_text().encode()
    assert copied.headers[0] == (CORRELATION_HEADER, b"refund-7")
    stamp = dict(h for h in copied.headers if h[0] in RESERVED_NAMES)
    assert len(stamp) == len([h for h in copied.headers if h[0] in RESERVED_NAMES])
    assert stamp[PRINCIPAL] == b"User:ANONYMOUS"
    assert stamp[CLIENT_ADDRESS].startswith(b"127.0.0.1:")


def test_over_the_wire_a_compensation_given_an_action_id_checks_it(served: Served) -> None:
    with AgentMemory(served.bootstrap, AGENT, kafka_config=QUIET) as agent:
        call = agent.tool_call("email", correlation_id="c-1")
        action_id = action_id_at(served, call)
        with pytest.raises(RecordNotFound):
            agent.compensation(action_id, reason="undo", correlation_id="c-2")
        undone = agent.compensation(action_id, reason="undo", correlation_id="c-1")
    assert undone.offset == 1
    with AgentMemory(served.engine, AGENT) as reader:
        assert reader.read(undone).action["causation_id"] == action_id


class _ListedThenChanged:
    """A librdkafka consumer whose first metadata answer is followed by
    ``change`` (the answer given is the one from before it)."""

    def __init__(self, consumer: Any, change: Callable[[], None]) -> None:
        self._consumer = consumer
        self._change = change

    def list_topics(self, *args: Any, **kwargs: Any) -> Any:
        listed = self._consumer.list_topics(*args, **kwargs)
        self._change()
        return listed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


@pytest.mark.parametrize("partitions", [0, 1], ids=["deleted", "fewer"])
def test_over_the_wire_a_history_of_a_topic_deleted_after_its_listing_is_unknown_topic_id(
    served: Served, monkeypatch: pytest.MonkeyPatch, partitions: int
) -> None:
    """As embedded: the scan listed the topic's two partitions (librdkafka's
    metadata), then the topic is gone, or another of the name with one
    partition: UnknownTopicId for the topic it began on, not the
    client's error for the partition it can no longer read."""
    with AgentMemory(served.bootstrap, AGENT, kafka_config=QUIET, timeout=10) as agent:
        with agent.decide_and_act(correlation_id="task") as act:
            act.send("payments", b"paid")
        scanned = served.engine.topic_id("payments")
        transport = agent._transport
        assert isinstance(transport, WireTransport)
        consumer = transport._consumer
        changed: list[bool] = []

        def change() -> None:
            if not changed:
                changed.append(True)
                served.engine.delete_topic("payments")
                if partitions:
                    served.engine.create_topic("payments", partitions)

        monkeypatch.setattr(
            transport, "_consumer", lambda *args: _ListedThenChanged(consumer(*args), change)
        )
        with pytest.raises(UnknownTopicId) as refused:
            agent.history("task", topics=["payments"])
        assert changed
        assert refused.value.topic_id == scanned
