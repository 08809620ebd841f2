"""A target that refuses the mirror's progress group for good (the mirror
is not authorized for it) stops the mirror with ProgressRefused, as a
record refused for good does, instead of starting sessions over forever."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from engine.mirror.errors import ProgressRefused
from engine.mirror.kafka import confluent
from engine.mirror.progress import PROGRESS_GROUP
from engine.mirror.runner import MirrorRunner
from engine.mirror.settings import MirrorSettings
from tests.mirror.sides import create
from tests.server.conftest import ServerProcess


class _RefusingConsumer:
    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer

    def committed(self, *args: Any, **kwargs: Any) -> Any:
        raise KafkaException(KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


class _RefusingProgress:
    """confluent_kafka, but the progress group's offsets are refused."""

    def __init__(self) -> None:
        self._kafka = confluent()

    def Consumer(self, config: dict[str, Any]) -> Any:  # noqa: N802 - confluent_kafka's name
        made = self._kafka.Consumer(config)
        return _RefusingConsumer(made) if config["group.id"] == PROGRESS_GROUP else made

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kafka, name)


def test_a_progress_group_refused_for_good_stops_the_mirror(
    source_server: ServerProcess,
    target_server: ServerProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, target = source_server.bootstrap, target_server.bootstrap
    create(source, "progress-refused", 1)
    monkeypatch.setattr("engine.mirror.runner.confluent", _RefusingProgress)
    runner = MirrorRunner(MirrorSettings(source, target, topics="progress-refused"), once=True)
    ended: list[BaseException | None] = []

    def run() -> None:
        try:
            runner.run()
            ended.append(None)
        except BaseException as error:  # what ended the run is the result
            ended.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    runner.stop.set()  # the old code starts sessions over for 300 s: end it
    thread.join(60)
    assert ended and isinstance(ended[0], ProgressRefused), ended
    assert runner.report.sessions == 1
