"""kcat (Debian's, on its own librdkafka) against ``tidelog serve``.

Records produced with -P (keys with -K, headers with -H, every codec with
-z) come back exactly through -C with a format string and as -J JSON;
records from confluent-kafka (null keys and values, set timestamps) read
the same through kcat; -L shows the broker, topic and partitions; -Q finds
offsets by timestamp; and kcat's data and a running kcat consumer survive
a server restart.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from typing import Any

import pytest

from tests.server.conftest import ServerProcess
from tests.server.test_confluent import (
    BASE_TIMESTAMP,
    CODECS,
    Sent,
    create_topic,
    make_admin,
    make_producer,
    produce_all,
    stored_batch_codecs,
)

TIMEOUT = 30.0

# Lines as kcat -P -K : reads them: key, the first colon, the value. The
# long one makes every codec worth using (librdkafka sends a batch
# uncompressed when compressing does not shrink it).
LINES = [
    "k1:v1",
    ":empty key",
    "k3:",
    "k4:value:with:colons",
    "k5:spaces  and\ttabs",
    "ключ:значение ✓",
    "long:" + "compressible text " * 100,
]
HEADERS = ["a=1", "a=2", "null", "empty=", "eq=x=y"]


def kcat(bootstrap: str, *args: str, stdin: str | None = None, timeout: float = TIMEOUT) -> str:
    """Runs kcat to completion and returns what it printed on stdout."""
    result = subprocess.run(
        ["kcat", "-b", bootstrap, "-m", "10", "-X", "log_level=3", *args],
        input=None if stdin is None else stdin.encode(),
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout.decode()


def produce_lines(bootstrap: str, topic: str, lines: list[str], *args: str) -> None:
    kcat(bootstrap, "-P", "-t", topic, "-p", "0", *args, stdin="".join(f"{x}\n" for x in lines))


def consume_formatted(bootstrap: str, topic: str, fmt: str) -> list[str]:
    output = kcat(bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-f", fmt)
    return output.splitlines()


def consume_json(bootstrap: str, topic: str, *args: str) -> list[dict[str, Any]]:
    output = kcat(bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-J", *args)
    return [json.loads(line) for line in output.splitlines()]


def header_args(headers: list[str]) -> list[str]:
    return [arg for header in headers for arg in ("-H", header)]


@pytest.mark.parametrize("codec", list(CODECS))
def test_produce_and_consume_with_each_codec(
    kafka_server: ServerProcess, topic: str, codec: str
) -> None:
    before = int(time.time() * 1000)
    # A linger longer than kcat takes to read its input: one batch.
    produce_lines(
        kafka_server.bootstrap,
        topic,
        LINES,
        *("-K", ":", "-z", codec, "-X", "linger.ms=500"),
        *header_args(HEADERS),
    )
    after = int(time.time() * 1000)

    lines = consume_formatted(kafka_server.bootstrap, topic, "%p|%o|%K|%k|%S|%s|%h|%T\\n")
    headers = "a=1,a=2,null=NULL,empty=,eq=x=y"
    expected = []
    for offset, line in enumerate(LINES):
        key, value = line.split(":", 1)
        key_size, value_size = len(key.encode()), len(value.encode())
        expected.append(f"0|{offset}|{key_size}|{key}|{value_size}|{value}|{headers}")
    assert [line.rsplit("|", 1)[0] for line in lines] == expected
    for line in lines:
        assert before <= int(line.rsplit("|", 1)[1]) <= after
    assert stored_batch_codecs(kafka_server.bootstrap, topic, 0) == [CODECS[codec]]


def test_consume_json_envelope(kafka_server: ServerProcess, topic: str) -> None:
    produce_lines(kafka_server.bootstrap, topic, LINES, "-K", ":", *header_args(HEADERS))
    records = consume_json(kafka_server.bootstrap, topic)
    headers = ["a", "1", "a", "2", "null", None, "empty", "", "eq", "x=y"]
    assert [{k: v for k, v in record.items() if k != "ts"} for record in records] == [
        {
            "topic": topic,
            "partition": 0,
            "offset": offset,
            "tstype": "create",
            "broker": 1,
            "headers": headers,
            "key": line.split(":", 1)[0],
            "payload": line.split(":", 1)[1],
        }
        for offset, line in enumerate(LINES)
    ]


def test_records_from_confluent_kafka_read_by_kcat(kafka_server: ServerProcess, topic: str) -> None:
    records = [
        Sent(0, None, b"no key", [], BASE_TIMESTAMP),
        Sent(0, b"no value", None, [("h", b"v")], BASE_TIMESTAMP + 7),
        Sent(0, None, None, [("h", None), ("h", b"")], BASE_TIMESTAMP - 1),
        Sent(0, b"k", b"v", [], BASE_TIMESTAMP + 2**33),
    ]
    produce_all(make_producer(kafka_server.bootstrap, **{"linger.ms": 5}), topic, records)

    assert [
        (r["offset"], r["tstype"], r["ts"], r["key"], r["payload"], r.get("headers"))
        for r in consume_json(kafka_server.bootstrap, topic)
    ] == [
        (0, "create", BASE_TIMESTAMP, None, "no key", None),
        (1, "create", BASE_TIMESTAMP + 7, "no value", None, ["h", "v"]),
        (2, "create", BASE_TIMESTAMP - 1, None, None, ["h", None, "h", ""]),
        (3, "create", BASE_TIMESTAMP + 2**33, "k", "v", None),
    ]
    assert consume_formatted(kafka_server.bootstrap, topic, "%K %S\\n") == [
        "-1 6",
        "8 -1",
        "-1 -1",
        "1 1",
    ]


def test_metadata_lists_the_broker_and_partitions(kafka_server: ServerProcess, topic: str) -> None:
    create_topic(make_admin(kafka_server.bootstrap), topic, partitions=3)
    metadata = json.loads(kcat(kafka_server.bootstrap, "-L", "-J", "-t", topic))
    assert metadata["brokers"] == [{"id": 1, "name": kafka_server.bootstrap}]
    assert metadata["controllerid"] == 1
    one = {"leader": 1, "replicas": [{"id": 1}], "isrs": [{"id": 1}]}
    assert metadata["topics"] == [
        {"topic": topic, "partitions": [{"partition": p, **one} for p in range(3)]}
    ]

    everything = json.loads(kcat(kafka_server.bootstrap, "-L", "-J"))
    assert topic in {t["topic"] for t in everything["topics"]}


def test_query_offsets_by_timestamp(kafka_server: ServerProcess, topic: str) -> None:
    create_topic(make_admin(kafka_server.bootstrap), topic, partitions=2)
    records = [Sent(i % 2, None, f"v{i}".encode(), [], BASE_TIMESTAMP + i * 10) for i in range(20)]
    produce_all(make_producer(kafka_server.bootstrap), topic, records)

    def query(partition: int, timestamp: int) -> str:
        return kcat(kafka_server.bootstrap, "-Q", "-t", f"{topic}:{partition}:{timestamp}")

    # Partition 0 holds even i at offset i/2, partition 1 odd i at (i-1)/2.
    assert query(0, BASE_TIMESTAMP + 45).split() == [topic, "[0]", "offset", "3"]
    assert query(1, BASE_TIMESTAMP + 10).split() == [topic, "[1]", "offset", "0"]
    assert query(0, 1).split() == [topic, "[0]", "offset", "0"]
    assert query(1, BASE_TIMESTAMP + 10**6).split() == [topic, "[1]", "offset", "-1"]

    from_time = kcat(
        kafka_server.bootstrap,
        *("-C", "-t", topic, "-p", "0", "-o", f"s@{BASE_TIMESTAMP + 140}", "-e", "-f", "%s\\n"),
    )
    assert from_time.split() == ["v14", "v16", "v18"]


class Lines:
    """The lines a child process prints, read by a thread so that waiting
    for one can time out."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        self.stream = process.stdout
        self.queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.stream:
            self.queue.put(line.decode().rstrip("\n"))

    def take(self, count: int, timeout: float = TIMEOUT) -> list[str]:
        deadline = time.monotonic() + timeout
        lines = []
        for _ in range(count):
            try:
                lines.append(self.queue.get(timeout=max(deadline - time.monotonic(), 0.01)))
            except queue.Empty:
                pytest.fail(f"{len(lines)} of {count} lines in {timeout} s: {lines}")
        return lines


def test_kcat_data_and_consumer_across_a_restart(own_server: ServerProcess, topic: str) -> None:
    produce_lines(own_server.bootstrap, topic, ["a:1", "b:2", "c:3"], "-K", ":", "-z", "zstd")
    # -E: a lost connection is not a reason to exit; the consumer reconnects.
    consumer = subprocess.Popen(
        [
            "kcat",
            *("-b", own_server.bootstrap, "-X", "log_level=0", "-E", "-C", "-t", topic),
            *("-o", "beginning", "-c", "6", "-u", "-f", "%o %k %s\\n"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        lines = Lines(consumer)
        assert lines.take(3) == ["0 a 1", "1 b 2", "2 c 3"]

        own_server.restart()

        assert consume_formatted(own_server.bootstrap, topic, "%o %k %s\\n") == [
            "0 a 1",
            "1 b 2",
            "2 c 3",
        ]
        produce_lines(own_server.bootstrap, topic, ["d:4", "e:5", "f:6"], "-K", ":")
        assert lines.take(3) == ["3 d 4", "4 e 5", "5 f 6"]
        assert consumer.wait(TIMEOUT) == 0
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
