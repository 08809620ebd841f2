"""Group offsets read and committed by consumers (engine/mirror/group_offsets.py)
while the cluster is killed and started again over and over: the process
keeps going and commits once the cluster stays up. The admin client's group
requests (DescribeConsumerGroups, ListConsumerGroupOffsets,
AlterConsumerGroupOffsets) under the same load abort the process on an
assertion in librdkafka 2.16, within the first 30 restarts in each of two
runs (docs/design/0021-mirror-groups-without-admin-requests.md)."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.mirror.conftest import FULL, group_consumer
from tests.mirror.sides import create
from tests.server.prewarmed import PrewarmedServer

pytestmark = pytest.mark.slow  # dozens of restarts of a server

RESTARTS = 100 if FULL else 30
THREADS = 20

_GROUP_OFFSETS_UNDER_LOAD = """
import sys, threading, time
from engine.mirror.group_offsets import Commit, GroupOffsets
from engine.mirror.kafka import confluent
from engine.types import TopicPartition

bootstrap, threads = sys.argv[1], int(sys.argv[2])
kafka = confluent()

def read_and_commit(n):
    position = 0
    while True:
        position += 1
        offsets = GroupOffsets(kafka, bootstrap, {"log_level": "0"}, f"restarts-{n}", 5.0)
        try:
            offsets.committed([TopicPartition("restarts", 0)])
            offsets.commit({TopicPartition("restarts", 0): Commit(position)})
        except Exception:  # the cluster is down half the time
            pass
        offsets.close()

for n in range(threads):
    threading.Thread(target=read_and_commit, args=(n,), daemon=True).start()
while True:
    time.sleep(1)
"""


def _committed_past(
    check: Consumer, partition: list[TopicPartition], offset: int
) -> list[TopicPartition]:
    """The group's committed offsets once they pass ``offset`` (at most 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        found = check.committed(partition, timeout=30)
        if found[0].offset > offset or time.monotonic() > deadline:
            return list(found)
        time.sleep(0.05)


def test_group_offsets_survive_restarts_of_the_cluster_under_load(
    restarted_target_server: PrewarmedServer, tmp_path: Path
) -> None:
    server = restarted_target_server
    create(server.bootstrap, "restarts", 1)
    log = tmp_path / "child.log"
    with log.open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-c", _GROUP_OFFSETS_UNDER_LOAD, server.bootstrap, str(THREADS)],
            stdout=out,
            stderr=out,
        )
    try:
        time.sleep(1)
        pace = random.Random(21)
        for _ in range(RESTARTS):
            time.sleep(pace.uniform(0.05, 0.6))
            server.kill()
            time.sleep(pace.uniform(0.05, 0.5))
            server.start()
            assert child.poll() is None, log.read_text(errors="replace")[-2000:]
        # The groups' commits go on once the cluster stays up: a first commit
        # after the last start, then a later one, each polled for.
        check = group_consumer(server.bootstrap, "restarts-0")
        partition = [TopicPartition("restarts", 0)]
        (first,) = check.committed(partition, timeout=30)
        (first,) = _committed_past(check, partition, first.offset)
        assert child.poll() is None, log.read_text(errors="replace")[-2000:]
        (later,) = _committed_past(check, partition, first.offset)
        check.close()
        assert later.offset > first.offset >= 0
        assert child.poll() is None, log.read_text(errors="replace")[-2000:]
    finally:
        child.kill()
        child.wait(30)
