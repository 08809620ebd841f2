"""kill -9 campaign: ``python -m engine serve`` is SIGKILLed again and again
under an idempotent acks=all librdkafka producer, at seeded random moments
(after a few deliveries or many, while uploads, manifest commits and WAL
trims run, and during the start itself: WAL replay and re-upload), and
started again on the same port. At the end every acknowledged record is in
the log once, at the offset its delivery report gave, in the order sent.

On a local object store and on S3 (moto's server on loopback). 8 and 5
cycles by default; ``TIDELOG_FAULTS=full`` runs 100 and 30 (a number runs
that many of each); ``TIDELOG_FAULTS_SEED`` replays a run. Each run prints
its seed and figures (run with ``-s`` to see them).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tests.faults.kill_helpers import (
    PacedProducer,
    campaign_rng,
    campaign_size,
    figures,
    kill_during_start,
)
from tests.s3stream.conftest import S3Endpoint, s3_endpoint  # noqa: F401
from tests.server.conftest import ServerProcess
from tests.server.prewarmed import PrewarmedServer
from tests.server.test_confluent import (
    all_partitions,
    assert_dense_from,
    by_partition,
    consume_exactly,
    create_topic,
    make_admin,
    make_producer,
)
from tests.server.test_kill import kill_and_restart

PARTITIONS = 3
SERVER_CONFIG = """
[store]
upload_bytes = 65536
upload_interval_s = 0.1
"""
"""Small, frequent uploads: kills land before, during and after uploads,
manifest commits and WAL trims."""


def run_campaign(server: ServerProcess, cycles: int, name: str) -> None:
    seed, rng = campaign_rng()
    print(f"kill -9 campaign {name}: seed {seed}")
    topic = f"campaign-{uuid.uuid4().hex[:8]}"
    server.start()
    create_topic(make_admin(server.bootstrap), topic, partitions=PARTITIONS)
    producer = make_producer(
        server.bootstrap,
        **{
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": rng.choice([0, 2, 10]),
            "delivery.timeout.ms": 300_000,
            "reconnect.backoff.ms": 20,
            "reconnect.backoff.max.ms": 200,
            "log_level": 0,  # a refused connection per kill is expected, not news
        },
    )
    during_start = 0
    with PacedProducer(producer, topic, PARTITIONS) as steady:
        for _ in range(cycles):
            # A few deliveries (the kill lands mid-request) or many (mid-upload).
            gap = rng.choice([rng.randint(1, 20), rng.randint(50, 600)])
            steady.delivered(steady.ok_count() + gap, timeout=120)
            if rng.random() < 0.25:  # kill the next start too, during recovery
                server.kill()
                during_start += kill_during_start(server, rng.uniform(0.05, 1.0))
            kill_and_restart(server, rng)
        steady.delivered(steady.ok_count() + 200, timeout=120)
    assert len(steady.deliveries) == steady.sent, "a record got no delivery report"
    assert all(d.error is None for d in steady.deliveries), "a delivery failed"

    log = consume_exactly(server.bootstrap, all_partitions(topic, PARTITIONS), None, timeout=120)
    found = figures(cycles, during_start, steady.deliveries, log)
    print(found.line(name, seed))
    assert (found.lost, found.misplaced, found.duplicated) == (0, 0, 0), found.line(name, seed)
    for partition, listed in by_partition(log).items():
        assert_dense_from({partition: listed})
        values = [m.value() for m in listed]
        assert values == sorted(values), f"partition {partition} out of the order sent"
    assert len(log) == steady.sent


def config_file(root: Path) -> list[str]:
    path = root / "tidelog.toml"
    path.write_text(SERVER_CONFIG)
    return ["--config", str(path)]


@pytest.mark.slow
def test_kill_campaign_on_a_local_object_store(tmp_path: Path) -> None:
    server = PrewarmedServer(tmp_path / "data", args=config_file(tmp_path))
    try:
        run_campaign(server, campaign_size(8, 100), "local")
    finally:
        server.close()


@pytest.mark.slow
def test_kill_campaign_on_s3(tmp_path: Path, s3_endpoint: S3Endpoint) -> None:  # noqa: F811
    url = s3_endpoint.store_url(f"campaign-{uuid.uuid4().hex}")
    server = PrewarmedServer(tmp_path / "data", object_store=url, args=config_file(tmp_path))
    started = time.monotonic()
    try:
        run_campaign(server, campaign_size(5, 30), "s3")
    finally:
        server.close()
    print(f"s3 campaign: {time.monotonic() - started:.0f} s")
