"""A Fetch waiting for data (max_wait) on a topic that is deleted is
answered then, UNKNOWN_TOPIC_OR_PARTITION, as a Kafka broker completes a
delayed fetch of a partition it no longer leads; not at max_wait."""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import engine
from engine.protocol.kafka_code import KafkaCode
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire, fetch_from_start, response_schema_for

TIMEOUT = 30.0
MAX_WAIT = datetime.timedelta(hours=1)
"""Far past the test's timeout: only the deletion can answer it in time."""


def test_a_fetch_waiting_on_a_deleted_topic_is_answered_unknown_topic(tmp_path: Path) -> None:
    with engine.open(tmp_path / "data", config=engine.EngineConfig.small()) as opened:
        opened.create_topic("doomed", 1)
        server = InProcessServer(opened)
        try:
            with Wire(server.bootstrap, timeout=TIMEOUT) as wire:
                fetch = fetch_from_start("doomed", max_wait=MAX_WAIT, min_bytes=1)
                sent = wire.send(fetch)
                deadline = time.monotonic() + TIMEOUT
                while not opened._waiters.async_waiters:  # the fetch waits for data
                    assert time.monotonic() < deadline, "the fetch never waited"
                    time.sleep(0.01)
                opened.delete_topic("doomed")
                answered, response = wire.receive(response_schema_for(fetch))
        finally:
            server.stop()
    assert answered == sent
    ((partition,),) = [topic.partitions for topic in response.responses]
    assert partition.error_code == KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
