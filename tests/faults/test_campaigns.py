"""Fault campaigns: records produced while the object store (moto behind the
fault proxy) throttles, resets connections, stalls and loses responses to
requests it performed. Every acknowledged record must come back, once, at
its offset: from the engine that took it, and from a fresh data directory
that has only the bucket (after the engine reported its uploads complete).

Each campaign prints one line of figures (requests, faults by kind, acked,
lost, duplicated). The default run is short; ``TIDELOG_FAULTS=full`` runs
longer campaigns (``TIDELOG_FAULTS_SEED`` picks the proxy's seed).
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from pathlib import Path

import pytest

import engine
from s3stream import StreamStoreConfig
from tests.engine.helpers_records import batch, read_partition
from tests.faults.campaign import Tally, report
from tests.faults.conftest import FULL
from tests.faults.s3_proxy import Fault, S3FaultProxy, any_request, puts_to
from tests.s3stream.conftest import S3Endpoint

STORE = StreamStoreConfig(
    upload_bytes=8 * 1024,
    upload_interval_s=0.05,
    block_bytes=4096,
    wal_segment_bytes=256 * 1024,
    compaction_interval_s=3600,
    checkpoint_every=8,  # checkpoints and their clean-up happen under faults too
)
CONFIG = engine.EngineConfig(store=STORE, cleaner_interval_s=3600)
PARTITIONS = 3
BATCHES = 1500 if FULL else 150
RECORDS_PER_BATCH = 10
PADDING = b"." * 300  # an upload every few batches: many requests to fail
FLUSH_TIMEOUT_S = 120.0

MIXED = {
    Fault.SLOW_DOWN: 0.04,
    Fault.RESET: 0.03,
    Fault.LATENCY: 0.05,
    Fault.LOST_RESPONSE: 0.03,
    Fault.LOST_RESPONSE_500: 0.03,
}
LOST_MANIFEST_WRITES = {Fault.LOST_RESPONSE: 0.25, Fault.LOST_RESPONSE_500: 0.15}
CAMPAIGNS = {
    "mixed": (MIXED, any_request),
    "lost-manifest-writes": (LOST_MANIFEST_WRITES, puts_to("/manifest/")),
}


def read_everything(e: engine.Engine) -> list[tuple[int, int, bytes]]:
    return [
        (p, r.offset, bytes(r.value or b""))
        for p in range(PARTITIONS)
        for r in read_partition(e, "memory", p)
    ]


@pytest.mark.slow
@pytest.mark.parametrize("campaign", CAMPAIGNS)
def test_embedded_engine_loses_nothing_under_store_faults(
    tmp_path: Path,
    faulty_endpoint: S3Endpoint,
    s3_fault_proxy: S3FaultProxy,
    campaign: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rates, match = CAMPAIGNS[campaign]
    url = faulty_endpoint.store_url(f"campaign-{uuid.uuid4().hex}")
    s3_fault_proxy.set_rates(rates, match)
    tally = Tally()
    with engine.open(tmp_path / "node", url, CONFIG) as e:  # opened under faults too
        e.create_topic("memory", PARTITIONS)
        for n in range(BATCHES):
            partition = n % PARTITIONS
            tag = campaign.encode()
            values = [b"%s-%d-%d-%s" % (tag, n, i, PADDING) for i in range(RECORDS_PER_BATCH)]
            result = e.produce("memory", partition, batch(values))
            for i, value in enumerate(values):
                tally.ack(partition, result.base_offset + i, value)
        assert e.flush(timeout=FLUSH_TIMEOUT_S), "the uploads did not complete"
        assert not e.store.fenced
        same = tally.check(read_everything(e))
    assert same == (0, 0)
    with engine.open(tmp_path / "fresh", url, CONFIG) as fresh:  # only the bucket, still faulty
        lost, duplicated = tally.check(read_everything(fresh))
        assert fresh.store.recovery.manifest_conflicts == ()
    s3_fault_proxy.heal()
    with capsys.disabled():
        print("\n" + report(campaign, s3_fault_proxy.stats, tally, lost, duplicated))
    assert s3_fault_proxy.stats.injected > 0
    assert (lost, duplicated) == (0, 0)


SERVER_CONFIG = """
[store]
upload_bytes = 8192
upload_interval_s = 0.05
checkpoint_every = 8
compaction_interval_s = 3600
"""
SERVED_RECORDS = 6000 if FULL else 1500
UNUPLOADED = "tidelog_wal_unuploaded_bytes"
POLL_S = 0.05


def wait_uploaded(metrics_url: str, timeout: float) -> bool:
    """Waits until the server's /metrics report no acknowledged byte left
    outside a committed object (its WAL's unuploaded bytes at 0); False if
    that took over ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(metrics_url, timeout=10) as answer:
            text: str = answer.read().decode()
        gauge = [line for line in text.splitlines() if line.startswith(UNUPLOADED + " ")]
        assert gauge, f"{metrics_url} reports no {UNUPLOADED}"
        if float(gauge[0].rsplit(" ", 1)[1]) == 0:
            return True
        time.sleep(POLL_S)
    return False


@pytest.mark.slow
def test_served_idempotent_producer_loses_nothing_under_store_faults(
    tmp_path: Path,
    s3_endpoint: S3Endpoint,
    faulty_endpoint: S3Endpoint,
    s3_fault_proxy: S3FaultProxy,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from confluent_kafka import KafkaException, Producer

    from tests.server.confluent_helpers import create_topic
    from tests.server.conftest import ServerProcess, free_port, quiet_librdkafka

    prefix = f"served-{uuid.uuid4().hex}"
    config = tmp_path / "server.toml"
    config.write_text(SERVER_CONFIG)
    http = f"127.0.0.1:{free_port()}"
    server = ServerProcess(
        tmp_path / "node",
        object_store=faulty_endpoint.store_url(prefix),
        args=["--config", str(config), "--http", http],
    )
    s3_fault_proxy.set_rates(MIXED)
    server.start()
    tally = Tally()
    try:
        create_topic(server.bootstrap, "memory", PARTITIONS)
        producer = Producer(
            {
                "bootstrap.servers": server.bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "batch.num.messages": 20,
                **quiet_librdkafka(),
            }
        )
        failures: list[KafkaException] = []

        def delivered(error: object, message: object) -> None:
            if error is not None:
                failures.append(KafkaException(error))
                return
            tally.ack(message.partition(), message.offset(), message.value())  # type: ignore[attr-defined]

        for i in range(SERVED_RECORDS):
            value = b"served-%d-%s" % (i, PADDING)
            producer.produce("memory", value, partition=i % PARTITIONS, on_delivery=delivered)
            producer.poll(0)
        assert producer.flush(60) == 0
        assert failures == []
        # The server uploads in the background, under faults; once every
        # acknowledged byte is in a committed object, shutdown's last writes
        # (a checkpoint, the manifest) go through cleanly, so the bucket has
        # everything without the test depending on its luck. Polled: a
        # spell of 3 s without a write at the store ended 3 s after the last
        # upload, where the gauge is at 0 as soon as it is committed.
        assert wait_uploaded(f"http://{http}/metrics", timeout=FLUSH_TIMEOUT_S)
        s3_fault_proxy.heal()
        assert server.stop() == 0
    finally:
        server.kill()
    with engine.open(tmp_path / "fresh", s3_endpoint.store_url(prefix), CONFIG) as fresh:
        lost, duplicated = tally.check(read_everything(fresh))
    with capsys.disabled():
        print("\n" + report("served", s3_fault_proxy.stats, tally, lost, duplicated))
    assert len(tally.acked) == SERVED_RECORDS
    assert s3_fault_proxy.stats.injected > 0
    assert (lost, duplicated) == (0, 0)
