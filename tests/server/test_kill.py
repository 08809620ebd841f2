"""SIGKILL the server while librdkafka produces with acks=all, start it
again on the same port, and find every record whose delivery was reported
successful: once, at the offset its report gave, in order per partition.

The idempotent producer runs in the test process and keeps sending unique
values through each kill (librdkafka reconnects and retries what was in
flight). Records reported as failed may or may not be in the log, but
never twice.
"""

from __future__ import annotations

import random
import time

import pytest

from tests.server.conftest import ServerProcess
from tests.server.test_confluent import (
    SteadyProducer,
    check_delivered_once_in_order,
    create_topic,
    make_admin,
    make_producer,
)

PARTITIONS = 3


def kill_and_restart(server: ServerProcess, rng: random.Random) -> None:
    server.kill()
    time.sleep(rng.uniform(0, 0.3))  # the producer keeps queueing meanwhile
    server.start()


@pytest.mark.slow
def test_sigkill_during_acks_all_produce_keeps_every_delivered_record_once(
    own_server: ServerProcess, topic: str
) -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    create_topic(make_admin(own_server.bootstrap), topic, partitions=PARTITIONS)
    producer = make_producer(
        own_server.bootstrap,
        **{
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": rng.choice([0, 2, 10]),
            "delivery.timeout.ms": 120_000,
            "reconnect.backoff.ms": 20,
            "reconnect.backoff.max.ms": 200,
        },
    )
    # Kill points: right after the first deliveries, and twice more later.
    gaps = [rng.randint(1, 30), rng.randint(200, 3000), rng.randint(200, 3000)]
    with SteadyProducer(producer, topic, PARTITIONS) as steady:
        for gap in gaps:
            steady.delivered(steady.ok_count() + gap, timeout=120)
            kill_and_restart(own_server, rng)
        steady.delivered(steady.ok_count() + 500, timeout=120)

    assert len(steady.deliveries) == steady.sent, "a record got no delivery report"
    check_delivered_once_in_order(own_server.bootstrap, topic, PARTITIONS, steady.deliveries)
