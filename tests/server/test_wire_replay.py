"""``tidelog snapshot`` and ``tidelog consume`` against ``tidelog serve`` over
a real socket: a snapshot is the vector of what the broker holds (now, or
at a time), consume prints exactly the records below a vector and exits,
records the broker no longer holds are an error, and without
confluent-kafka the commands say what to install."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer, TopicCollection
from confluent_kafka import TopicPartition as KafkaTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from engine.cli.main import main
from engine.memory.vector import OffsetVector, Position
from engine.topic_id import from_java_bits
from engine.types import TopicPartition
from tests.server.conftest import ServerProcess, quiet_librdkafka

TIMEOUT = 60.0
T0 = 1_700_000_000_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    served = ServerProcess(tmp_path_factory.mktemp("wire-replay") / "data").start()
    yield served
    served.end_at_teardown(graceful=True)


def _tidelog(*args: str) -> subprocess.CompletedProcess[str]:
    """The command run as ``tidelog ARGS`` runs it (in this process: a child
    would spend its time importing the engine again)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(args))
    return subprocess.CompletedProcess(args, status, out.getvalue(), err.getvalue())


def _create(server: ServerProcess, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(TIMEOUT)


def _produce(server: ServerProcess, topic: str, values: list[tuple[int, bytes, int]]) -> None:
    producer = Producer({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
    for partition, value, timestamp in values:
        producer.produce(topic, value, partition=partition, timestamp=timestamp)
    assert producer.flush(TIMEOUT) == 0


def _snapshot(server: ServerProcess, topic: str, *extra: str) -> OffsetVector:
    done = _tidelog("snapshot", topic, "--bootstrap-server", server.bootstrap, *extra)
    assert done.returncode == 0, done.stderr
    return OffsetVector.from_text(done.stdout)


def test_consume_prints_exactly_the_records_below_the_vector(
    server: ServerProcess, tmp_path: Path
) -> None:
    _create(server, "orders", 2)
    _produce(server, "orders", [(0, b"a", T0), (0, b"b", T0 + 1), (1, b"x", T0 + 2)])
    vector = _snapshot(server, "orders")
    assert {tp: p.offset for tp, p in vector.items()} == {
        TopicPartition("orders", 0): 2,
        TopicPartition("orders", 1): 1,
    }
    assert all(p.leader_epoch >= 0 for p in vector.values())
    _produce(server, "orders", [(0, b"later", T0 + 3), (1, b"later", T0 + 4)])
    file = tmp_path / "vector.json"
    file.write_text(vector.to_text())
    done = _tidelog(
        "consume", "orders", "--bootstrap-server", server.bootstrap, "--until-vector", f"@{file}"
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    got = sorted((r["partition"], r["offset"], r["value"]) for r in lines)
    assert got == [(0, 0, "a"), (0, 1, "b"), (1, 0, "x")]

    since = OffsetVector({TopicPartition("orders", 0): Position(1)}).to_text()
    done = _tidelog(
        "consume",
        "orders",
        "--bootstrap-server",
        server.bootstrap,
        "--until-vector",
        vector.to_text(),
        "--from-vector",
        since,
        "--format",
        "text",
    )
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == ["b", "x"]


def test_a_snapshot_at_a_time_cuts_before_the_first_record_after_it(server: ServerProcess) -> None:
    _create(server, "timed", 1)
    _produce(server, "timed", [(0, b"a", T0), (0, b"b", T0 + 10), (0, b"c", T0 + 20)])
    assert _snapshot(server, "timed", "--at", str(T0 + 10))[TopicPartition("timed", 0)] == Position(
        2, -1
    )
    assert _snapshot(server, "timed", "--at", "2023-11-14T22:13:20.005")[
        TopicPartition("timed", 0)
    ] == Position(1, -1)  # T0 is 2023-11-14T22:13:20Z
    latest = _snapshot(server, "timed")[TopicPartition("timed", 0)]
    assert _snapshot(server, "timed", "--at", str(T0 + 99))[TopicPartition("timed", 0)] == latest


def test_records_the_broker_removed_are_an_error_not_a_later_start(server: ServerProcess) -> None:
    _create(server, "trimmed", 1)
    _produce(server, "trimmed", [(0, b"a", T0), (0, b"b", T0), (0, b"c", T0)])
    vector = _snapshot(server, "trimmed")
    admin = AdminClient({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
    for future in admin.delete_records([KafkaTopicPartition("trimmed", 0, 2)]).values():
        future.result(TIMEOUT)
    done = _tidelog(
        "consume",
        "trimmed",
        "--bootstrap-server",
        server.bootstrap,
        "--until-vector",
        vector.to_text(),
    )
    assert done.returncode == 2
    assert "trimmed-0: records from 0 were removed (log start 2)" in done.stderr
    assert done.stdout == ""


def test_unknown_topics_and_bad_vectors_are_refused(server: ServerProcess) -> None:
    done = _tidelog("snapshot", "nope", "--bootstrap-server", server.bootstrap)
    assert done.returncode == 1
    assert "'nope' does not exist" in done.stderr
    done = _tidelog(
        "consume", "nope", "--bootstrap-server", server.bootstrap, "--until-vector", "{not json"
    )
    assert done.returncode == 2
    assert "--until-vector" in done.stderr


def test_without_confluent_kafka_the_commands_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # import fails, as if missing
    monkeypatch.setitem(sys.modules, "confluent_kafka.admin", None)
    for command in (
        ["snapshot", "t", "--bootstrap-server", "127.0.0.1:1"],
        ["consume", "t", "--bootstrap-server", "127.0.0.1:1", "--until-vector", "{}"],
    ):
        done = _tidelog(*command)
        assert done.returncode == 2
        assert "pip install 'tidelog[kafka]'" in done.stderr


def test_consume_ends_at_a_vector_after_markers_and_aborted_records(
    server: ServerProcess,
) -> None:
    _create(server, "txns", 1)
    producer = Producer(
        {"bootstrap.servers": server.bootstrap, "transactional.id": "wire", **quiet_librdkafka()}
    )
    producer.init_transactions(TIMEOUT)
    for value, commit in ((b"kept", True), (b"dropped", False)):
        producer.begin_transaction()
        producer.produce("txns", value, partition=0)
        assert producer.flush(TIMEOUT) == 0  # written, so an abort leaves it aborted
        if commit:
            producer.commit_transaction(TIMEOUT)
        else:
            producer.abort_transaction(TIMEOUT)
    # The markers are written after EndTxn answers (as in Kafka): wait for them.
    deadline = time.monotonic() + TIMEOUT
    vector = _snapshot(server, "txns")
    while vector[TopicPartition("txns", 0)].offset < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
        vector = _snapshot(server, "txns")
    assert vector[TopicPartition("txns", 0)].offset == 4  # two records, two markers
    done = _tidelog(
        "consume",
        "txns",
        "--bootstrap-server",
        server.bootstrap,
        "--until-vector",
        vector.to_text(),
        "--format",
        "text",
        "--timeout",
        "20",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["kept"]


def test_consume_refuses_a_vector_cut_in_a_deleted_topic(server: ServerProcess) -> None:
    """A vector naming a topic's id (cut embedded) names places in that
    topic: once it is deleted and created again, the broker's records at
    those offsets are another topic's, and consume exits 2 rather than print
    them as the records below the vector."""
    admin = AdminClient({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
    _create(server, "recreated", 1)
    _produce(server, "recreated", [(0, b"old", T0)])
    described = admin.describe_topics(TopicCollection(["recreated"]))["recreated"].result(TIMEOUT)
    uuid = described.topic_id
    topic_id = (
        (uuid.get_most_significant_bits() & (2**64 - 1)) << 64
        | (uuid.get_least_significant_bits() & (2**64 - 1))
    ).to_bytes(16, "big")
    vector = OffsetVector({TopicPartition("recreated", 0): Position(1, -1, topic_id)})
    args = ("consume", "recreated", "--bootstrap-server", server.bootstrap, "--format", "text")
    done = _tidelog(*args, "--until-vector", vector.to_text())
    assert (done.returncode, done.stdout) == (0, "old\n"), done.stderr
    admin.delete_topics(["recreated"])["recreated"].result(TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while True:  # the deletion is done once a creation of the name is taken
        try:
            _create(server, "recreated", 1)
            break
        except Exception:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    _produce(server, "recreated", [(0, b"new", T0)])
    done = _tidelog(*args, "--until-vector", vector.to_text())
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "new" not in done.stdout
    assert "recreated" in done.stderr


def test_consume_refuses_bounds_naming_two_ids_of_a_topic(server: ServerProcess) -> None:
    """--until-vector cut in a topic since deleted, --from-vector in the
    topic of that name now: the bound's places are in the deleted topic, so
    consume exits 2 whichever vector names the current id."""
    admin = AdminClient({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})

    def topic_id() -> bytes:
        described = admin.describe_topics(TopicCollection(["twice"]))["twice"].result(TIMEOUT)
        uuid = described.topic_id
        return from_java_bits(uuid.get_most_significant_bits(), uuid.get_least_significant_bits())

    _create(server, "twice", 1)
    _produce(server, "twice", [(0, b"old", T0)])
    old = topic_id()
    admin.delete_topics(["twice"])["twice"].result(TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while True:  # the deletion is done once a creation of the name is taken
        try:
            _create(server, "twice", 1)
            break
        except Exception:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    _produce(server, "twice", [(0, b"new-%d" % i, T0) for i in range(2)])
    tp = TopicPartition("twice", 0)
    until = OffsetVector({tp: Position(2, -1, old)})
    since = OffsetVector({tp: Position(0, -1, topic_id())})
    args = ("consume", "twice", "--bootstrap-server", server.bootstrap, "--format", "text")
    done = _tidelog(*args, "--until-vector", until.to_text(), "--from-vector", since.to_text())
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "new" not in done.stdout
    assert "twice" in done.stderr
