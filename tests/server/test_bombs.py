"""Compressed batches as an attacker sends them, over a real socket to
``python -m engine serve``: decompression bombs of every codec and snappy
length claims, a batch lying about its record count, and records breaking a
topic's rules. Each gets the Kafka error a broker would send (with
``record_errors`` naming the records where the fault is theirs), the server's
peak RSS stays far below what the bombs inflate to, and a canary producer
and consumer (librdkafka) see no error throughout."""

from __future__ import annotations

import datetime
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import native
from engine.protocol.apis import request_schema
from native.records import Compression, RecordSpec
from tests.native import bombs
from tests.server.conftest import ServerProcess, quiet_librdkafka
from tests.server.wire import Wire, build

NONE = 0
CORRUPT_MESSAGE = 2
INVALID_TIMESTAMP = 32
INVALID_RECORD = 87
LATEST = -1

HEADROOM = 256 * bombs.MIB
"""The most the server's peak RSS may grow while refusing bombs that inflate
to 200 MiB .. 10 GiB (its inflation limit is 32 MiB on a default topic)."""

T0 = 1_700_000_000_000
DEFAULT_LIMIT = 32 * 1048588
"""32 x a default topic's max.message.bytes."""


# -- requests ------------------------------------------------------------------------------


def produce(topic: str, records: bytes) -> Any:
    return build(
        request_schema(0, 9),
        acks=-1,
        timeout=datetime.timedelta(seconds=10),
        topic_data=[{"name": topic, "partition_data": [{"index": 0, "records": records}]}],
    )


def create_topic(topic: str, **configs: str) -> Any:
    return build(
        request_schema(19, 7),
        topics=[
            {
                "name": topic,
                "num_partitions": 1,
                "replication_factor": -1,
                "configs": [{"name": k.replace("_", "."), "value": v} for k, v in configs.items()],
            }
        ],
        timeout=datetime.timedelta(seconds=10),
        validate_only=False,
    )


def alter_topic(topic: str, **configs: str) -> Any:
    return build(
        request_schema(33, 2),
        resources=[
            {
                "resource_type": 2,
                "resource_name": topic,
                "configs": [{"name": k.replace("_", "."), "value": v} for k, v in configs.items()],
            }
        ],
        validate_only=False,
    )


def list_offset(topic: str, timestamp: int) -> Any:
    return build(
        request_schema(2, 6),
        replica_id=-1,
        isolation_level=0,
        topics=[
            {
                "name": topic,
                "partitions": [
                    {"partition_index": 0, "current_leader_epoch": -1, "timestamp": timestamp}
                ],
            }
        ],
    )


def answer(wire: Wire, request: Any) -> Any:
    """The one partition's answer to a Produce or ListOffsets request."""
    response = wire.request(request)
    if hasattr(response, "responses"):
        return response.responses[0].partition_responses[0]
    return response.topics[0].partitions[0]


def new_topic(wire: Wire, **configs: str) -> str:
    topic = f"t-{uuid.uuid4().hex[:12]}"
    result = wire.request(create_topic(topic, **configs)).topics[0]
    assert result.error_code == NONE, result.error_message
    return topic


def server_peak(server: ServerProcess) -> int:
    assert server.process is not None
    return bombs.vm_hwm_bytes(server.process.pid)


# -- the canary ---------------------------------------------------------------------------


class Canary:
    """A librdkafka producer sending numbered records every few milliseconds
    from its own thread; afterwards a consumer must read every one back."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, **quiet_librdkafka()}
        )
        self.errors: list[str] = []
        self.delivered = 0
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="canary", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.producer.produce(self.topic, str(self.sent).encode(), on_delivery=self._delivery)
            self.sent += 1
            self.producer.poll(0.01)

    def _delivery(self, error: Any, _message: Any) -> None:
        if error is not None:
            self.errors.append(str(error))
        else:
            self.delivered += 1

    def start(self) -> Canary:
        self._thread.start()
        deadline = time.monotonic() + 30
        while self.delivered == 0 and not self.errors and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.delivered > 0, f"the canary cannot produce: {self.errors}"
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive()

    def stop_and_check(self) -> None:
        self.stop()
        assert self.producer.flush(30) == 0
        assert self.errors == []
        assert self.delivered == self.sent
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"canary-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                **quiet_librdkafka(),
            }
        )
        try:
            consumer.assign([TopicPartition(self.topic, 0, 0)])
            values: list[int] = []
            deadline = time.monotonic() + 60
            while len(values) < self.sent and time.monotonic() < deadline:
                message = consumer.poll(1.0)
                if message is None:
                    continue
                assert message.error() is None, message.error()
                values.append(int(message.value()))
            assert values == list(range(self.sent))
        finally:
            consumer.close()


@contextmanager
def canary(server: ServerProcess) -> Iterator[Canary]:
    with Wire(server.bootstrap) as wire:
        topic = new_topic(wire)
    running = Canary(server.bootstrap, topic).start()
    try:
        yield running
    except BaseException:
        running.stop()
        raise
    running.stop_and_check()


# -- bombs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(bombs.BOMBS))
def test_a_bomb_is_refused_as_corrupt_and_the_server_stays_small(
    kafka_server: ServerProcess, name: str
) -> None:
    batch = bombs.bomb_batch(name)
    with Wire(kafka_server.bootstrap, timeout=30) as wire, canary(kafka_server):
        topic = new_topic(wire)
        peak = server_peak(kafka_server)
        for _ in range(3):
            refused = answer(wire, produce(topic, batch))
            assert refused.error_code == CORRUPT_MESSAGE
            assert f"inflates past the limit of {DEFAULT_LIMIT} bytes" in refused.error_message
        assert server_peak(kafka_server) < peak + HEADROOM
        assert answer(wire, list_offset(topic, LATEST)).offset == 0
    assert kafka_server.running, kafka_server.log()


def test_a_bomb_is_refused_before_a_topic_re_encodes_it(kafka_server: ServerProcess) -> None:
    """A topic whose compression.type is not the batch's decodes it to
    re-encode it: the bomb is refused first, at the same limit."""
    batch = bombs.bomb_batch("zstd")
    with Wire(kafka_server.bootstrap, timeout=30) as wire, canary(kafka_server):
        topic = new_topic(wire, compression_type="lz4")
        peak = server_peak(kafka_server)
        refused = answer(wire, produce(topic, batch))
        assert refused.error_code == CORRUPT_MESSAGE
        assert server_peak(kafka_server) < peak + HEADROOM
        good = native.encode_batch([RecordSpec(T0, b"k", b"v")], compression=Compression.ZSTD)
        assert answer(wire, produce(topic, good)).base_offset == 0


def test_a_batch_lying_about_its_record_count_moves_no_offsets(
    kafka_server: ServerProcess,
) -> None:
    area = native.encode_batch([RecordSpec(T0, b"k", b"v")])[native.records.HEADER_SIZE :]
    liar = bombs.wrap(
        Compression.LZ4,
        native.compression.compress(Compression.LZ4, area),
        1_000_000_000,
    )
    with Wire(kafka_server.bootstrap) as wire, canary(kafka_server):
        topic = new_topic(wire)
        refused = answer(wire, produce(topic, liar))
        assert refused.error_code == INVALID_RECORD
        assert "recordCount 1000000000, its records hold 1" in refused.error_message
        good = native.encode_batch([RecordSpec(T0, b"k", b"v")], compression=Compression.LZ4)
        assert answer(wire, produce(topic, good)).base_offset == 0
        assert answer(wire, list_offset(topic, LATEST)).offset == 1


# -- record_errors -------------------------------------------------------------------------

KEYLESS = [
    RecordSpec(T0, b"a", b"1"),
    RecordSpec(T0, None, b"2"),
    RecordSpec(T0, b"c", b"3"),
    RecordSpec(T0, None, b"4"),
]


@pytest.mark.parametrize("codec", [Compression.NONE, Compression.LZ4, Compression.ZSTD])
def test_keyless_records_on_a_compacted_topic_are_named(
    kafka_server: ServerProcess, codec: Compression
) -> None:
    with Wire(kafka_server.bootstrap) as wire:
        topic = new_topic(wire, cleanup_policy="compact")
        refused = answer(wire, produce(topic, native.encode_batch(KEYLESS, compression=codec)))
        assert refused.error_code == INVALID_RECORD
        # Kafka's LogValidator words, and its batch message (processRecordErrors).
        message = f"Compacted topic cannot accept message without key in topic partition {topic}-0"
        assert [(e.batch_index, e.batch_index_error_message) for e in refused.record_errors] == [
            (1, message),
            (3, message),
        ]
        assert refused.error_message == (
            "One or more records have been rejected due to 2 record errors in total, and only "
            f"showing the first three errors at most: [RecordError(batchIndex=1, message="
            f"'{message}'), RecordError(batchIndex=3, message='{message}')]"
        )
        keyed = [spec._replace(key=b"k") for spec in KEYLESS]
        accepted = answer(wire, produce(topic, native.encode_batch(keyed, compression=codec)))
        assert (accepted.error_code, accepted.base_offset) == (NONE, 0)


@pytest.mark.parametrize("codec", [Compression.NONE, Compression.GZIP])
def test_records_outside_the_timestamp_bounds_are_named(
    kafka_server: ServerProcess, codec: Compression
) -> None:
    now = int(time.time() * 1000)
    specs = [RecordSpec(now, b"k", b"1"), RecordSpec(now - 7_200_000, b"k", b"2")]
    with Wire(kafka_server.bootstrap) as wire:
        topic = new_topic(wire, message_timestamp_before_max_ms="3600000")
        refused = answer(wire, produce(topic, native.encode_batch(specs, compression=codec)))
        assert refused.error_code == INVALID_TIMESTAMP
        assert [e.batch_index for e in refused.record_errors] == [1]
        assert refused.record_errors[0].batch_index_error_message.startswith(
            f"Timestamp {now - 7_200_000} of message with offset 1 is out of range. "
            "The timestamp should be within ["
        )
        assert refused.error_message == (
            "One or more records have been rejected due to invalid timestamp"
        )


# -- a stored batch past the limit, after a restart ----------------------------------------


def test_list_offsets_by_time_refuses_a_stored_batch_past_the_topics_limit(
    own_server: ServerProcess,
) -> None:
    """A batch stored when the topic allowed it, searched by time after the
    topic's max.message.bytes shrank and the server restarted: refused as
    corrupt, within the new limit, and the server keeps serving."""
    inflated = native.encode_batch(
        [RecordSpec(T0 + 10, b"k", bytes(20 * bombs.MIB))], compression=Compression.ZSTD
    )
    with Wire(own_server.bootstrap, timeout=30) as wire:
        topic = new_topic(wire)
        first = native.encode_batch([RecordSpec(T0, b"k", b"v")])
        assert answer(wire, produce(topic, first)).error_code == NONE
        assert answer(wire, produce(topic, inflated)).error_code == NONE
        altered = wire.request(alter_topic(topic, max_message_bytes="16384")).responses[0]
        assert altered.error_code == NONE, altered.error_message
    own_server.restart()
    with Wire(own_server.bootstrap, timeout=30) as wire, canary(own_server):
        peak = server_peak(own_server)
        refused = answer(wire, list_offset(topic, T0 + 5))
        assert refused.error_code == CORRUPT_MESSAGE
        assert answer(wire, list_offset(topic, T0)).offset == 0
        assert answer(wire, list_offset(topic, LATEST)).offset == 2
        assert server_peak(own_server) < peak + 16 * bombs.MIB
