"""An acks=0 producer through an object-store outage: producers with
answers are paced by them (an append past ``max_unuploaded_bytes`` is
answered once there is room), but an acks=0 Produce has no answer to
delay, so without more a client could grow the WAL and the log cache
without end while the store is down. Past the bound, an acks=0 Produce's
connection reads nothing more until its appends are durable (after their
wait for room): the unuploaded bytes stay within one request of the
bound, and nothing the client sent is lost once the store heals."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

from confluent_kafka import Producer

import engine
from s3stream.store import LocalStore
from tests.s3stream.faults import FaultyStore
from tests.server.conftest import quiet_librdkafka
from tests.server.in_process import InProcessServer

TIMEOUT = 30.0
BOUND = 256 * 1024
BATCH = 64 * 1024
RECORD = b"x" * 4096
RECORDS = 1024  # 4 MiB: sixteen times the bound
_SMALL = engine.EngineConfig.small()
CONFIG = replace(
    _SMALL,
    store=replace(
        _SMALL.store, max_unuploaded_bytes=BOUND, upload_bytes=64 * 1024, upload_interval_s=0.05
    ),
)


def test_an_acks_zero_producer_is_held_past_the_unuploaded_bound(tmp_path: Path) -> None:
    faulty = FaultyStore(LocalStore(tmp_path / "objects"))
    e = engine.open(tmp_path / "node", faulty, CONFIG)
    server = InProcessServer(e)
    most = 0
    watching = True

    def watch() -> None:
        nonlocal most
        while watching:
            most = max(most, e.store.log_cache_usage().unuploaded_bytes)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    try:
        e.create_topic("t", 1)
        faulty.fail("put")  # nothing is uploaded from now on
        watcher.start()
        producer = Producer(
            {
                "bootstrap.servers": server.bootstrap,
                "acks": 0,
                "linger.ms": 1,
                "batch.size": BATCH,
                "queue.buffering.max.kbytes": 8 * 1024,
                **quiet_librdkafka(),
            }
        )
        for _ in range(RECORDS):
            producer.produce("t", RECORD, partition=0)
        producer.poll(0)
        # The client sends what it can; the server takes it only as room
        # allows, and none comes while the store is down. It passes the
        # bound (however slowly a loaded machine sends), then has a while
        # more to send the rest.
        deadline = time.monotonic() + TIMEOUT
        while e.store.log_cache_usage().unuploaded_bytes <= BOUND:
            assert time.monotonic() < deadline, "the producer never passed the bound"
            producer.poll(0.05)
        more = time.monotonic() + 3.0
        while time.monotonic() < more:
            producer.poll(0.05)
        assert most <= BOUND + 2 * (BATCH + 4096), most
        assert e.offsets("t", 0)[1] < RECORDS // 2  # held, not taken

        faulty.heal()  # uploads resume: the rest is taken, nothing lost
        assert producer.flush(TIMEOUT) == 0
        deadline = time.monotonic() + TIMEOUT
        while e.offsets("t", 0)[1] < RECORDS:
            assert time.monotonic() < deadline, e.offsets("t", 0)[1]
            time.sleep(0.05)
        assert e.offsets("t", 0)[1] == RECORDS
    finally:
        watching = False
        faulty.heal()
        server.stop()
        e.close()
