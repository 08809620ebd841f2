"""A mirror whose principal reads a topic masked would copy masks, not the
data: it refuses the topic unless masked copies are meant (--masked-copies),
and ``--verify`` fails on such a topic unless told so, saying which topics
it compared masked. A principal that may unmask copies the clear values."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

import engine
from engine.cli.main import main
from engine.masking.rules import MASKING_RULES
from engine.mirror.errors import MaskedSource
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
