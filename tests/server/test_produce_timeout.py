"""A produce that cannot become durable within the request's timeout_ms is
answered REQUEST_TIMED_OUT (Kafka's DelayedProduce), not held forever: here
a remote-durability topic whose object store refuses every put. The append
is kept, and is acknowledged once the store is back."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import KafkaError, Message, Producer

from tests.engine.helpers_records import read_partition
from tests.server.conftest import quiet_librdkafka
from tests.server.remote_stuck import remote_stuck


def test_a_remote_ack_the_store_cannot_give_times_out_and_the_append_is_kept(
    tmp_path: Path,
) -> None:
    with remote_stuck(tmp_path) as (server, faulty, opened):
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
