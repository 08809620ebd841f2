"""kafkajs 2.2.4 against the wire server, through the node driver in
tests/clients/node (its serve mode: one node process per test process runs
the calls one after another, each with a timeout).

Covers the producer (keys, values, headers, timestamps and partitions as
sent, with and without gzip, idempotence and acks=all), read back with
confluent-kafka (librdkafka) and with kafkajs' own Fetch decoding, so that
independent clients agree; Fetch limits (offsets, batches, max bytes); the
admin client (topics, metadata, offsets, configs, partitions, records); a
topic of 100 partitions; messages at and past max.message.bytes; a server
restart between produce and read-back; and kafkajs' group consumer
resuming from the offset its group committed.
"""

from __future__ import annotations

import atexit
import base64
import json
import queue
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    TopicPartition,
)

from engine.config import CONFIG_DEFS
from tests.server.conftest import ServerProcess, quiet_librdkafka

DRIVER = Path(__file__).parents[1] / "clients" / "node" / "kafkajs_client.js"
CALL_TIMEOUT = 60.0
MAX_MESSAGE_BYTES = 1048588
"""Kafka's default max.message.bytes: the largest record batch, log overhead included."""
BATCH_OVERHEAD = 72
"""The bytes a kafkajs batch of one uncompressed record with a null key, no
headers and a value of 2**13 to 2**20 - 11 bytes adds to the value: the
61-byte batch header and 11 bytes of record framing (length, attributes,
timestamp delta, offset delta, key length, value length, header count)."""
T0 = 1_700_000_000_000
"""An explicit timestamp (ms) clearly apart from now."""
# DescribeConfigs config sources.
SOURCE_TOPIC = 1
SOURCE_DEFAULT = 5

Headers = Mapping[str, bytes | list[bytes]]
"""kafkajs 2.2.4 cannot send a null header value (it sizes it as a string)."""
HeaderList = list[tuple[str, bytes | None]]
Record = tuple[int, bytes | None, bytes | None, HeaderList]
"""(offset, key, value, headers): a record as compared across clients."""


class KafkaJSError(Exception):
    """A driver call that failed in kafkajs: ``error`` is the driver's
    description of the kafkajs error (name, message, type, ...)."""

    def __init__(self, error: dict[str, Any], stderr: str) -> None:
        super().__init__(f"{error.get('name')}: {error.get('message')}\n{stderr[-4000:]}")
        self.error = error
        self.stderr = stderr


def b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def _result(proc: subprocess.CompletedProcess[bytes]) -> Any:
    stderr = proc.stderr.decode(errors="replace")
    if proc.returncode == 0:
        return json.loads(proc.stdout)
    lines = stderr.strip().splitlines()
    if proc.returncode == 1 and lines:
        raise KafkaJSError(json.loads(lines[-1])["error"], stderr)
    raise AssertionError(f"the driver exited with {proc.returncode}:\n{stderr}")


class ServingDriver:
    """The driver in serve mode: node starts once (a second or more on a
    loaded machine) and each call makes its own kafkajs client in it, as a
    process of its own would. A call that times out or a driver that dies
    ends the process; the next call starts another."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._answers: queue.Queue[bytes] = queue.Queue()
        self._stderr: IO[bytes] | None = None

    def call(self, command: str, args: Mapping[str, Any]) -> Any:
        process = self._running()
        assert process.stdin is not None
        try:
            process.stdin.write(json.dumps({"command": command, "args": args}).encode() + b"\n")
            process.stdin.flush()
            line = self._answers.get(timeout=CALL_TIMEOUT)
        except queue.Empty:
            self.close()
            raise subprocess.TimeoutExpired([str(DRIVER), command], CALL_TIMEOUT) from None
        except BrokenPipeError:
            line = b""
        if not line:  # the driver died: what it said on the way out is on its stderr
            self.close()
            raise AssertionError(f"the driver ended during {command}:\n{self._stderr_tail()}")
        answer = json.loads(line)
        if "result" in answer:
            return answer["result"]
        if answer["usage"]:
            raise AssertionError(f"the driver refused {command}: {answer['error']}")
        raise KafkaJSError(answer["error"], answer["log"])

    def _running(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self.close()
        # It lives as long as the driver, across calls: no with-block fits.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self._process = subprocess.Popen(
            ["node", str(DRIVER), "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._answers = queue.Queue()
        threading.Thread(
            target=self._read, args=(self._process, self._answers), daemon=True
        ).start()
        return self._process

    @staticmethod
    def _read(process: subprocess.Popen[bytes], answers: queue.Queue[bytes]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            answers.put(line)
        answers.put(b"")

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-4000:]

    def close(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(CALL_TIMEOUT)
            for pipe in (self._process.stdin, self._process.stdout):
                if pipe is not None:
                    pipe.close()
            self._process = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


_DRIVER = ServingDriver()
atexit.register(_DRIVER.close)


def kafkajs(command: str, bootstrap: str, **args: Any) -> Any:
    """One driver call; arguments go over a pipe, so they may be large."""
    return _DRIVER.call(command, {"brokers": bootstrap, **args})


@dataclass(frozen=True)
class Message:
    """A message as sent through kafkajs."""

    partition: int
    key: bytes | None
    value: bytes | None
    headers: Headers | None = None
    timestamp: int | None = None

    def to_driver(self) -> dict[str, Any]:
        headers = {
            name: [b64(v) for v in value] if isinstance(value, list) else b64(value)
            for name, value in (self.headers or {}).items()
        }
        return {
            "partition": self.partition,
            "key": b64(self.key),
            "value": b64(self.value),
            "headers": headers,
            "timestamp": self.timestamp,
        }

    def header_list(self) -> HeaderList:
        """The headers in the order kafkajs writes them: by key, repeated
        keys' values in turn."""
        return header_pairs(self.headers or {})


def header_pairs(headers: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """kafkajs' headers object as (key, value) pairs: a list value stands
    for a key repeated with each of its values."""
    out: list[tuple[str, Any]] = []
    for name, value in headers.items():
        out += [(name, v) for v in (value if isinstance(value, list) else [value])]
    return out


@dataclass(frozen=True)
class Stored:
    """A record as a librdkafka consumer reads it back."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: HeaderList
    timestamp: int
    timestamp_type: int = TIMESTAMP_CREATE_TIME


def read_back(
    bootstrap: str, topic: str, ends: Mapping[int, int], *, timeout: float = 30.0
) -> dict[int, list[Stored]]:
    """Every record of ``topic`` from the log start up to the given end
    offset of each partition, read with confluent-kafka by assign()."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "kafkajs-read-back",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
            **quiet_librdkafka(),
        }
    )
    wanted = {p: end for p, end in ends.items() if end > 0}
    found: dict[int, list[Stored]] = {p: [] for p in ends}
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in wanted])
        deadline = time.monotonic() + timeout
        while wanted and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=1000, timeout=0.5):
                assert message.error() is None, message.error()
                partition, offset = message.partition(), message.offset()
                assert partition is not None and offset is not None
                kind, timestamp = message.timestamp()
                found[partition].append(
                    Stored(
                        partition,
                        offset,
                        message.key(),
                        message.value(),
                        cast(HeaderList, message.headers() or []),
                        timestamp,
                        kind,
                    )
                )
                if partition in wanted and offset >= wanted[partition] - 1:
                    del wanted[partition]
    finally:
        consumer.close()
    assert not wanted, f"partitions not read to their end in {timeout} s: {wanted}"
    return found


def produce(bootstrap: str, topic: str, messages: Sequence[Message], **options: Any) -> Any:
    return kafkajs(
        "produce", bootstrap, topic=topic, messages=[m.to_driver() for m in messages], **options
    )


def steps_args(
    bootstrap: str, topic: str, sends: Sequence[Sequence[Message]], **options: Any
) -> str:
    """The driver's produce_steps arguments: one send per step, one producer."""
    steps = [{"messages": [m.to_driver() for m in send]} for send in sends]
    return json.dumps({"brokers": bootstrap, "topic": topic, "steps": steps, **options})


def produce_steps(
    bootstrap: str, topic: str, sends: Sequence[Sequence[Message]], **options: Any
) -> Any:
    """Each send in turn from one kafkajs producer, without a pause."""
    proc = subprocess.run(
        ["node", str(DRIVER), "produce_steps", steps_args(bootstrap, topic, sends, **options)],
        input=b"\n" * len(sends),
        capture_output=True,
        timeout=CALL_TIMEOUT,
        check=False,
    )
    return _result(proc)


def base_offsets(response: Sequence[Mapping[str, Any]]) -> dict[int, int]:
    """A kafkajs send() result as {partition: base offset}, every partition
    answered without error."""
    assert all(r["errorCode"] == 0 for r in response), response
    return {r["partition"]: int(r["baseOffset"]) for r in response}


def expected_records(
    messages: Sequence[Message], bases: Mapping[int, int]
) -> dict[int, list[Record]]:
    """Per partition, each message in the order sent, with offsets counted
    from that partition's base offset."""
    out: dict[int, list[Record]] = {}
    for m in messages:
        records = out.setdefault(m.partition, [])
        records.append((bases[m.partition] + len(records), m.key, m.value, m.header_list()))
    return out


def stored_records(stored: Mapping[int, list[Stored]]) -> dict[int, list[Record]]:
    return {
        p: [(r.offset, r.key, r.value, r.headers) for r in records]
        for p, records in stored.items()
        if records
    }


def kafkajs_fetch(
    bootstrap: str,
    topic: str,
    offsets: Mapping[int, int],
    *,
    max_bytes: int = 10 * 1024 * 1024,
    partition_max_bytes: int = 1024 * 1024,
) -> dict[int, dict[str, Any]]:
    """One Fetch (v11) through kafkajs from the given offset of each
    partition (kafkajs' consumer defaults for the limits): per partition,
    the response's fields, with ``records`` (kafkajs' decoded messages as
    Stored) in place of its raw messages."""
    partitions = [
        {"partition": p, "fetchOffset": o, "maxBytes": partition_max_bytes}
        for p, o in offsets.items()
    ]
    fetched = kafkajs("fetch", bootstrap, topic=topic, partitions=partitions, maxBytes=max_bytes)
    out = {}
    for answer in fetched:
        partition = answer["partition"]
        answer["records"] = [
            Stored(
                partition,
                int(m["offset"]),
                unb64(m["key"]),
                unb64(m["value"]),
                [(k, unb64(v)) for k, v in header_pairs(m["headers"])],
                int(m["timestamp"]),
            )
            for m in answer.pop("messages")
        ]
        out[partition] = answer
    return out


def fetched_records(fetched: Mapping[int, Mapping[str, Any]]) -> dict[int, list[Record]]:
    return stored_records({p: answer["records"] for p, answer in fetched.items()})


def create_topic(bootstrap: str, topic: str, partitions: int, **configs: str) -> None:
    entries = [{"name": name, "value": value} for name, value in configs.items()]
    created = kafkajs(
        "create_topics",
        bootstrap,
        topics=[{"topic": topic, "numPartitions": partitions, "configEntries": entries}],
    )
    assert created is True


def describe_topic_configs(bootstrap: str, topic: str) -> dict[str, dict[str, Any]]:
    described = kafkajs("describe_configs", bootstrap, resources=[{"name": topic}])
    (resource,) = described["resources"]
    assert resource["errorCode"] == 0, resource
    return {entry["configName"]: entry for entry in resource["configEntries"]}


def high_watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    offsets = kafkajs("fetch_topic_offsets", bootstrap, topic=topic)
    return {o["partition"]: int(o["high"]) for o in offsets}


# --- produce what is sent, read it back with librdkafka ---------------------

FIRST_SEND = (
    Message(0, None, b"value with a null key", {"trace": b"abc"}, T0),
    Message(0, b"tombstone", None, None, T0 + 5),
    Message(0, b"", b"", {"empty": b""}, T0 + 7),
    Message(1, b"\x00\xffbinary key", bytes(range(256)), {"a": [b"1", b"2"], "b": b"3"}, T0),
    Message(1, None, None),  # kafkajs stamps it with the time of sending
    Message(2, "ключ".encode(), b"compressible " * 1000, {"ключ": "значение".encode()}, T0 + 9),
)
SECOND_SEND = (
    Message(0, b"k", b"after the first send", None, T0 + 11),
    Message(2, b"k", b"x", {"h": b"y"}, T0 + 12),
)


@pytest.mark.parametrize(
    ("compression", "idempotent", "acks"),
    [
        ("none", False, -1),
        ("none", False, 1),
        ("none", True, -1),
        ("gzip", False, -1),
        ("gzip", False, 1),
        ("gzip", True, -1),
    ],
)
def test_produced_messages_read_back_exactly(
    kafka_server: ServerProcess, topic: str, compression: str, idempotent: bool, acks: int
) -> None:
    bootstrap = kafka_server.bootstrap
    create_topic(bootstrap, topic, 3)
    sent_after = int(time.time() * 1000)
    # Two sends from one producer: an idempotent one continues its sequences.
    first, second = produce_steps(
        bootstrap,
        topic,
        [FIRST_SEND, SECOND_SEND],
        compression=compression,
        idempotent=idempotent,
        acks=acks,
    )
    sent_before = int(time.time() * 1000)

    assert base_offsets(first) == {0: 0, 1: 0, 2: 0}
    assert base_offsets(second) == {0: 3, 2: 1}
    stored = read_back(bootstrap, topic, {0: 4, 1: 2, 2: 2})
    expected = expected_records(FIRST_SEND, {0: 0, 1: 0, 2: 0})
    for partition, records in expected_records(SECOND_SEND, {0: 3, 2: 1}).items():
        expected[partition] += records
    assert stored_records(stored) == expected
    timestamps = {(r.partition, r.offset): r.timestamp for rs in stored.values() for r in rs}
    assert {r.timestamp_type for rs in stored.values() for r in rs} == {TIMESTAMP_CREATE_TIME}
    stamped = timestamps.pop((1, 1))
    assert sent_after <= stamped <= sent_before
    assert timestamps == {
        (0, 0): T0,
        (0, 1): T0 + 5,
        (0, 2): T0 + 7,
        (0, 3): T0 + 11,
        (1, 0): T0,
        (2, 0): T0 + 9,
        (2, 1): T0 + 12,
    }

    # kafkajs' own Fetch decoding reads the same.
    fetched = kafkajs_fetch(bootstrap, topic, {0: 0, 1: 0, 2: 0})
    assert fetched_records(fetched) == expected
    fetched_timestamps = {
        (r.partition, r.offset): r.timestamp for a in fetched.values() for r in a["records"]
    }
    assert fetched_timestamps == {**timestamps, (1, 1): stamped}
    assert {p: (a["errorCode"], a["highWatermark"]) for p, a in fetched.items()} == {
        0: (0, "4"),
        1: (0, "2"),
        2: (0, "2"),
    }


def test_kafkajs_group_consumer_resumes_from_its_committed_offset(
    group_server: ServerProcess, topic: str
) -> None:
    """kafkajs' consumer joins a group through the group coordinator and
    commits the messages it handed back, not the rest of the batch it
    fetched; the group's next consumer starts after them. (More in
    test_groups_kafkajs.py.)"""
    bootstrap = group_server.bootstrap
    group = f"g-{topic}"
    produce(bootstrap, topic, [Message(0, b"k", b"v%d" % i, None, T0 + i) for i in range(3)])
    # A short fetch wait, so that leaving the group does not wait for a long poll.
    options = {"groupId": group, "timeoutMs": 30000, "maxWaitTimeInMs": 100}
    first = kafkajs("consume", bootstrap, topic=topic, count=2, **options)
    assert [(r["offset"], r["value"]) for r in first] == [("0", b64(b"v0")), ("1", b64(b"v1"))]
    [offsets] = kafkajs("fetch_offsets", bootstrap, groupId=group, topics=[topic])
    assert offsets["partitions"] == [{"partition": 0, "offset": "2", "metadata": None}]
    second = kafkajs("consume", bootstrap, topic=topic, count=1, **options)
    assert [(r["offset"], r["value"]) for r in second] == [("2", b64(b"v2"))]


def test_log_append_time_topic_stamps_records_on_append(
    kafka_server: ServerProcess, topic: str
) -> None:
    bootstrap = kafka_server.bootstrap
    create_topic(bootstrap, topic, 1, **{"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    (answer,) = produce(bootstrap, topic, [Message(0, b"k", b"v", None, T0)] * 2)
    after = int(time.time() * 1000)
    appended = int(answer["logAppendTime"])
    assert before <= appended <= after

    stored = read_back(bootstrap, topic, {0: 2})
    assert [(r.timestamp_type, r.timestamp) for r in stored[0]] == [
        (TIMESTAMP_LOG_APPEND_TIME, appended)
    ] * 2
    fetched = kafkajs_fetch(bootstrap, topic, {0: 0})
    assert [r.timestamp for r in fetched[0]["records"]] == [appended] * 2


# --- kafkajs' Fetch ------------------------------------------------------------


def test_kafkajs_fetch_answers_whole_batches_from_the_offset_asked(
    kafka_server: ServerProcess, topic: str
) -> None:
    """The batch that holds the offset goes back whole, as in Kafka (a
    consumer skips what is before its position); at the high watermark the
    answer is empty; past it, or before the log start, OFFSET_OUT_OF_RANGE."""
    bootstrap = kafka_server.bootstrap
    create_topic(bootstrap, topic, 1)
    for batch in ([b"a"], [b"b", b"c"], [b"d"]):
        produce(bootstrap, topic, [Message(0, None, v, None, T0) for v in batch])

    def offsets_from(offset: int) -> list[tuple[int, bytes | None]]:
        (answer,) = kafkajs_fetch(bootstrap, topic, {0: offset}).values()
        assert answer["errorCode"] == 0
        return [(r.offset, r.value) for r in answer["records"]]

    assert offsets_from(0) == [(0, b"a"), (1, b"b"), (2, b"c"), (3, b"d")]
    assert offsets_from(2) == [(1, b"b"), (2, b"c"), (3, b"d")]
    assert offsets_from(4) == []
    with pytest.raises(KafkaJSError) as failed:
        kafkajs_fetch(bootstrap, topic, {0: 5})
    assert failed.value.error["type"] == "OFFSET_OUT_OF_RANGE"

    kafkajs("delete_records", bootstrap, topic=topic, partitions=[{"partition": 0, "offset": "3"}])
    with pytest.raises(KafkaJSError) as failed:
        kafkajs_fetch(bootstrap, topic, {0: 2})
    assert failed.value.error["type"] == "OFFSET_OUT_OF_RANGE"
    (answer,) = kafkajs_fetch(bootstrap, topic, {0: 3}).values()
    assert [(r.offset, r.value) for r in answer["records"]] == [(3, b"d")]
    assert (answer["logStartOffset"], answer["highWatermark"]) == ("3", "4")


def test_kafkajs_fetch_keeps_to_the_response_and_partition_max_bytes(
    kafka_server: ServerProcess, topic: str
) -> None:
    """As in Kafka: the first partition with data sends at least its first
    batch, however large; the rest send only what fits in their own limit
    and what the response has left, and always their offsets."""
    bootstrap = kafka_server.bootstrap
    create_topic(bootstrap, topic, 2)
    value = b"v" * 1000  # one record in a batch of 1070 bytes
    for partition in (0, 0, 1):
        produce(bootstrap, topic, [Message(partition, None, value, None, T0)])
    everything = {0: [0, 1], 1: [0]}

    def fetch(**limits: int) -> dict[int, list[int]]:
        fetched = kafkajs_fetch(bootstrap, topic, {0: 0, 1: 0}, **limits)
        assert {p: a["highWatermark"] for p, a in fetched.items()} == {0: "2", 1: "1"}
        assert all(r.value == value for a in fetched.values() for r in a["records"])
        return {p: [r.offset for r in a["records"]] for p, a in fetched.items()}

    assert fetch() == everything
    # kafkajs puts the partitions in a random order: either may come first.
    for limits in ({"max_bytes": 1}, {"partition_max_bytes": 1}, {"max_bytes": 1500}):
        assert fetch(**limits) in ({0: [0], 1: []}, {0: [], 1: [0]}), limits
    assert fetch(partition_max_bytes=1500) == {0: [0], 1: [0]}
    assert fetch(max_bytes=2200) in ({0: [0, 1], 1: []}, {0: [0], 1: [0]})


# --- admin -------------------------------------------------------------------


def test_create_topics_with_config_entries(kafka_server: ServerProcess, topic: str) -> None:
    bootstrap = kafka_server.bootstrap
    create_topic(bootstrap, topic, 4, **{"retention.ms": "12345", "cleanup.policy": "compact"})

    metadata = kafkajs("fetch_metadata", bootstrap, topics=[topic])
    (described,) = metadata["topics"]
    assert described["name"] == topic
    assert [p["partitionId"] for p in described["partitions"]] == [0, 1, 2, 3]
    assert all(p["partitionErrorCode"] == 0 for p in described["partitions"])
    assert all(p["leader"] == 1 and p["replicas"] == [1] for p in described["partitions"])
    configs = describe_topic_configs(bootstrap, topic)
    assert configs["retention.ms"]["configValue"] == "12345"
    assert configs["cleanup.policy"]["configValue"] == "compact"


def test_describe_cluster_names_this_broker(kafka_server: ServerProcess) -> None:
    bootstrap = kafka_server.bootstrap
    cluster = kafkajs("describe_cluster", bootstrap)
    assert cluster["brokers"] == [{"nodeId": 1, "host": "127.0.0.1", "port": kafka_server.port}]
    assert cluster["controller"] == 1
    assert cluster["clusterId"]


def test_admin_metadata_does_not_create_topics(kafka_server: ServerProcess, topic: str) -> None:
    """kafkajs' admin asks for metadata with allow_auto_topic_creation
    false: an unknown topic stays unknown though auto-creation is on."""
    bootstrap = kafka_server.bootstrap
    with pytest.raises(KafkaJSError) as failed:
        kafkajs("fetch_metadata", bootstrap, topics=[topic])
    assert failed.value.error["type"] == "UNKNOWN_TOPIC_OR_PARTITION"
    assert topic not in kafkajs("list_topics", bootstrap)


def test_create_existing_topic_is_topic_already_exists(
    kafka_server: ServerProcess, topic: str
) -> None:
    bootstrap = kafka_server.bootstrap
    create_topic(bootstrap, topic, 2)
    again = kafkajs(
        "create_topics", bootstrap, withErrors=True, topics=[{"topic": topic, "numPartitions": 5}]
    )
    # kafkajs answers `false` only when every topic failed with TOPIC_ALREADY_EXISTS.
    assert again["created"] is False
    assert [(e["topic"], e["type"], e["code"]) for e in again["errors"]] == [
        (topic, "TOPIC_ALREADY_EXISTS", 36)
    ]
    metadata = kafkajs("fetch_metadata", bootstrap, topics=[topic])
    assert len(metadata["topics"][0]["partitions"]) == 2


def test_create_topic_with_an_invalid_config_is_invalid_config(
    kafka_server: ServerProcess, topic: str
) -> None:
    bootstrap = kafka_server.bootstrap
    with pytest.raises(KafkaJSError) as failed:
        kafkajs(
            "create_topics",
            bootstrap,
            topics=[{"topic": topic, "configEntries": [{"name": "retention.ms", "value": "soon"}]}],
        )
    assert [(e["topic"], e["type"]) for e in failed.value.error["errors"]] == [
        (topic, "INVALID_CONFIG")
    ]
    assert topic not in kafkajs("list_topics", bootstrap)


def test_list_topics_names_created_topics(kafka_server: ServerProcess, topic: str) -> None:
    bootstrap = kafka_server.bootstrap
    others = [f"{topic}-a", f"{topic}-b"]
    for name in others:
        create_topic(bootstrap, name, 1)
    listed = kafkajs("list_topics", bootstrap)
    assert set(others) <= set(listed)
    assert topic not in listed


def test_fetch_topic_offsets_gives_low_and_high_watermarks(
    kafka_server: ServerProcess, topic: str
) -> None:
    bootstrap = kafka_server.bootstrap
    create_topic(bootstrap, topic, 3)
    produce(bootstrap, topic, [Message(0, None, b"v")] * 3 + [Message(2, None, b"v")])
    offsets = kafkajs("fetch_topic_offsets", bootstrap, topic=topic)
    assert offsets == [
        {"partition": 0, "offset": "3", "high": "3", "low": "0"},
        {"partition": 1, "offset": "0", "high": "0", "low": "0"},
        {"partition": 2, "offset": "1", "high": "1", "low": "0"},
    ]


def test_fetch_topic_offsets_by_timestamp(kafka_server: ServerProcess, topic: str) -> None:
    """The first offset whose timestamp is at or after the one asked for;
    kafkajs substitutes the high watermark where there is none."""
    bootstrap = kafka_server.bootstrap
    create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, [Message(0, None, b"v", None, T0 + 10 * i) for i in range(3)])

    def offsets_at(timestamp: int) -> dict[int, int]:
        found = kafkajs(
            "fetch_topic_offsets_by_timestamp", bootstrap, topic=topic, timestamp=timestamp
        )
        return {o["partition"]: int(o["offset"]) for o in found}

    assert offsets_at(T0 - 100) == {0: 0, 1: 0}
    assert offsets_at(T0) == {0: 0, 1: 0}
    assert offsets_at(T0 + 5) == {0: 1, 1: 0}
    assert offsets_at(T0 + 20) == {0: 2, 1: 0}
    assert offsets_at(T0 + 21) == {0: 3, 1: 0}


def test_describe_configs_lists_every_topic_config_with_its_default(
    kafka_server: ServerProcess, topic: str
) -> None:
    bootstrap = kafka_server.bootstrap
    create_topic(bootstrap, topic, 1, **{"retention.ms": "3600000", "max.message.bytes": "2000"})
    configs = describe_topic_configs(bootstrap, topic)

    assert set(configs) == set(CONFIG_DEFS)
    overridden = {"retention.ms": "3600000", "max.message.bytes": "2000"}
    for name, entry in configs.items():
        if name in overridden:
            assert entry["configValue"] == overridden[name]
            assert (entry["isDefault"], entry["configSource"]) == (False, SOURCE_TOPIC), entry
        else:
            assert entry["configValue"] == CONFIG_DEFS[name].default, entry
            assert (entry["isDefault"], entry["configSource"]) == (True, SOURCE_DEFAULT), entry
        assert entry["readOnly"] is False
        assert entry["isSensitive"] is False
    # Kafka's own defaults, as clients expect them.
    assert configs["cleanup.policy"]["configValue"] == "delete"
    assert configs["segment.bytes"]["configValue"] == "1073741824"
    assert configs["message.timestamp.type"]["configValue"] == "CreateTime"
    assert configs["min.insync.replicas"]["configValue"] == "1"


def test_describe_configs_with_synonyms_names_the_source(
    kafka_server: ServerProcess, topic: str
) -> None:
    bootstrap = kafka_server.bootstrap
    create_topic(bootstrap, topic, 1, **{"retention.ms": "3600000"})
    described = kafkajs(
        "describe_configs",
        bootstrap,
        includeSynonyms=True,
        resources=[{"name": topic, "configNames": ["retention.ms", "segment.ms"]}],
    )
    (resource,) = described["resources"]
    entries = {e["configName"]: e for e in resource["configEntries"]}
    assert set(entries) == {"retention.ms", "segment.ms"}
    # The override, then what it falls back to: the broker's log.retention.ms.
    assert entries["retention.ms"]["configSynonyms"] == [
        {"configName": "retention.ms", "configValue": "3600000", "configSource": SOURCE_TOPIC},
        {
            "configName": "log.retention.ms",
            "configValue": "604800000",
            "configSource": SOURCE_DEFAULT,
        },
    ]
    assert entries["segment.ms"]["configSynonyms"] == [
        {"configName": "segment.ms", "configValue": "604800000", "configSource": SOURCE_DEFAULT}
    ]


def test_alter_configs_replaces_the_overrides(kafka_server: ServerProcess, topic: str) -> None:
    """AlterConfigs (not the incremental kind) sets the whole override set:
    configs left out return to their defaults."""
    bootstrap = kafka_server.bootstrap
    create_topic(bootstrap, topic, 1, **{"retention.ms": "12345"})
    altered = kafkajs(
        "alter_configs",
        bootstrap,
        topic=topic,
        configEntries=[
            {"name": "segment.ms", "value": "60000"},
            {"name": "cleanup.policy", "value": "compact,delete"},
        ],
    )
    assert altered["resources"] == [
        {"errorCode": 0, "errorMessage": None, "resourceType": 2, "resourceName": topic}
    ]
    configs = describe_topic_configs(bootstrap, topic)
    assert configs["segment.ms"]["configValue"] == "60000"
    assert configs["segment.ms"]["isDefault"] is False
    assert configs["cleanup.policy"]["configValue"] == "compact,delete"
    assert configs["retention.ms"]["configValue"] == CONFIG_DEFS["retention.ms"].default
    assert configs["retention.ms"]["isDefault"] is True


def test_alter_configs_with_an_invalid_value_changes_nothing(
    kafka_server: ServerProcess, topic: str
) -> None:
    bootstrap = kafka_server.bootstrap
    create_topic(bootstrap, topic, 1, **{"retention.ms": "12345"})
    with pytest.raises(KafkaJSError) as failed:
        kafkajs(
            "alter_configs",
            bootstrap,
            topic=topic,
            configEntries=[{"name": "min.cleanable.dirty.ratio", "value": "2.5"}],
        )
    assert failed.value.error["type"] == "INVALID_CONFIG"
    configs = describe_topic_configs(bootstrap, topic)
    assert configs["retention.ms"]["configValue"] == "12345"
    assert configs["min.cleanable.dirty.ratio"]["configValue"] == "0.5"


def test_create_partitions_adds_writable_partitions(
    kafka_server: ServerProcess, topic: str
) -> None:
    bootstrap = kafka_server.bootstrap
    create_topic(bootstrap, topic, 2)
    assert kafkajs("create_partitions", bootstrap, topic=topic, count=5) is None

    metadata = kafkajs("fetch_metadata", bootstrap, topics=[topic])
    assert [p["partitionId"] for p in metadata["topics"][0]["partitions"]] == [0, 1, 2, 3, 4]
    sent = [Message(4, b"k", b"in a new partition", None, T0)]
    assert base_offsets(produce(bootstrap, topic, sent)) == {4: 0}
    stored = read_back(bootstrap, topic, {4: 1})
    assert stored_records(stored) == expected_records(sent, {4: 0})


def test_create_partitions_cannot_shrink_a_topic(kafka_server: ServerProcess, topic: str) -> None:
    bootstrap = kafka_server.bootstrap
    create_topic(bootstrap, topic, 3)
    with pytest.raises(KafkaJSError) as failed:
        kafkajs("create_partitions", bootstrap, topic=topic, count=2)
    assert failed.value.error["type"] == "INVALID_PARTITIONS"
    assert len(kafkajs("fetch_metadata", bootstrap, topics=[topic])["topics"][0]["partitions"]) == 3


def test_delete_records_moves_the_log_start(kafka_server: ServerProcess, topic: str) -> None:
    bootstrap = kafka_server.bootstrap
    create_topic(bootstrap, topic, 2)
    sent = [Message(p, None, f"{p}-{i}".encode(), None, T0) for p in (0, 1) for i in range(5)]
    produce(bootstrap, topic, sent)
    deleted = kafkajs(
        "delete_records",
        bootstrap,
        topic=topic,
        # -1: up to the high watermark
        partitions=[{"partition": 0, "offset": "3"}, {"partition": 1, "offset": "-1"}],
    )
    assert deleted is None
    offsets = kafkajs("fetch_topic_offsets", bootstrap, topic=topic)
    assert [(o["partition"], o["low"], o["high"]) for o in offsets] == [
        (0, "3", "5"),
        (1, "5", "5"),
    ]
    stored = read_back(bootstrap, topic, {0: 5})
    assert [(r.offset, r.value) for r in stored[0]] == [(3, b"0-3"), (4, b"0-4")]


def test_delete_topics_removes_them(kafka_server: ServerProcess, topic: str) -> None:
    bootstrap = kafka_server.bootstrap
    create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, [Message(0, None, b"v")])
    assert kafkajs("delete_topics", bootstrap, topics=[topic]) is None
    assert topic not in kafkajs("list_topics", bootstrap)
    # Created anew (auto-creation is on), it starts empty.
    create_topic(bootstrap, topic, 1)
    assert high_watermarks(bootstrap, topic) == {0: 0}


# --- many partitions ---------------------------------------------------------


def test_one_send_to_a_hundred_partitions(kafka_server: ServerProcess, topic: str) -> None:
    bootstrap = kafka_server.bootstrap
    create_topic(bootstrap, topic, 100)
    sent = [
        Message(p, f"k{p}".encode(), f"{p}/{i}".encode(), None, T0 + i)
        for i in range(2)
        for p in range(100)
    ]
    response = produce(bootstrap, topic, sent)
    assert base_offsets(response) == dict.fromkeys(range(100), 0)
    assert high_watermarks(bootstrap, topic) == dict.fromkeys(range(100), 2)
    stored = read_back(bootstrap, topic, dict.fromkeys(range(100), 2))
    assert stored_records(stored) == expected_records(sent, dict.fromkeys(range(100), 0))


# --- message size limits -----------------------------------------------------


def test_message_at_max_message_bytes_is_stored_and_one_byte_more_is_too_large(
    kafka_server: ServerProcess, topic: str
) -> None:
    bootstrap = kafka_server.bootstrap
    create_topic(bootstrap, topic, 1)
    fits = Message(0, None, b"f" * (MAX_MESSAGE_BYTES - BATCH_OVERHEAD), None, T0)
    too_large = Message(0, None, b"L" * (MAX_MESSAGE_BYTES - BATCH_OVERHEAD + 1), None, T0)

    assert base_offsets(produce(bootstrap, topic, [fits])) == {0: 0}
    with pytest.raises(KafkaJSError) as failed:
        produce(bootstrap, topic, [too_large])
    assert failed.value.error["name"] == "KafkaJSProtocolError"
    assert failed.value.error["type"] == "MESSAGE_TOO_LARGE"

    small = Message(0, b"k", b"after", None, T0 + 1)
    assert base_offsets(produce(bootstrap, topic, [small])) == {0: 1}
    expected: dict[int, list[Record]] = {0: [(0, None, fits.value, []), (1, b"k", b"after", [])]}
    assert stored_records(read_back(bootstrap, topic, {0: 2})) == expected
    # Larger than kafkajs' 1 MiB per-partition fetch limit, it comes back
    # whole, and alone.
    assert fetched_records(kafkajs_fetch(bootstrap, topic, {0: 0})) == {0: expected[0][:1]}
    assert fetched_records(kafkajs_fetch(bootstrap, topic, {0: 1})) == {0: expected[0][1:]}


# --- restart -----------------------------------------------------------------


def test_data_survives_a_restart_and_the_producer_reconnects(
    own_server: ServerProcess, topic: str, tmp_path: Path
) -> None:
    bootstrap = own_server.bootstrap
    create_topic(bootstrap, topic, 2)
    before = [
        Message(p, f"k{i}".encode(), f"before {p}/{i}".encode(), {"i": str(i).encode()}, T0 + i)
        for p in (0, 1)
        for i in range(3)
    ]
    after = [Message(0, b"k", b"after the restart", None, T0 + 10)]
    args = steps_args(bootstrap, topic, [before, after], idempotent=True)
    stderr_path = tmp_path / "kafkajs.stderr"
    with stderr_path.open("wb") as stderr:
        # One producer: it sends, waits while the server restarts, sends again.
        driver = subprocess.Popen(
            ["node", str(DRIVER), "produce_steps", args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        try:
            _wait_for(lambda: "step 0 done" in stderr_path.read_text(), driver)
            own_server.restart()
            stored = read_back(bootstrap, topic, {0: 3, 1: 3})
            assert stored_records(stored) == expected_records(before, {0: 0, 1: 0})
            assert [r.timestamp for r in stored[1]] == [T0, T0 + 1, T0 + 2]

            stdout, _ = driver.communicate(b"\n", timeout=CALL_TIMEOUT)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
    proc = subprocess.CompletedProcess(
        driver.args, driver.returncode, stdout, stderr_path.read_bytes()
    )
    first, second = _result(proc)
    assert base_offsets(first) == {0: 0, 1: 0}
    assert base_offsets(second) == {0: 3}
    stored = read_back(bootstrap, topic, {0: 4, 1: 3})
    expected = expected_records(before, {0: 0, 1: 0})
    expected[0] += expected_records(after, {0: 3})[0]
    assert stored_records(stored) == expected


def _wait_for(
    condition: Callable[[], bool], driver: subprocess.Popen[bytes], timeout: float = CALL_TIMEOUT
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert driver.poll() is None, "the driver exited early"
        assert time.monotonic() < deadline, f"not done in {timeout} s"
        time.sleep(0.05)
