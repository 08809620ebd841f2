"""Fixtures for the agent-memory tests: the engine fixtures
(tests/engine/conftest.py), and an engine whose ``agent.actions`` topic is
held to the shipped agent-action schema by the broker (``raw`` validation
against ``agent-actions-value``), as docs/governance.md sets it up."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import engine
from engine.cli.schemas import AGENT_ACTIONS_SUBJECT, agent_action_schema
from engine.memory import Actor, AgentMemory, StoredAction
from engine.memory.transport import RecordNotFound
from engine.memory.vector import RecordRef
from engine.schemas.types import JSON
from s3stream.store.local import LocalStore
from tests.engine.conftest import (  # noqa: F401
    FAST_STORE,
    QUIET_STORE,
    engine_factory,
    s3_endpoint,
    s3_url,
)

ACTIONS = "agent.actions"
HELD_TO_THE_SCHEMA = {
    "tidelog.value.schema.validation": "raw",
    "tidelog.value.schema.subject": AGENT_ACTIONS_SUBJECT,
}


def governed(opened: engine.Engine, *effect_topics: str) -> engine.Engine:
    """Registers the agent-action schema and creates ``agent.actions`` held
    to it, and plain topics for effects."""
    opened.schemas.register(AGENT_ACTIONS_SUBJECT, agent_action_schema(), JSON)
    opened.create_topic(ACTIONS, 1, HELD_TO_THE_SCHEMA)
    for topic in effect_topics:
        opened.create_topic(topic, 2)
    return opened


def reads_records_behind_an_open_transaction(deciding: AgentMemory, agent: AgentMemory) -> None:
    """A record behind another writer's open transaction is there, and given
    to a read_committed reader once that transaction ends: ``agent`` reads
    it, and compensates it, then; so too the transaction's own decision,
    once committed. Refusing them at once would say no record is there."""
    with ThreadPoolExecutor(3) as reads:
        with deciding.decide_and_act(correlation_id="deciding") as act:
            sent = agent.tool_call("email", correlation_id="behind")  # durable, not in it
            behind = reads.submit(agent.read, sent)
            compensated = reads.submit(agent.compensation, sent, reason="unsent")
            decided = reads.submit(agent.read, act.decision)
            # Room for a refusal at once to show before the transaction ends
            # (nothing is timed: the reads must not have ended either way).
            reads_out: list[Future[Any]] = [behind, compensated, decided]
            wait(reads_out, timeout=1.0)
        assert behind.result(30).action["correlation_id"] == "behind"
        undone = agent.read(compensated.result(30))
        assert undone.action["causation_id"] == behind.result().action_id
        assert decided.result(30).action_id == act.decision_id


LONG_TIMEOUT_S = 3600.0
"""A read timeout no test outlasts: a read that waits it out never ends."""


def refuses_what_the_reader_passes_over(agent: AgentMemory) -> None:
    """An aborted decision, and the abort's marker after it, are refused as
    soon as the read_committed reader moves past their offsets, not once
    the read times out: nothing after them could be the record named.
    ``agent`` reads with LONG_TIMEOUT_S and a transactional id."""
    with pytest.raises(ZeroDivisionError), agent.decide_and_act(correlation_id="undone") as act:
        _ = 1 / 0
    aborted = act.decision
    marker = RecordRef(aborted.topic, aborted.partition, aborted.offset + 1, -1, aborted.topic_id)
    for ref in (aborted, marker):
        with pytest.raises(RecordNotFound, match="passed over"):
            read_bounded(agent, ref)


def read_bounded(agent: AgentMemory, ref: RecordRef) -> StoredAction:
    """``agent.read(ref)``, failing the test if it is still waiting after a
    minute (a bound on the test, not a timing): on a daemon thread, so that
    a read that waits on, for LONG_TIMEOUT_S, does not hold the process."""
    read: Future[StoredAction] = Future()
    threading.Thread(target=_read_into, args=(agent, ref, read), daemon=True).start()
    done, _ = wait([read], timeout=60)
    assert done, f"the read of {ref} waits on for a record never readable"
    return read.result()


def _read_into(agent: AgentMemory, ref: RecordRef, read: Future[StoredAction]) -> None:
    try:
        read.set_result(agent.read(ref))
    except BaseException as error:
        read.set_exception(error)


@pytest.fixture
def memory_engine(tmp_path: Path) -> Iterator[engine.Engine]:
    config = engine.EngineConfig(store=FAST_STORE, cleaner_interval_s=3600.0)
    opened = engine.open(tmp_path / "node", None, config)
    try:
        yield governed(opened, "payments", "emails")
    finally:
        opened.close()


class Takeover(NamedTuple):
    """A takeover that lost an acknowledged action: ``new_owner`` wrote
    ``taken`` at the offset ``lost`` had, in a leader epoch of its own."""

    new_owner: engine.Engine
    kept: RecordRef
    """Uploaded before the old owner's machine was lost."""
    lost: RecordRef
    """Acknowledged from the old owner's WAL alone (``local`` durability)."""
    taken: RecordRef


@contextmanager
def lost_in_a_takeover(root: Path, actor: Actor) -> Iterator[Takeover]:
    """The takeover the vector tests use (tests/memory/test_snapshot_replay.py):
    a new owner opens the bucket, which holds what the old one uploaded."""
    bucket = LocalStore(root / "bucket")
    quiet = engine.EngineConfig(store=QUIET_STORE, cleaner_interval_s=3600.0)
    lost_owner = engine.open(root / "lost", bucket, quiet)
    try:
        lost_owner.create_topic(ACTIONS, 1)
        with AgentMemory(lost_owner, actor) as old:
            kept = old.tool_call("search", correlation_id="kept")
            assert lost_owner.flush(timeout=30)
            lost = old.tool_call("refund", correlation_id="lost")
        with engine.open(root / "new", bucket, quiet) as new_owner:
            with AgentMemory(new_owner, actor) as new:
                taken = new.tool_call("refund", correlation_id="taken")
            assert (taken.offset, taken.topic_id) == (lost.offset, lost.topic_id)
            assert taken.leader_epoch > lost.leader_epoch
            yield Takeover(new_owner, kept, lost, taken)
    finally:
        lost_owner.close()  # fenced: what only its WAL held is not uploaded
