"""Saving the mirror's progress has a deadline: a target that accepts
connections and then answers nothing (a broker hung mid-restart, a
half-open connection) makes the save fail with ClusterUnavailable — the
mirror then starts a new session — instead of waiting for ever, as a
consumer's synchronous commit would."""

from __future__ import annotations

from engine.mirror.errors import ClusterUnavailable
from engine.mirror.kafka import confluent
from engine.mirror.progress import PartitionProgress, ProgressStore
from engine.types import TopicPartition
from tests.mirror.conftest import outcome_within

DEADLINE_S = 1.0
GUARD_S = 30.0
"""How long the test waits for the save at most (the old commit never returned)."""


def test_saving_progress_to_a_silent_target_fails_within_its_deadline(silent_target: str) -> None:
    # The deadline is the target's delivery timeout when shorter than 30 s.
    properties = {"log_level": "0", "message.timeout.ms": str(int(DEADLINE_S * 1000))}
    store = ProgressStore(confluent(), silent_target, properties)
    error = outcome_within(
        lambda: store.save({TopicPartition("t", 0): PartitionProgress(5, 4, 12)}), GUARD_S
    )
    assert isinstance(error, ClusterUnavailable)
    assert "saving the mirror's progress" in str(error)
    # Closing does not wait for the unanswered commit either (librdkafka's
    # close would, up to the session timeout or as long as a hung broker).
    assert outcome_within(store.close, GUARD_S) is None
