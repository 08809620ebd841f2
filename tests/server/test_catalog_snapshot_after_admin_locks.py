"""A catalog snapshot made due by an admin write (CreateTopics, on the
server's admin thread) is waited for by that write only once it has
released the engine's lock: the event loop's transactional requests,
which take that lock (Engine.topic_partitions), are answered while the
snapshot is written, and the CreateTopics only once it ended
(docs/design/0122)."""

from __future__ import annotations

import datetime
import json
import select
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import pytest

import engine
from engine import catalog as catalog_module
from engine.protocol.apis import ApiKey, request_schema
from engine.protocol.kafka_code import KafkaCode
from engine.server.registry_config import RegistryConfig
from engine.server.schema_registry import SchemaRegistryServer
from engine.types import TopicPartition
from s3stream import StreamStoreConfig
from tests.server.in_process import InProcessServer
from tests.server.test_catalog_snapshot_off_loop import (
    ANSWER_S,
    SEGMENT,
    WAIT_S,
    HeldSnapshot,
    _acls,
    _answered_within,
)
from tests.server.test_http_listener_limits import running
from tests.server.wire import Wire, build, response_schema_for


@pytest.fixture
def server(tmp_path: Path) -> Iterator[InProcessServer]:
    store = StreamStoreConfig(wal_segment_bytes=SEGMENT)
    config = engine.EngineConfig(store=store, auto_create_topics=True)
    with engine.open(tmp_path / "node", config=config) as opened:
        running = InProcessServer(opened)
        try:
            yield running
        finally:
            running.stop()


HELD_S = 1.0
"""How long the CreateTopics is watched for an answer it must not get yet."""


def _init(wire: Wire) -> Any:
    init = build(request_schema(ApiKey.INIT_PRODUCER_ID, 4), transactional_id="pipeline",
                 transaction_timeout=datetime.timedelta(seconds=60), producer_id=-1,
                 producer_epoch=-1)  # fmt: skip
    answer = wire.request(init)
    assert answer.error_code == KafkaCode.NONE
    return answer


def test_transactional_requests_are_answered_while_a_create_topics_waits_for_its_snapshot(
    server: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = server.server.engine
    catalog = opened.catalog
    opened.create_topic("in", 1)
    for start in range(0, 3200, 800):  # each record under a WAL record: the state past one
        catalog.add_acls(_acls(start, 800))
    stream = catalog.stream_id
    start = opened.store.start_offset(stream)
    with Wire(server.bootstrap) as producer:
        started = _init(producer)
    held = HeldSnapshot(opened.store, stream)
    monkeypatch.setattr(opened.store, "trim", held.trim)
    monkeypatch.setattr(catalog_module, "SNAPSHOT_EVERY", 1)  # the next write makes it due
    create = build(request_schema(ApiKey.CREATE_TOPICS, 7),
                   topics=[{"name": "out", "num_partitions": 1, "replication_factor": 1}],
                   timeout_ms=int(WAIT_S * 1000), validate_only=False)  # fmt: skip
    add = build(request_schema(ApiKey.ADD_PARTITIONS_TO_TXN, 3),
                v3_and_below_transactional_id="pipeline",
                v3_and_below_producer_id=started.producer_id,
                v3_and_below_producer_epoch=started.producer_epoch,
                v3_and_below_topics=[{"name": "in", "partitions": [0]}])  # fmt: skip
    try:
        with Wire(server.bootstrap) as admin, Wire(server.bootstrap) as other:
            admin.send(create)
            assert held.entered.wait(WAIT_S), "no snapshot was made due"
            # The loop takes the engine's lock for the partitions added:
            # not held by the CreateTopics while its snapshot is written.
            added = _answered_within(other, add, ANSWER_S)
            (topic,) = added.results_by_topic_v3_and_below
            assert topic.results_by_partition[0].partition_error_code == KafkaCode.NONE
            # The CreateTopics is answered only once its snapshot ended.
            readable, _, _ = select.select([admin.sock], [], [], HELD_S)
            assert not readable, "CreateTopics answered before its snapshot ended"
            held.released.set()
            created = admin.receive(response_schema_for(create))[1]
            assert [(t.name, t.error_code) for t in created.topics] == [("out", KafkaCode.NONE)]
            assert opened.store.start_offset(stream) > start  # trimmed to the snapshot
    finally:
        held.released.set()
    assert len(held.trimmed_on) == 1
    assert held.trimmed_on[0].startswith("tidelog-catalog-snapshot")


@pytest.mark.parametrize("how", ["create_topic", "auto_create"])
def test_an_embedded_creation_waits_for_its_snapshot_without_the_engines_lock(
    server: InProcessServer, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """The embedded API pays for its snapshot as before (written by the
    time create_topic, or a partition's lookup that creates its topic,
    returns), the engine's lock released before it waits."""
    opened = server.server.engine
    create: Callable[[], object] = (
        partial(opened.create_topic, "embedded", 1)
        if how == "create_topic"
        else partial(opened.partition, "embedded", 0, auto_create=True)
    )
    opened.create_topic("in", 1)
    stream = opened.catalog.stream_id
    start = opened.store.start_offset(stream)
    held = HeldSnapshot(opened.store, stream)
    monkeypatch.setattr(opened.store, "trim", held.trim)
    monkeypatch.setattr(catalog_module, "SNAPSHOT_EVERY", 1)
    with ThreadPoolExecutor(1) as creator:
        try:
            created = creator.submit(create)
            assert held.entered.wait(WAIT_S), "no snapshot was made due"
            with ThreadPoolExecutor(1) as reader:
                partitions = reader.submit(opened.topic_partitions, ["in"])
                assert partitions.result(ANSWER_S) == [TopicPartition("in", 0)]
            assert not created.done(), "create_topic returned before its snapshot ended"
        finally:
            held.released.set()
        created.result(WAIT_S)
    assert opened.store.start_offset(stream) > start


def test_an_embedded_broker_config_change_is_in_force_while_it_waits_for_its_snapshot(
    server: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker config altered through the embedded API is written under
    the broker configs' lock and put in force as that lock is released:
    its snapshot is waited for after, so the change is in force, and
    another alteration of the broker's configs goes ahead, meanwhile."""
    opened = server.server.engine
    stream = opened.catalog.stream_id
    held = HeldSnapshot(opened.store, stream)
    monkeypatch.setattr(opened.store, "trim", held.trim)
    monkeypatch.setattr(catalog_module, "SNAPSHOT_EVERY", 1)
    with ThreadPoolExecutor(1) as altering:
        try:
            altered = altering.submit(
                opened.alter_configs_many, [], [("", {"num.partitions": "3"}, True)]
            )
            assert held.entered.wait(WAIT_S), "no snapshot was made due"
            assert opened.broker_configs.num_partitions == 3
            with ThreadPoolExecutor(1) as other:
                also = other.submit(
                    partial(opened.broker_configs.alter, "", {"max.connections": "100"}),
                    incremental=True,
                    validate_only=False,
                )
                also.result(ANSWER_S)  # behind no snapshot: the worker's is held
            assert not altered.done(), "the alteration returned before its snapshot ended"
        finally:
            held.released.set()
        altered.result(WAIT_S)
    assert opened.broker_configs.max_connections == 100


def _register(port: int, subject: str) -> Any:
    schema = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/subjects/{subject}/versions",
        data=json.dumps({"schema": json.dumps(schema)}).encode(),
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=WAIT_S) as answer:
        return json.loads(answer.read())


def test_a_schema_registration_waits_for_its_snapshot_without_the_registrys_lock(
    server: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A schema registered over the registry's HTTP API is answered only
    once the snapshot it made due ended, the registry's lock (which the
    event loop takes to validate a produce against a schema) released
    meanwhile."""
    opened = server.server.engine
    stream = opened.catalog.stream_id
    held = HeldSnapshot(opened.store, stream)
    monkeypatch.setattr(opened.store, "trim", held.trim)
    monkeypatch.setattr(catalog_module, "SNAPSHOT_EVERY", 1)
    config = RegistryConfig(listen=("127.0.0.1", 0))
    with (
        running(SchemaRegistryServer(opened, config, authenticate=False)) as port,
        ThreadPoolExecutor(1) as client,
    ):
        try:
            registered = client.submit(_register, port, "orders-value")
            assert held.entered.wait(WAIT_S), "no snapshot was made due"
            with ThreadPoolExecutor(1) as reader:
                subjects = reader.submit(opened.schemas.subjects)
                assert subjects.result(ANSWER_S) == ["orders-value"]
            assert not registered.done(), "answered before its snapshot ended"
        finally:
            held.released.set()
        assert registered.result(WAIT_S)["id"] >= 1
