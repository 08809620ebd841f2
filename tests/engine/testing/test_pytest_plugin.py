"""The pytest plugin loads through the distribution's ``pytest11`` entry
point, as it does for anyone who installs tidelog, and its fixtures give a
test file a broker a real client reaches: a fresh one per test with
``kafka_broker``, one shared by every test with ``kafka_broker_session``;
docs/testing-broker.md's example passes as written.

The test files run in a child pytest (pytester) that sees the entry point
exactly as pyproject.toml declares it, installed as distribution metadata
in a directory on its path."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[3]


def documented_test() -> str:
    """docs/testing-broker.md's pytest example, as written."""
    text = (ROOT / "docs" / "testing-broker.md").read_text()
    found = re.search(r"## pytest\n.*?```python\n(.*?)```", text, re.S)
    assert found is not None
    return found.group(1)


def declared_entry_points() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    entry_points: dict[str, str] = project["entry-points"]["pytest11"]
    return entry_points


def install_entry_points(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Distribution metadata with pyproject's pytest11 entry points, on the child's path."""
    site = pytester.path / "site"
    metadata = site / "tidelog_entry_points-0.dist-info"
    metadata.mkdir(parents=True)
    (metadata / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tidelog-entry-points\nVersion: 0\n"
    )
    lines = [f"{name} = {target}" for name, target in declared_entry_points().items()]
    (metadata / "entry_points.txt").write_text("[pytest11]\n" + "\n".join(lines) + "\n")
    path = [str(site), str(ROOT), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in path if p))
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)


def test_pyproject_declares_the_plugin() -> None:
    assert declared_entry_points() == {"tidelog": "engine.testing.pytest_plugin"}


FRESH_PER_TEST = """
import os

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

SEEN = []

def round_trip(kafka_broker):
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    producer.send("topic", b"hello").get(30)
    producer.close(30)
    consumer = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, consumer_timeout_ms=30000)
    partition = TopicPartition("topic", 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    first = next(consumer)
    consumer.close()
    return first.value

def test_first(kafka_broker):
    SEEN.append((kafka_broker.port, kafka_broker.data_dir))
    assert round_trip(kafka_broker) == b"hello"

def test_second(kafka_broker):
    SEEN.append((kafka_broker.port, kafka_broker.data_dir))
    # a fresh broker: the first test's record is not here, its directory is gone
    assert kafka_broker.engine.list_topics() == []
    assert SEEN[0] != SEEN[1]
    assert not os.path.exists(SEEN[0][1])
"""

SHARED_BY_THE_SESSION = """
BROKERS = []

def test_first(kafka_broker_session):
    BROKERS.append(kafka_broker_session)
    kafka_broker_session.create_topic("made-by-the-first")

def test_second(kafka_broker_session):
    assert kafka_broker_session is BROKERS[0]
    assert "made-by-the-first" in kafka_broker_session.engine.list_topics()
"""


def test_the_entry_point_gives_a_fresh_broker_per_test_and_one_per_session(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One child pytest for all three files: each costs seconds of start-up."""
    install_entry_points(pytester, monkeypatch)
    pytester.makepyfile(
        test_documented=documented_test(),
        test_fresh_per_test=FRESH_PER_TEST,
        test_shared_by_the_session=SHARED_BY_THE_SESSION,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["*test_fresh_per_test.py::test_second PASSED*"])
    result.stdout.fnmatch_lines(["*test_shared_by_the_session.py::test_second PASSED*"])
