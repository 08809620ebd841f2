"""A mirror whose principal reads a topic masked would copy masks, not the
data: it refuses the topic unless masked copies are meant (--masked-copies),
and ``--verify`` fails on such a topic unless told so, saying which topics
it compared masked. A principal that may unmask copies the clear values."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

import engine
from engine.cli.main import main
from engine.masking.rules import MASKING_RULES
from engine.mirror.errors import ClusterUnavailable, MaskedSource
from engine.mirror.kafka import confluent
from engine.mirror.masked import masked_topics
from engine.mirror.runner import MirrorRunner
from engine.mirror.settings import MirrorSettings
from tests.engine.helpers_records import batch
from tests.server.conftest import quiet_librdkafka
from tests.server.in_process import InProcessServer
from tests.server.test_acls import ACL_CONFIG, ADMIN

CLEAR = json.dumps({"email": "ada@example.com", "order": 7}).encode()
RULES = '[{"path": "/email", "action": "redact"}]'


class Sides:
    def __init__(self, root: Path) -> None:
        self.source_engine = engine.open(root / "source")
        self.target_engine = engine.open(root / "target")
        self.source_engine.create_topic("chats", 1, {MASKING_RULES: RULES})
        self.source_engine.produce("chats", 0, batch([CLEAR]))
        self.source = InProcessServer(self.source_engine)
        """No authorizer: everyone reads the topic masked (fail closed)."""
        self.auditor_source = InProcessServer(
            self.source_engine, config=ACL_CONFIG, principal=ADMIN
        )
        """A super user: reads it in clear."""
        self.target = InProcessServer(self.target_engine)

    def close(self) -> None:
        for server in (self.source, self.auditor_source, self.target):
            server.stop()
        self.source_engine.close()
        self.target_engine.close()

    def copied_value(self) -> bytes:
        consumer = Consumer(
            {
                "bootstrap.servers": self.target.bootstrap,
                "group.id": "check",
                "enable.auto.commit": False,
                **quiet_librdkafka(),
            }
        )
        try:
            consumer.assign([TopicPartition("chats", 0, 0)])
            for _ in range(120):
                message = consumer.poll(0.25)
                if message is not None and message.error() is None:
                    value: bytes = message.value()
                    return value
        finally:
            consumer.close()
        raise AssertionError("nothing copied")


@pytest.fixture
def sides(tmp_path: Path) -> Iterator[Sides]:
    built = Sides(tmp_path)
    yield built
    built.close()


def _verify(sides: Sides, *flags: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    sides_flags = ["--from", sides.source.bootstrap, "--to", sides.target.bootstrap]
    status = main(["mirror", "--verify", *sides_flags, "--topics", "chats", *flags])
    return status, capsys.readouterr().out


def test_a_masked_topic_is_refused_unless_masked_copies_are_meant(sides: Sides) -> None:
    settings = MirrorSettings(sides.source.bootstrap, sides.target.bootstrap, topics="chats")
    with pytest.raises(MaskedSource) as refused:
        MirrorRunner(settings, once=True).run()
    assert refused.value.topics == ["chats"]
    assert not sides.target_engine.has_topic("chats")

    meant = MirrorSettings(
        sides.source.bootstrap, sides.target.bootstrap, topics="chats", masked_copies=True
    )
    assert MirrorRunner(meant, once=True).run().copied == 1
    assert json.loads(sides.copied_value())["email"] == "***"


def test_verify_of_masked_copies_fails_unless_they_are_meant(
    sides: Sides, capsys: pytest.CaptureFixture[str]
) -> None:
    meant = MirrorSettings(
        sides.source.bootstrap, sides.target.bootstrap, topics="chats", masked_copies=True
    )
    MirrorRunner(meant, once=True).run()
    status, out = _verify(sides, capsys=capsys)
    assert status == 1
    assert "chats: MASKED: the source masks it" in out
    status, out = _verify(sides, "--masked-copies", capsys=capsys)
    assert status == 0
    assert "chats: MASKED COPIES" in out


def test_a_principal_that_may_unmask_copies_the_clear_values(sides: Sides) -> None:
    auditor = sides.auditor_source.bootstrap
    settings = MirrorSettings(auditor, sides.target.bootstrap, topics="chats")
    assert MirrorRunner(settings, once=True).run().copied == 1
    assert sides.copied_value() == CLEAR


def test_a_topic_masked_while_the_mirror_copies_it_stops_the_mirror(sides: Sides) -> None:
    sides.source_engine.create_topic("plain", 1)
    sides.source_engine.produce("plain", 0, batch([CLEAR]))
    settings = MirrorSettings(
        sides.source.bootstrap, sides.target.bootstrap, topics="plain", topic_refresh_s=0.2
    )
    runner = MirrorRunner(settings)
    raised: list[BaseException] = []

    def run() -> None:
        try:
            runner.run()
        except BaseException as error:
            raised.append(error)

    mirror = threading.Thread(target=run, daemon=True)
    mirror.start()
    try:
        for _ in range(240):
            if runner.report.copied:
                break
            mirror.join(0.25)
        assert runner.report.copied == 1, "the clear topic was not copied"
        sides.source_engine.alter_configs("plain", {MASKING_RULES: RULES})
        mirror.join(60)
    finally:
        runner.stop.set()
        mirror.join(60)
    assert not mirror.is_alive()
    (error,) = raised
    assert isinstance(error, MaskedSource) and error.topics == ["plain"]


class _Unanswered:
    """A source's admin client whose DescribeConfigs fails as given."""

    def __init__(self, failure: BaseException) -> None:
        self.failure = failure

    def describe_configs(self, resources: list[Any], **_: Any) -> dict[Any, Future[Any]]:
        answers: dict[Any, Future[Any]] = {}
        for resource in resources:
            answers[resource] = Future()
            answers[resource].set_exception(self.failure)
        return answers


def test_a_source_that_does_not_answer_is_unavailable_not_masked() -> None:
    kafka = confluent()
    with pytest.raises(ClusterUnavailable):
        masked_topics(kafka, _Unanswered(TimeoutError()), ["chats"], 1.0)
    timed_out = KafkaException(KafkaError(KafkaError._TIMED_OUT))
    with pytest.raises(ClusterUnavailable):
        masked_topics(kafka, _Unanswered(timed_out), ["chats"], 1.0)
    refused = KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    assert masked_topics(kafka, _Unanswered(refused), ["chats"], 1.0) == ["chats"]
