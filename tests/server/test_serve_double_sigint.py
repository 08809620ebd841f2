"""``tidelog serve`` sent Ctrl-C twice, at random points of its shutdown, while
a client produces: it exits, and a new serve on the same data directory
starts and has every record acknowledged (docs/design/0113).

Under ``tidelog serve`` SIGINT's handler is the event loop's (it sets the
stop event, every time): a second Ctrl-C raises nothing in the close. This
holds it with real signals, a real client and a real restart."""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer
from kafka import KafkaConsumer

from tests.server.conftest import ServerProcess, quiet_librdkafka

TOPIC = "interrupted"


def _produce_until_refused(bootstrap: str, acked: list[bytes], stop: threading.Event) -> None:
    """Sends one record at a time (acks=all, no retries), keeping those
    acknowledged, until the server stops answering."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": False,
            "retries": 0,
            "message.timeout.ms": 5_000,
            **quiet_librdkafka(),
        }
    )
    for i in range(1_000_000):
        if stop.is_set():
            break
        value = f"record-{i}".encode()
        delivered: list[bool] = []
        producer.produce(
            TOPIC, value, on_delivery=lambda error, _, d=delivered: d.append(not error)
        )
        producer.flush(10)
        if delivered != [True]:
            break  # the server is going: nothing more is acknowledged
        acked.append(value)
    producer.flush(10)


def _read_all(bootstrap: str, wanted: set[bytes]) -> list[bytes]:
    """The topic's records from the start, until every one of ``wanted``
    is read (records written but never acknowledged may come among them)
    or the deadline."""
    consumer = KafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=5_000,
    )
    try:
        read: list[bytes] = []
        deadline = time.monotonic() + 60
        unread = set(wanted)
        # The consumer's iterator ends only after consumer_timeout_ms without
        # a record: leave it as soon as the last wanted record is read, not
        # 5 s later.
        while unread and time.monotonic() < deadline:
            for message in consumer:
                read.append(message.value)
                unread.discard(message.value)
                if not unread:
                    break
        return read
    finally:
        consumer.close()


@pytest.mark.parametrize("seed", range(4))
def test_serve_sent_sigint_twice_exits_and_keeps_every_acknowledged_record(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    server = ServerProcess(tmp_path / "data").start()
    acked: list[bytes] = []
    stop = threading.Event()
    producing = threading.Thread(
        target=_produce_until_refused, args=(server.bootstrap, acked, stop)
    )
    try:
        producing.start()
        deadline = time.monotonic() + 30
        while len(acked) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(acked) >= 20, server.log()
        process = server.process
        assert process is not None
        time.sleep(rng.uniform(0.0, 0.3))
        process.send_signal(signal.SIGINT)
        time.sleep(rng.uniform(0.0, 0.5))
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        process.wait(60)
        server.process = None
    finally:
        stop.set()
        producing.join(30)
        server.kill()
    assert "engine closed" in server.log()

    server.start()
    try:
        read = _read_all(server.bootstrap, set(acked))
    finally:
        assert server.stop() == 0, server.log()
    missing = set(acked) - set(read)
    assert not missing, f"{len(missing)} acknowledged records lost: {sorted(missing)[:5]}"
