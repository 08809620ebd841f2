"""``tidelog topic``, ``group``, ``produce``, ``cluster`` and open-ended
``consume`` (a start, the end or --follow, a group's offsets) against
``tidelog serve`` over a real socket: each command's JSON output is what the
broker holds (read back with confluent-kafka), changes it makes are there,
and a refused request exits 1. The commands run in this process (a child
would spend its time importing the engine again)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from engine.cli.main import _build_parser, main
from tests.server.conftest import ServerProcess, free_port, quiet_librdkafka, start_group_server

TIMEOUT = 60.0
T0 = 1_700_000_000_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    served = start_group_server(tmp_path_factory.mktemp("operator-cli"))
    yield served
    served.end_at_teardown(graceful=True)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _tidelog(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        if stdin is None:
            status = main(list(args))
        else:
            with _stdin(stdin):
                status = main(list(args))
    return subprocess.CompletedProcess(args, status, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _stdin(text: str) -> Iterator[None]:
    saved = sys.stdin
    sys.stdin = io.StringIO(text)
    try:
        yield
    finally:
        sys.stdin = saved


def _json(server: ServerProcess, *args: str, stdin: str | None = None) -> Any:
    done = _tidelog(*args, "--bootstrap-server", server.bootstrap, "--json", stdin=stdin)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _admin(server: ServerProcess) -> AdminClient:
    return AdminClient({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})


def _read_all(server: ServerProcess, topic: str, count: int) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": server.bootstrap,
            "group.id": _name("reader"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **quiet_librdkafka(),
        }
    )
    try:
        partitions = _admin(server).list_topics(topic, timeout=TIMEOUT).topics[topic].partitions
        consumer.assign([KafkaTopicPartition(topic, p, 0) for p in partitions])
        messages: list[Any] = []
        deadline = time.monotonic() + TIMEOUT
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                messages.append(message)
        return sorted(messages, key=lambda m: (m.partition(), m.offset()))
    finally:
        consumer.close()


def test_topic_create_list_describe_alter_delete(server: ServerProcess) -> None:
    topic = _name("orders")
    created = _json(server, "topic", "create", topic, "-p", "3", "-c", "retention.ms=86400000")
    assert created["created"] is True
    held = _admin(server).list_topics(topic, timeout=TIMEOUT).topics[topic]
    assert sorted(held.partitions) == [0, 1, 2]

    listed = _json(server, "topic", "list")
    assert {"topic": topic, "partitions": 3} in listed
    assert not any(row["topic"].startswith("__") for row in listed)

    producer = Producer({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
    for value in (b"a", b"b"):
        producer.produce(topic, value, partition=1)
    assert producer.flush(TIMEOUT) == 0
    described = _json(server, "topic", "describe", topic)
    by_partition = {p["partition"]: p for p in described["partitions"]}
    assert by_partition[1]["high_watermark"] == 2
    assert by_partition[0]["high_watermark"] == 0
    assert all(p["log_start_offset"] == 0 for p in described["partitions"])
    assert described["configs"]["retention.ms"]["value"] == "86400000"
    assert described["configs"]["retention.ms"]["default"] is False

    _json(
        server, "topic", "alter", topic, "-c", "cleanup.policy=compact", "--delete", "retention.ms"
    )
    resource = ConfigResource(ResourceType.TOPIC, topic)
    admin = _admin(server)
    configs = admin.describe_configs([resource])[resource].result(TIMEOUT)
    assert configs["cleanup.policy"].value == "compact"
    assert configs["retention.ms"].is_default

    _json(server, "topic", "delete", topic)
    assert topic not in _admin(server).list_topics(timeout=TIMEOUT).topics


def test_topic_commands_the_broker_refuses_exit_1(server: ServerProcess) -> None:
    missing = _name("missing")
    done = _tidelog("topic", "describe", missing, "--bootstrap-server", server.bootstrap)
    assert done.returncode == 1
    assert missing in done.stderr
    topic = _name("twice")
    _json(server, "topic", "create", topic)
    again = _tidelog("topic", "create", topic, "--bootstrap-server", server.bootstrap)
    assert again.returncode == 1
    assert "TOPIC_ALREADY_EXISTS" in again.stderr or "already exists" in again.stderr
    bad = _tidelog("topic", "create", topic, "-c", "nonsense", "--bootstrap-server", "x:1")
    assert bad.returncode == 2


def test_produce_sends_each_line_acks_all_with_keys_and_headers(server: ServerProcess) -> None:
    topic = _name("lines")
    _json(server, "topic", "create", topic, "-p", "2")
    done = _tidelog(
        "produce",
        topic,
        "--key",
        "k1",
        "--header",
        "src=cli",
        "--partition",
        "1",
        "--bootstrap-server",
        server.bootstrap,
        stdin="first\nsecond\n",
    )
    assert done.returncode == 0, done.stderr
    lines = [
        json.dumps({"key": "k2", "value": "third", "headers": {"h": "v"}}),
        json.dumps({"value": {"n": 1}}),
    ]
    done = _tidelog(
        "produce",
        topic,
        "--format",
        "json",
        "--partition",
        "0",
        "--bootstrap-server",
        server.bootstrap,
        stdin="\n".join(lines) + "\n",
    )
    assert done.returncode == 0, done.stderr
    got = [(m.partition(), m.key(), m.value(), m.headers()) for m in _read_all(server, topic, 4)]
    assert got == [
        (0, b"k2", b"third", [("h", b"v")]),
        (0, None, b'{"n":1}', None),
        (1, b"k1", b"first", [("src", b"cli")]),
        (1, b"k1", b"second", [("src", b"cli")]),
    ]


def test_produce_counts_what_was_acknowledged_in_the_singular_for_one(
    server: ServerProcess,
) -> None:
    topic = _name("count")
    _json(server, "topic", "create", topic)
    for stdin, said in (("only\n", "1 record acknowledged"), ("a\nb\n", "2 records acknowledged")):
        done = _tidelog("produce", topic, "--bootstrap-server", server.bootstrap, stdin=stdin)
        assert done.returncode == 0, done.stderr
        assert f"tidelog produce: {said}" in done.stderr


def test_produce_exits_1_when_a_delivery_fails_and_2_on_a_bad_line(
    server: ServerProcess,
) -> None:
    topic = _name("one")
    _json(server, "topic", "create", topic)
    failed = _tidelog(
        "produce",
        topic,
        "--partition",
        "7",
        "--bootstrap-server",
        server.bootstrap,
        "--property",
        "message.timeout.ms=3000",
        stdin="lost\n",
    )
    assert failed.returncode == 1
    assert "failed" in failed.stderr or "not acknowledged" in failed.stderr
    bad = _tidelog(
        "produce",
        topic,
        "--format",
        "json",
        "--bootstrap-server",
        server.bootstrap,
        stdin='{"value": "kept"}\n[1, 2]\n{"value": "never"}\n',
    )
    assert bad.returncode == 2
    assert "line 2" in bad.stderr
    assert [m.value() for m in _read_all(server, topic, 1)] == [b"kept"]


def test_group_lag_describe_reset_and_delete(server: ServerProcess) -> None:
    topic = _name("work")
    group = _name("billing")
    _json(server, "topic", "create", topic, "-p", "2")
    producer = Producer({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
    for i in range(5):
        producer.produce(topic, b"x", partition=0, timestamp=T0 + i)
    for i in range(3):
        producer.produce(topic, b"y", partition=1, timestamp=T0 + i)
    assert producer.flush(TIMEOUT) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": server.bootstrap,
            "group.id": group,
            "client.id": "cli-test-member",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            **quiet_librdkafka(),
        }
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + TIMEOUT
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(0.2)
        consumer.commit(
            offsets=[KafkaTopicPartition(topic, 0, 2), KafkaTopicPartition(topic, 1, 3)],
            asynchronous=False,
        )
        described = _json(server, "group", "describe", group)
        assert (described["exists"], described["state"]) == (True, "STABLE")
        assert [m["client_id"] for m in described["members"]] == ["cli-test-member"]
        assert described["members"][0]["assignment"] == [f"{topic}-0", f"{topic}-1"]
        refused = _tidelog(
            "group",
            "reset-offsets",
            group,
            "--topic",
            topic,
            "--to-earliest",
            "--execute",
            "--bootstrap-server",
            server.bootstrap,
        )
        assert refused.returncode == 1  # Kafka refuses a reset while the group has members
    finally:
        consumer.close()

    lag = {(r["topic"], r["partition"]): r for r in _json(server, "group", "lag", group)}
    assert lag[(topic, 0)]["committed"] == 2
    assert lag[(topic, 0)]["log_end_offset"] == 5
    assert lag[(topic, 0)]["lag"] == 3
    assert lag[(topic, 1)]["lag"] == 0
    every = _json(server, "group", "lag")
    assert {(r["group"], r["partition"], r["lag"]) for r in every if r["group"] == group} == {
        (group, 0, 3),
        (group, 1, 0),
    }
    assert any(row["group"] == group for row in _json(server, "group", "list"))

    dry = _json(server, "group", "reset-offsets", group, "--topic", topic, "--to-earliest")
    assert {(r["partition"], r["current"], r["new"]) for r in dry} == {(0, 2, 0), (1, 3, 0)}
    assert _committed(server, group, topic) == {0: 2, 1: 3}  # a dry run commits nothing

    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((T0 + 3) / 1000)) + ".003"
    _json(
        server, "group", "reset-offsets", group, "--topic", topic, "--to-datetime", iso, "--execute"
    )
    assert _committed(server, group, topic) == {0: 3, 1: 3}
    _json(
        server, "group", "reset-offsets", group, "--topic", topic, "--to-offset", "4", "--execute"
    )
    assert _committed(server, group, topic) == {0: 4, 1: 3}  # clamped to the log end
    _json(server, "group", "reset-offsets", group, "--topic", topic, "--to-latest", "--execute")
    assert _committed(server, group, topic) == {0: 5, 1: 3}

    _json(server, "group", "delete", group)
    assert not any(row["group"] == group for row in _json(server, "group", "list"))


def _said_not_to_exist(server: ServerProcess, action: str) -> None:
    """``tidelog group ACTION`` of a group the broker does not know says so
    and exits 1; with --json, stdout says ``"exists": false``."""
    missing = _name("nobody")
    said = f"tidelog: Consumer group '{missing}' does not exist.\n"
    done = _tidelog("group", action, missing, "--bootstrap-server", server.bootstrap)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", said)
    as_json = _tidelog("group", action, missing, "--json", "--bootstrap-server", server.bootstrap)
    assert (as_json.returncode, as_json.stderr) == (1, said)
    assert json.loads(as_json.stdout) == {"group": missing, "exists": False}


def _idle_group(server: ServerProcess) -> tuple[str, str]:
    """(topic, group): a group with an offset committed at 0 and no members."""
    topic, group = _name("kept"), _name("idle")
    _json(server, "topic", "create", topic)
    request = ConsumerGroupTopicPartitions(group, [KafkaTopicPartition(topic, 0, 0)])
    admin = _admin(server)  # held: a collected client drops its requests
    admin.alter_consumer_group_offsets([request])[group].result(TIMEOUT)
    return topic, group


def test_group_describe_of_a_group_that_does_not_exist_says_so_and_exits_1(
    server: ServerProcess,
) -> None:
    _said_not_to_exist(server, "describe")
    # A group with committed offsets and no members exists (Empty), as in Kafka.
    topic, group = _idle_group(server)
    described = _json(server, "group", "describe", group)
    assert (described["exists"], described["state"]) == (True, "EMPTY")
    assert [(r["topic"], r["committed"]) for r in described["offsets"]] == [(topic, 0)]
    # It has no assignor: a missing value, as docs/cli.md says they print.
    assert described["assignor"] is None
    lines = _tidelog("group", "describe", group, "--bootstrap-server", server.bootstrap)
    assert "assignor\t-\n" in lines.stdout


def test_group_lag_of_a_group_that_does_not_exist_says_so_and_exits_1(
    server: ServerProcess,
) -> None:
    _said_not_to_exist(server, "lag")
    # A group with committed offsets and no members exists: its lag is shown.
    topic, group = _idle_group(server)
    lag = _json(server, "group", "lag", group)
    assert [(r["group"], r["topic"], r["committed"], r["lag"]) for r in lag] == [
        (group, topic, 0, 0)
    ]


def test_group_delete_of_a_group_that_does_not_exist_says_so_and_exits_1(
    server: ServerProcess,
) -> None:
    missing = _name("nobody")
    done = _tidelog("group", "delete", missing, "--bootstrap-server", server.bootstrap)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.endswith("The group id does not exist\n"), done.stderr


def test_group_reset_offsets_of_a_group_that_does_not_exist_sets_its_offsets(
    server: ServerProcess,
) -> None:
    """As Kafka's tool: a Dead group may be reset, which is how a group's
    offsets are set before its first member starts."""
    topic, group = _name("seeded"), _name("new")
    _json(server, "topic", "create", topic)
    _json(server, "group", "reset-offsets", group, "--topic", topic, "--to-latest", "--execute")
    assert _committed(server, group, topic) == {0: 0}


def _committed(server: ServerProcess, group: str, topic: str) -> dict[int, int]:
    request = [ConsumerGroupTopicPartitions(group)]
    admin = _admin(server)
    answer = admin.list_consumer_group_offsets(request)[group].result(TIMEOUT)
    return {tp.partition: tp.offset for tp in answer.topic_partitions if tp.topic == topic}


def test_cluster_info_names_the_broker_and_counts_topics(server: ServerProcess) -> None:
    topic = _name("counted")
    _json(server, "topic", "create", topic, "-p", "4")
    info = _json(server, "cluster", "info")
    admin = _admin(server)
    described = admin.describe_cluster().result(TIMEOUT)
    assert info["cluster_id"] == described.cluster_id
    assert info["controller"] == described.controller.id
    assert [b["port"] for b in info["brokers"]] == [server.port]
    metadata = _admin(server).list_topics(timeout=TIMEOUT).topics
    visible = [t for name, t in metadata.items() if not name.startswith("__")]
    assert info["topics"] == len(visible)
    assert info["partitions"] == sum(len(t.partitions) for t in visible)
    versions = {v["key"]: (v["min"], v["max"]) for v in info["api_versions"]}
    assert versions[18][1] >= 3  # ApiVersions itself
    assert versions[0][1] >= 9  # Produce


def test_every_command_has_help_with_an_example() -> None:
    for command in (
        ("topic",),
        ("topic", "create"),
        ("topic", "list"),
        ("topic", "describe"),
        ("topic", "alter"),
        ("topic", "delete"),
        ("group",),
        ("group", "list"),
        ("group", "describe"),
        ("group", "lag"),
        ("group", "reset-offsets"),
        ("group", "delete"),
        ("produce",),
        ("cluster",),
        ("cluster", "info"),
    ):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
            main([*command, "--help"])
        assert exit_.value.code == 0
        assert "example:\n  tidelog" in out.getvalue() or "example:\n  printf" in out.getvalue()


def _consume(server: ServerProcess, topic: str, *args: str) -> list[dict[str, Any]]:
    done = _tidelog("consume", topic, "--bootstrap-server", server.bootstrap, *args)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_consume_from_a_start_to_the_end_then_exits(server: ServerProcess) -> None:
    topic = _name("read")
    _json(server, "topic", "create", topic, "-p", "2")
    producer = Producer({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
    for i in range(4):
        producer.produce(topic, f"p0-{i}".encode(), partition=0, timestamp=T0 + 10 * i)
    producer.produce(topic, b"p1-0", partition=1, timestamp=T0)
    assert producer.flush(TIMEOUT) == 0

    every = _consume(server, topic, "--from-beginning")
    assert sorted((r["partition"], r["offset"], r["value"]) for r in every) == [
        (0, 0, "p0-0"),
        (0, 1, "p0-1"),
        (0, 2, "p0-2"),
        (0, 3, "p0-3"),
        (1, 0, "p1-0"),
    ]
    assert _consume(server, topic) == []  # from the end, and not following: nothing
    from_three = _consume(server, topic, "--offset", "3")
    assert [(r["partition"], r["value"]) for r in from_three] == [(0, "p0-3")]
    by_time = _consume(server, topic, "--from-time", str(T0 + 15))
    assert sorted(r["value"] for r in by_time) == ["p0-2", "p0-3"]
    assert len(_consume(server, topic, "--from-beginning", "--max-messages", "2")) == 2

    group = _name("reader")
    first = _consume(server, topic, "--group", group, "--from-beginning")
    assert len(first) == 5
    assert _committed(server, group, topic) == {0: 4, 1: 1}
    producer.produce(topic, b"p0-4", partition=0)
    assert producer.flush(TIMEOUT) == 0
    assert [r["value"] for r in _consume(server, topic, "--group", group)] == ["p0-4"]
    assert _committed(server, group, topic) == {0: 5, 1: 1}

    refused = _tidelog(
        "consume",
        topic,
        "--until-vector",
        "{}",
        "--follow",
        "--bootstrap-server",
        server.bootstrap,
    )
    assert refused.returncode == 2


def test_consume_follow_prints_records_produced_after_it_started(server: ServerProcess) -> None:
    topic = _name("tail")
    _json(server, "topic", "create", topic)
    producer = Producer({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
    producer.produce(topic, b"before", partition=0)
    assert producer.flush(TIMEOUT) == 0

    def later() -> None:
        time.sleep(1.0)
        producer.produce(topic, b"after", partition=0)
        producer.flush(TIMEOUT)

    writer = threading.Thread(target=later)
    writer.start()
    try:
        got = _consume(server, topic, "--from-beginning", "--follow", "--max-messages", "2")
    finally:
        writer.join(TIMEOUT)
    assert [r["value"] for r in got] == ["before", "after"]


def test_every_example_in_docs_cli_md_parses() -> None:
    text = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    examples = re.findall(r"\| `(tidelog [^`]+)` \|$", text, flags=re.MULTILINE)
    for block in re.findall(r"```\n(.*?)```", text, flags=re.DOTALL):
        examples += [line[line.index("tidelog ") :] for line in block.splitlines()]
    assert len(examples) >= 25
    parser = _build_parser()
    for example in examples:
        argv = shlex.split(example.split(" > ")[0])[1:]
        assert parser.parse_args(argv).run is not None, example


@pytest.mark.parametrize(
    ("command", "waits_on"),
    [(("topic", "list"), "metadata"), (("snapshot", "t"), "metadata")],
)
def test_a_broker_that_is_not_there_is_one_line_saying_why(
    command: tuple[str, ...], waits_on: str
) -> None:
    """librdkafka logs each failed connection to stderr itself (``%3|...|FAIL|``,
    several a second for as long as the command waits): the command keeps
    them and ends with one line, the client's last word in it. The command
    runs in a process of its own, as a user runs it: in this one, the
    librdkafka clients of other tests share the process's stderr."""
    nobody = f"127.0.0.1:{free_port()}"
    # The waits cut from 30 s to 2 s, as a user's --property cannot.
    program = (
        "import sys\n"
        "from engine.cli import wire_admin, wire_replay\n"
        "from engine.cli.main import main\n"
        "wire_admin.TIMEOUT_S = wire_replay._TIMEOUT_S = 2.0\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", program, *command, "--bootstrap-server", nobody],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert ran.returncode == 1, ran.stderr
    err = ran.stderr
    assert err.count("\n") == 1, err
    assert err.startswith(f"tidelog: {waits_on}: Failed to get metadata: "), err
    assert "KafkaError{" not in err
    assert f"Connect to ipv4#{nobody} failed: Connection refused" in err
