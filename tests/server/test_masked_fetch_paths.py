"""The Fetch path's masking choices (engine/server/masked_fetch.py), on a
wire server in this process with kafka-python: with no authorizer everyone
reads masked (fail closed); a super user reads in clear; a masked batch
that grows past a partition's max bytes still lets a consumer through the
whole log; an unmasked topic beside it is read as stored; a batch that
cannot be masked is refused, never sent in clear."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

import engine
import native
from engine.config import ConfigSource
from engine.protocol.apis import ApiKey, load_request_schema
from engine.protocol.kafka_code import KafkaCode
from engine.server.config import ServerConfig
from engine.server.handlers.configs import masking_applies_entry
from native import RecordSpec
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire, build, fetch_from_start

RULES = json.dumps([{"path": "/name", "action": "hash"}, {"path": "/email", "action": "redact"}])
ADMIN = "User:admin"


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[engine.Engine]:
    e = engine.open(tmp_path / "node")
    e.create_topic("masked", 1, {"tidelog.masking.rules": RULES})
    e.create_topic("plain", 1)
    with e.producer(linger_ms=0) as producer:
        for i in range(40):
            document = {"name": f"n{i}", "email": f"{i}@example.com"}
            producer.send("masked", json.dumps(document).encode()).result(30)
            producer.send("plain", json.dumps(document).encode()).result(30)
    yield e
    e.close()


def _serve(opened: engine.Engine, **options: Any) -> Iterator[InProcessServer]:
    server = InProcessServer(opened, **options)
    try:
        yield server
    finally:
        server.stop()


def _read(
    bootstrap: str, topic: str, count: int, partitions: int = 1, **config: Any
) -> list[bytes]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **config,
    )
    consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
    values: list[bytes] = []
    try:
        for _ in range(60):
            for batch in consumer.poll(timeout_ms=500).values():
                values += [record.value for record in batch]
            if len(values) >= count:
                break
    finally:
        consumer.close()
    return values


def _stored(opened: engine.Engine, topic: str) -> list[bytes]:
    return [r.value for r in engine_records(opened, topic)]


def engine_records(opened: engine.Engine, topic: str) -> list[Any]:
    fetched = opened.fetch(topic, 0, 0, 1 << 20)
    return [r for batch in fetched.records for r in native.decode_records(batch)]


def test_without_an_authorizer_everyone_reads_masked(opened: engine.Engine) -> None:
    for server in _serve(opened):
        values = _read(server.bootstrap, "masked", 40)
        assert len(values) == 40
        assert all(json.loads(v)["email"] == "***" for v in values)
        assert all(b"example.com" not in v for v in values)
        assert _read(server.bootstrap, "plain", 40) == _stored(opened, "plain")
    assert b"@example.com" in _stored(opened, "masked")[0]  # masking stored nothing


def test_a_super_user_reads_in_clear(opened: engine.Engine) -> None:
    config = ServerConfig(authorizer="acl", super_users=(ADMIN,))
    for server in _serve(opened, config=config, principal=ADMIN):
        assert _read(server.bootstrap, "masked", 40) == _stored(opened, "masked")


def test_batches_that_grow_past_the_partition_limit_are_all_read(opened: engine.Engine) -> None:
    stored = sum(len(batch) for batch in opened.fetch("masked", 0, 0, 1 << 20).records)
    for server in _serve(opened):
        # each fetch may carry a few stored batches, which grow when masked
        values = _read(server.bootstrap, "masked", 40, max_partition_fetch_bytes=stored // 8)
        assert len(values) == 40
        names = [json.loads(v)["name"] for v in values]
        assert len(set(names)) == 40 and all(len(name) == 32 for name in names)


def _fetch(bootstrap: str, topic: str) -> Any:
    with Wire(bootstrap) as wire:
        return wire.request(fetch_from_start(topic))


def test_a_batch_that_cannot_be_masked_is_answered_corrupt_message(
    opened: engine.Engine,
) -> None:
    big = json.dumps({"email": "ann@example.com", "pad": "0" * (2 << 20)})
    with opened.producer(compression="gzip") as producer:
        producer.send("masked", big.encode()).result(30)
    # a lower limit afterwards: the stored batch inflates past what may be decoded
    opened.alter_configs("masked", {"max.message.bytes": "1000"})
    for server in _serve(opened):
        answer = _fetch(server.bootstrap, "masked")
        partition = answer.responses[0].partitions[0]
        assert partition.error_code == KafkaCode.CORRUPT_MESSAGE
        assert not partition.records
        assert _fetch(server.bootstrap, "plain").responses[0].partitions[0].records  # served on


def _appended_as_runs(opened: engine.Engine, topic: str, partitions: int) -> int:
    """Sixteen one-record batches in one append (an embedded append of
    several) to each partition of a new masked ``topic``; the append's size."""
    opened.create_topic(topic, partitions, {"tidelog.masking.rules": RULES})
    run = b"".join(
        native.encode_batch(
            [RecordSpec(1_700_000_000_000, None, json.dumps({"name": f"r{i}"}).encode(), ())]
        )
        for i in range(16)
    )
    for partition in range(partitions):
        opened.produce(topic, partition, run)
    return len(run)


def _fetch_partitions(topic: str, partitions: int, max_bytes: int, partition_max: int) -> Any:
    return build(
        load_request_schema(ApiKey.FETCH, 11),
        replica_id=-1,
        max_wait=datetime.timedelta(0),
        min_bytes=0,
        max_bytes=max_bytes,
        isolation_level=0,
        session_epoch=-1,
        topics=[
            {
                "topic": topic,
                "partitions": [
                    {"partition": p, "fetch_offset": 0, "partition_max_bytes": partition_max}
                    for p in range(partitions)
                ],
            }
        ],
    )


@pytest.mark.parametrize(
    ("share", "partition_share"),
    [pytest.param(1, 1, id="the-response-binds"), pytest.param(4, 1 / 2, id="a-partition-binds")],
)
def test_a_masked_answer_keeps_whole_batches_within_max_bytes(
    opened: engine.Engine, share: float, partition_share: float
) -> None:
    """Kafka's rule for the grown batches of a stored append too: whole
    batches up to the partition's and the response's max_bytes, only the
    first batch of the answer sent whatever its size."""
    stored = _appended_as_runs(opened, "runs", 2)
    max_bytes, partition_max = int(stored * share), int(stored * partition_share)
    for server in _serve(opened):
        with Wire(server.bootstrap) as wire:
            answer = wire.request(_fetch_partitions("runs", 2, max_bytes, partition_max))
        partitions = [bytes(p.records or b"") for p in answer.responses[0].partitions]
        assert partitions[0], "the first partition sends at least its first batch"
        for records in partitions:
            assert len(records) <= partition_max
            for value in (r.value for r in native.decode_records(records)):
                assert len(json.loads(value)["name"]) == 32  # masked
        assert sum(map(len, partitions)) <= max_bytes
        # Where an answer stopped, the next fetch goes on: every record, in order.
        values = _read(
            server.bootstrap,
            "runs",
            32,
            partitions=2,
            fetch_max_bytes=max_bytes,
            max_partition_fetch_bytes=partition_max,
        )
        assert sorted(len(json.loads(v)["name"]) for v in values) == [32] * 32


@pytest.mark.parametrize("applies", [True, False])
def test_masking_applies_is_default_as_its_source_says(applies: bool) -> None:
    """tidelog.masking.applies has the DEFAULT source (no config sets it),
    and its is_default agrees, whichever value the asker gets."""
    entry = masking_applies_entry(applies)
    assert entry.value == ("true" if applies else "false")
    assert entry.source is ConfigSource.DEFAULT
    assert entry.is_default
