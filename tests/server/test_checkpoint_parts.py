"""Over the wire: a client makes more idempotent producers (InitProducerId
without a transactional id) than one checkpoint record holds; the
partition's checkpoint is written in parts (docs/design/0112), so
DeleteRecords past it is answered, and a restart replays no batch it
covers while every producer's sequences are kept. On a local bucket and
on S3 (moto's server on loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, TopicPartition
from kio.index import load_request_schema
from kio.schema.init_producer_id.v2.request import InitProducerIdRequest

import engine
import native
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from native.records import RecordSpec
from tests.engine.conftest import FAST_STORE
from tests.engine.replays import count_replays
from tests.s3stream.conftest import S3Endpoint, s3_endpoint  # noqa: F401
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire, build

TIMEOUT = 30.0
SEGMENT = 64 * 1024
"""The WAL's segment: a checkpoint past about this much is written in parts."""
PRODUCERS = 1800
"""Enough producers for a checkpoint past one 64 KiB segment."""


class Node:
    """An engine on a data directory and a bucket, served on loopback;
    ``crash`` reopens it without the close's checkpoint, counting what
    the open replayed of t-0."""

    def __init__(self, root: Path, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root, self.bucket = root, bucket
        self.replayed = count_replays(monkeypatch, "t", 0)
        self.open()

    def open(self) -> None:
        config = engine.EngineConfig(
            store=replace(FAST_STORE, wal_segment_bytes=SEGMENT),
            cleaner_interval_s=3600,
            checkpoint_interval_s=3600,
        )
        self.engine = engine.open(self.root / "node", self.bucket, config)
        self.server = InProcessServer(self.engine)

    def crash(self) -> None:
        self.server.stop()
        self.engine.close(flush=False)
        self.open()

    def close(self) -> None:
        self.server.stop()
        self.engine.close()


@pytest.fixture(params=["local", "s3"])
def node(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Node]:
    if request.param == "s3":
        endpoint: S3Endpoint = request.getfixturevalue("s3_endpoint")
        bucket = endpoint.store_url(f"ckpt-{tmp_path.name}")
    else:
        bucket = f"file://{tmp_path / 'bucket'}"
    opened = Node(tmp_path, bucket, monkeypatch)
    try:
        yield opened
    finally:
        opened.close()


def _produce(wire: Wire, pid: int, sequence: int) -> Any:
    """A batch of two records of idempotent producer ``pid`` from
    ``sequence`` to t-0: the partition's answer."""
    spec = RecordSpec(1_700_000_000_000, None, b"v", ())
    records = native.encode_batch(
        [spec, spec], producer_id=pid, producer_epoch=0, base_sequence=sequence
    )
    data = [{"name": "t", "partition_data": [{"index": 0, "records": bytes(records)}]}]
    produce = load_request_schema(ApiKey.PRODUCE, 9)
    request = build(produce, acks=-1, timeout=timedelta(seconds=10), topic_data=data)
    (answer,) = wire.request(request).responses[0].partition_responses
    return answer


def test_delete_records_and_a_restart_keep_thousands_of_producers(node: Node) -> None:
    node.engine.create_topic("t", 1)
    pids: list[int] = []
    with Wire(node.server.bootstrap, timeout=TIMEOUT) as wire:
        for index in range(PRODUCERS):
            init = wire.request(
                InitProducerIdRequest(transactional_id=None, transaction_timeout=timedelta(0))
            )
            assert init.error_code == KafkaCode.NONE
            answer = _produce(wire, init.producer_id, 0)
            assert (answer.error_code, answer.base_offset) == (KafkaCode.NONE, 2 * index)
            pids.append(init.producer_id)
    end = 2 * PRODUCERS
    assert node.engine.partition("t", 0).durable_checkpoint_end < end
    # Past the last checkpoint: the producers are checkpointed first, in parts.
    admin = KafkaAdminClient(bootstrap_servers=node.server.bootstrap)
    try:
        tp = TopicPartition("t", 0)
        assert admin.delete_records({tp: end})[tp]["low_watermark"] == end
    finally:
        admin.close()
    node.crash()
    assert node.replayed[-1] == 0
    with Wire(node.server.bootstrap, timeout=TIMEOUT) as wire:
        for index, pid in enumerate(pids):
            if index % 10 == 0:
                # A retry of its batch is a duplicate, answered with its offset.
                answer = _produce(wire, pid, 0)
                assert (answer.error_code, answer.base_offset) == (KafkaCode.NONE, 2 * index)
        refused = _produce(wire, pids[-1], 5)
        assert refused.error_code == KafkaCode.OUT_OF_ORDER_SEQUENCE_NUMBER
        # The next in order is taken.
        assert _produce(wire, pids[-1], 2).base_offset == end
