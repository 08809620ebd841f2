"""Fixtures for the agent-memory tests: the engine fixtures
(tests/engine/conftest.py), and an engine whose ``agent.actions`` topic is
held to the shipped agent-action schema by the broker (``raw`` validation
against ``agent-actions-value``), as docs/governance.md sets it up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import engine
from engine.cli.schemas import AGENT_ACTIONS_SUBJECT, agent_action_schema
from engine.memory import AgentMemory, RecordRef
from engine.memory.transport import RecordNotFound
from engine.schemas.types import JSON
from tests.engine.conftest import FAST_STORE, engine_factory, s3_endpoint, s3_url  # noqa: F401

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


def refuses_a_pending_record(opened: engine.Engine, agent: AgentMemory) -> None:
    """A record of a transaction still open (on ``payments``) is not given to
    a read_committed reader yet: ``agent`` refuses it at once, naming the
    last stable offset before it."""
    with opened.producer(transactional_id="open") as producer:
        producer.init_transactions()
        producer.begin_transaction()
        producer.send("payments", b"pending", partition=0).result(10)
        with pytest.raises(RecordNotFound) as refused:
            agent.read(RecordRef("payments", 0, 0))
        assert refused.value.last_stable_offset == 0
        producer.abort_transaction()


@pytest.fixture
def memory_engine(tmp_path: Path) -> Iterator[engine.Engine]:
    config = engine.EngineConfig(store=FAST_STORE, cleaner_interval_s=3600.0)
    opened = engine.open(tmp_path / "node", None, config)
    try:
        yield governed(opened, "payments", "emails")
    finally:
        opened.close()
