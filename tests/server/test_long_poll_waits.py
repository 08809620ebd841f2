"""A long-polling Fetch of many partitions on the wire: woken by the one
that grows, by a commit marker under read_committed, and leaving no wait
registered once its client is gone (docs/design/0082)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kio.static.primitive import i8

import engine
from tests.server.in_process import InProcessServer
from tests.server.long_polls import HOUR_MS, registered, until
from tests.server.wire import Wire, fetch_each, response_schema_for

PARTITIONS = 200
TIMEOUT = 30.0


def test_a_record_on_one_partition_answers_the_long_poll(tmp_path: Path) -> None:
    with engine.open(tmp_path / "data", config=engine.EngineConfig.small()) as opened:
        opened.create_topic("t", PARTITIONS)
        with InProcessServer(opened) as server, Wire(server.bootstrap, timeout=TIMEOUT) as wire:
            fetch = fetch_each(
                11, [("t", p, 0) for p in range(PARTITIONS)], max_wait_ms=HOUR_MS, min_bytes=1
            )
            sent = wire.send(fetch)
            until(lambda: registered(opened) == 1, "the fetch never waited")
            with opened.producer() as producer:
                producer.send("t", b"grown", partition=123).result(TIMEOUT)
            answered, response = wire.receive(response_schema_for(fetch))
            until(lambda: registered(opened) == 0, "the fetch's wait stayed registered")
    assert answered == sent
    with_records = [
        (topic_index, partition.partition_index)
        for topic_index, topic in enumerate(response.responses)
        for partition in topic.partitions
        if partition.records
    ]
    assert [partition for _, partition in with_records] == [123]


def test_a_commit_marker_answers_a_read_committed_long_poll(tmp_path: Path) -> None:
    with engine.open(tmp_path / "data", config=engine.EngineConfig.small()) as opened:
        opened.create_topic("t", 1)
        with (
            opened.producer(transactional_id="tx") as producer,
            InProcessServer(opened) as server,
            Wire(server.bootstrap, timeout=TIMEOUT) as wire,
        ):
            producer.init_transactions()
            producer.begin_transaction()
            producer.send("t", b"pending", partition=0).result(TIMEOUT)
            fetch = fetch_each(11, [("t", 0, 0)], max_wait_ms=HOUR_MS, min_bytes=1)
            fetch = dataclasses.replace(fetch, isolation_level=i8(1))
            sent = wire.send(fetch)
            until(lambda: registered(opened) == 1, "the fetch never waited")
            producer.commit_transaction(TIMEOUT)
            answered, response = wire.receive(response_schema_for(fetch))
    assert answered == sent
    ((partition,),) = [topic.partitions for topic in response.responses]
    assert partition.records
    assert partition.last_stable_offset == 2  # the record and its commit marker


def test_a_client_gone_mid_wait_leaves_no_wait_registered(tmp_path: Path) -> None:
    with engine.open(tmp_path / "data", config=engine.EngineConfig.small()) as opened:
        opened.create_topic("t", PARTITIONS)
        with InProcessServer(opened) as server:
            for _ in range(3):
                wire = Wire(server.bootstrap, timeout=TIMEOUT)
                fetch = fetch_each(
                    11, [("t", p, 0) for p in range(PARTITIONS)], max_wait_ms=HOUR_MS, min_bytes=1
                )
                wire.send(fetch)
                until(lambda: registered(opened) == 1, "the fetch never waited")
                wire.close()
                until(lambda: registered(opened) == 0, "a gone client's wait stayed registered")
