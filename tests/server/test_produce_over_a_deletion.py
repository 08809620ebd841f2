"""A one-partition Produce (the handler's AppendSettle, _OneAppend) to a
``remote`` topic, accepted and waiting for its object when the topic is
deleted: answered UNKNOWN_TOPIC_OR_PARTITION, as a Produce to a topic
deleted before its append is (Kafka's ReplicaManager answers a partition
it no longer hosts so, and a client refreshes its metadata on it), never
KAFKA_STORAGE_ERROR; a live topic's failed upload still answers
KAFKA_STORAGE_ERROR (docs/design/0144)."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import pytest

import engine
import native
from engine.protocol.apis import request_schema
from engine.protocol.kafka_code import KafkaCode
from native import RecordSpec
from s3stream import StreamStoreConfig
from s3stream.uploader import Uploader
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire, build, response_schema_for

TIMEOUT = 30.0
BATCH = bytes(native.encode_batch([RecordSpec(0, None, b"waiting", ())]))
PRODUCE = build(
    request_schema(0, 9),
    acks=-1,
    timeout=datetime.timedelta(seconds=TIMEOUT),
    topic_data=[{"name": "r", "partition_data": [{"index": 0, "records": BATCH}]}],
)


def _when_waiting_remote(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set once an append has been accepted and waits for its object."""
    waiting = threading.Event()
    registered = Uploader.wait_remote_locked

    def wait_remote_locked(self: Uploader, stream_id: int, end: int) -> Future[int]:
        uploaded = registered(self, stream_id, end)
        waiting.set()
        return uploaded

    monkeypatch.setattr(Uploader, "wait_remote_locked", wait_remote_locked)
    return waiting


def _produce_code(
    opened: engine.Engine, waiting: threading.Event, accepted: Callable[[], object]
) -> KafkaCode:
    """The Produce's partition's error code, ``accepted`` called once its
    append waits for its object (before it is answered)."""
    server = InProcessServer(opened)
    try:
        with Wire(server.bootstrap) as wire:
            correlation_id = wire.send(PRODUCE)
            assert waiting.wait(TIMEOUT)
            accepted()
            answered, body = wire.receive(response_schema_for(PRODUCE))
            assert answered == correlation_id
    finally:
        server.stop()
    ((partition,),) = [topic.partition_responses for topic in body.responses]
    return KafkaCode(int(partition.error_code))


def _opened(tmp_path: Path, store: StreamStoreConfig) -> engine.Engine:
    opened = engine.open(tmp_path / "node", config=engine.EngineConfig(store=store))
    opened.create_topic("r", 1, {"tidelog.ack.durability": "remote"})
    return opened


def test_a_produce_whose_topic_is_deleted_before_its_object_answers_unknown_topic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiting = _when_waiting_remote(monkeypatch)
    held = StreamStoreConfig(
        upload_interval_s=3600, remote_linger_s=3600, compaction_interval_s=3600
    )  # no upload starts on its own: the deletion fails the wait
    with _opened(tmp_path, held) as opened:
        code = _produce_code(opened, waiting, lambda: opened.delete_topic("r"))
        assert code is KafkaCode.UNKNOWN_TOPIC_OR_PARTITION


def test_a_produce_to_a_live_topic_whose_upload_fails_answers_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failed(*_: object) -> bool:
        raise OSError("the upload failed")

    waiting = _when_waiting_remote(monkeypatch)
    monkeypatch.setattr(Uploader, "_upload", failed)
    opened = _opened(tmp_path, StreamStoreConfig(upload_interval_s=3600))
    try:
        code = _produce_code(opened, waiting, lambda: None)
        assert code is KafkaCode.KAFKA_STORAGE_ERROR
    finally:
        opened.close()  # the store failed, as set up: what it held stays in the WAL
