"""A produce that cannot become durable within the request's timeout_ms is
answered REQUEST_TIMED_OUT (Kafka's DelayedProduce), not held forever: here
a remote-durability topic whose object store refuses every put. The append
is kept, and is acknowledged once the store is back."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import KafkaError, Message, Producer

import engine
from engine.config import ACK_DURABILITY
from s3stream import StreamStoreConfig
from s3stream.store import open_store
from tests.engine.helpers_records import read_partition
from tests.s3stream.faults import FaultyStore
from tests.server.conftest import quiet_librdkafka
from tests.server.in_process import InProcessServer


def test_a_remote_ack_the_store_cannot_give_times_out_and_the_append_is_kept(
    tmp_path: Path,
) -> None:
    faulty = FaultyStore(open_store("file://" + str(tmp_path / "bucket")))
    config = engine.EngineConfig(
        store=StreamStoreConfig(upload_interval_s=3600, compaction_interval_s=3600)
    )
    opened = engine.open(tmp_path / "node", faulty, config)
    server = InProcessServer(opened)
    try:
        opened.create_topic("remote", 1, configs={ACK_DURABILITY: "remote"})
        faulty.fail("put")
        reports: list[tuple[KafkaError | None, Message]] = []
        producer = Producer(
            {
                "bootstrap.servers": server.bootstrap,
                "acks": "all",
                "request.timeout.ms": 500,
                "message.timeout.ms": 20000,
                "retries": 0,
                **quiet_librdkafka(),
            }
        )
        producer.produce(
            "remote", b"kept", partition=0, on_delivery=lambda e, m: reports.append((e, m))
        )
        assert producer.flush(30) == 0
        [(error, _)] = reports
        assert error is not None and error.code() == KafkaError.REQUEST_TIMED_OUT, error
        faulty.heal()
        assert opened.flush(30)
        assert [r.value for r in read_partition(opened, "remote", 0)] == [b"kept"]
    finally:
        server.stop()
        opened.close()
