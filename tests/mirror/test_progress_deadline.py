"""Saving the mirror's progress has a deadline: a target that accepts
connections and then answers nothing (a broker hung mid-restart, a
half-open connection) makes the save fail with ClusterUnavailable — the
mirror then starts a new session — instead of waiting for ever, as a
consumer's synchronous commit would."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from engine.mirror import progress
from engine.mirror.errors import ClusterUnavailable
from engine.mirror.kafka import confluent
from engine.mirror.progress import PartitionProgress, ProgressStore
from engine.types import TopicPartition

DEADLINE_S = 1.0
GUARD_S = 30.0
"""How long the test waits for the save at most (the old commit never returned)."""


@pytest.fixture
def silent_target() -> Iterator[str]:
    """A loopback listener that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for connection in accepted:
        connection.close()
    listener.close()


def test_saving_progress_to_a_silent_target_fails_within_its_deadline(
    silent_target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "REQUEST_TIMEOUT_S", DEADLINE_S)
    kafka = confluent()
    store = ProgressStore(kafka, silent_target, {"log_level": "0"})
    outcome: list[BaseException | None] = []

    def save() -> None:
        try:
            store.save({TopicPartition("t", 0): PartitionProgress(5, 4, 12)})
        except BaseException as error:  # the outcome under test, whatever it is
            outcome.append(error)
        else:
            outcome.append(None)

    saving = threading.Thread(target=save, daemon=True)
    saving.start()
    saving.join(GUARD_S)
    assert not saving.is_alive(), "the save still waits for a target that never answers"
    [error] = outcome
    assert isinstance(error, ClusterUnavailable)
    assert "saving the mirror's progress" in str(error)
