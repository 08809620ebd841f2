"""kill -9 of either side mid-run: the mirror (a ``tidelog mirror`` child,
then run again) and the target (a ``tidelog serve`` child, started again
under a mirror that goes on, checkpointing source groups meanwhile). Both
end with the target holding exactly the source's committed records, in
order, none twice, none missing, each at the offset the syncs give; the
groups' offsets on the target are their source offsets translated."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from engine.mirror.runner import MirrorRunner
from engine.mirror.settings import MirrorSettings
from tests.mirror.conftest import (
    FULL,
    MockCluster,
    group_consumer,
    quiet_librdkafka,
    read_topic,
)
from tests.mirror.sides import (
    Writer,
    assert_mirrored_exactly,
    create,
    produce_plain,
    produce_with_transactions,
)
from tests.server.conftest import ServerProcess
from tests.server.prewarmed import PrewarmedServer

PARTITIONS = 3
RECORDS = 40_000 if FULL else 2_000
"""Records copied before the last kill: a quarter of them, at least."""
KILLS = 8 if FULL else 1
"""How many times the mirror is killed mid-run."""
KILLS_WITH_GROUPS = 20 if FULL else 6
"""How many times the slow variant kills the target while checkpoints run."""
DOWN_S = 2.0
"""The longest the target stays down: twice the mirror's delivery timeout."""
DELIVERY_TIMEOUT_S = DOWN_S / 2
STARTS_OVER = "starting over from the target"
"""What the mirror logs when it gives up a session."""


def start_mirror(source: str, target: str, log: Path, *flags: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "engine", "mirror", "--from", source, "--to", target, *flags],
            stdout=out,
            stderr=out,
        )


def target_count(bootstrap: str, topic: str, partitions: int) -> int:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "tests.mirror.count", **quiet_librdkafka()}
    )
    try:
        total = 0
        for partition in range(partitions):
            try:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=30
                )
            except KafkaException:  # not there yet, or the target restarting
                return 0
            total += high - low
        return total
    finally:
        consumer.close()


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not in {timeout} s")


def starts_over(log: Path) -> int:
    """How many sessions the mirror has given up so far."""
    return log.read_text(errors="replace").count(STARTS_OVER)


def down_until_given_up(log: Path, given_up_before: int) -> None:
    """Keeps a killed target down past the mirror's delivery timeout, then
    until the mirror has given up its session, for DOWN_S at most. Started
    again as soon as the mirror starts over, the target is there for its
    first retry: a fixed DOWN_S left the mirror's retries failing against
    a target still down, each waiting twice as long as the one before."""
    deadline = time.monotonic() + DOWN_S
    time.sleep(DELIVERY_TIMEOUT_S)
    while starts_over(log) == given_up_before and time.monotonic() < deadline:
        time.sleep(0.02)


def test_kill_9_of_the_mirror_mid_run_then_restart(
    source_server: ServerProcess, mock_cluster: MockCluster, tmp_path: Path
) -> None:
    source, target = source_server.bootstrap, mock_cluster.bootstrap
    create(source, "stream", PARTITIONS)
    produce_with_transactions(source, "stream", PARTITIONS, rounds=6, txn_id="head")
    log = tmp_path / "mirror.log"
    writer = Writer(source, "stream", PARTITIONS)
    writer.start()
    for kill in range(1, KILLS + 1):
        mirror = start_mirror(source, target, log, "--topics", "stream")
        try:
            # Killed while the source is still being written and the mirror copies.
            wanted = kill * RECORDS // (4 * KILLS)
            wait_for(
                lambda wanted=wanted: target_count(target, "stream", PARTITIONS) > wanted,
                60,
                "copying",
            )
            mirror.kill()
            mirror.wait(30)
            assert writer.is_alive()
        finally:
            if mirror.poll() is None:
                mirror.kill()
                mirror.wait(30)
    written = writer.stop()
    MirrorRunner(MirrorSettings(source, target, topics="stream"), once=True).run()
    result = assert_mirrored_exactly(source, target, "stream", PARTITIONS)
    assert result["records"] == written + 4 * PARTITIONS


_CRASH_WITH_TWO_CYCLES_IN_FLIGHT = """
import os, signal, sys
from engine.mirror import runner
from engine.mirror.settings import MirrorSettings

runner.BATCH_RECORDS = 100
start, finish = runner.Target.start, runner._Session._finish
started = finished = 0

def start_counted(self, records):
    global started
    started += 1
    return start(self, records)

def finish_or_die(self, cycle, at_end):
    global finished
    if cycle.delivery is not None:
        finished += 1
        self.target.copied(cycle.delivery)
        if finished >= 3 and started > finished:
            # This cycle's records are acknowledged and the next cycle's
            # were sent; this one's syncs and progress are not written.
            print(cycle.delivery.count, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    return finish(self, cycle, at_end)

runner.Target.start = start_counted
runner._Session._finish = finish_or_die
source, target, topic = sys.argv[1:4]
runner.MirrorRunner(MirrorSettings(source, target, topics=topic), once=True).run()
sys.exit(3)  # never killed: no cycle finished with the next one in flight
"""


def test_kill_9_with_two_cycles_in_flight_then_restart(
    source_server: ServerProcess, target_server: ServerProcess
) -> None:
    """The mirror killed after the target acknowledged a cycle's records
    (syncs and progress not yet written) while the next cycle's records are
    on their way: the next run matches both cycles on the target's tail,
    writes the syncs they need, and sends none of them again."""
    source, target = source_server.bootstrap, target_server.bootstrap
    create(source, "in-flight", PARTITIONS)
    produce_with_transactions(source, "in-flight", PARTITIONS, rounds=6, txn_id="in-flight")
    produce_plain(source, "in-flight", PARTITIONS, 3_000)
    child = subprocess.run(
        [sys.executable, "-c", _CRASH_WITH_TWO_CYCLES_IN_FLIGHT, source, target, "in-flight"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    unsaved = int(child.stdout)  # records of the cycle killed before its progress
    assert unsaved > 0
    assert unsaved <= target_count(target, "in-flight", PARTITIONS) < 3_000
    again = MirrorRunner(MirrorSettings(source, target, topics="in-flight"), once=True).run()
    # The cycle killed before its progress was saved, and whatever of the
    # next one landed, are on the tail: matched, not sent again.
    assert again.matched >= unsaved, again
    result = assert_mirrored_exactly(source, target, "in-flight", PARTITIONS)
    assert result["records"] == 3_000 + 4 * PARTITIONS
    assert target_count(target, "in-flight", PARTITIONS) == result["records"], "a record twice"


LAG = 300
"""How far behind the source's end the moving groups commit."""


class GroupMover(threading.Thread):
    """Commits, for each of ``groups`` on the source, a position a little
    behind the end of every partition as it grows (one the mirror has
    copied, mostly), until stopped, and then the end itself: source groups
    whose offsets move while the mirror checkpoints them."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, groups: list[str]) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.partitions, self.groups = (
            bootstrap,
            topic,
            partitions,
            groups,
        )
        self.halt = threading.Event()

    def run(self) -> None:
        clients = [group_consumer(self.bootstrap, group) for group in self.groups]
        try:
            while not self.halt.wait(0.05):
                self._commit_ends(clients, behind=LAG)
            self._commit_ends(clients, behind=0)  # the ends once the writer stopped
        finally:
            for client in clients:
                client.close()

    def _commit_ends(self, clients: list[Consumer], behind: int) -> None:
        ends = []
        for partition in range(self.partitions):
            tp = TopicPartition(self.topic, partition)
            _, high = clients[0].get_watermark_offsets(tp, timeout=30)
            ends.append(TopicPartition(self.topic, partition, max(0, high - behind)))
        for client in clients:
            client.commit(offsets=ends, asynchronous=False)

    def stop(self) -> None:
        self.halt.set()
        self.join(60)
        assert not self.is_alive()


def next_record_on_target(sources: list[Any], targets: list[Any], at: int) -> int:
    """The target offset of the first committed source record at or after
    source offset ``at`` (the target's end if none), from a partition's
    committed records on either side: where a consumer moved over from
    ``at`` must resume."""
    for original, mirrored in zip(sources, targets, strict=True):
        if original.offset() >= at:
            return int(mirrored.offset())
    return int(targets[-1].offset()) + 1


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    client = group_consumer(bootstrap, group)
    try:
        found = client.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
        return [int(entry.offset) for entry in found]
    finally:
        client.close()


@pytest.mark.parametrize("kills", [1, pytest.param(KILLS_WITH_GROUPS, marks=pytest.mark.slow)])
def test_kill_9_of_the_target_mid_run_while_checkpoints_run_then_restart(
    source_server: ServerProcess,
    restarted_target_server: PrewarmedServer,
    tmp_path: Path,
    kills: int,
) -> None:
    """The target killed and started again while the mirror (a ``tidelog
    mirror`` child) checkpoints source groups ten times a second: the mirror
    neither aborts nor stops, the target ends with exactly the source's
    records, and each group's offsets on the target are its source offsets
    translated."""
    target_server = restarted_target_server
    source, target = source_server.bootstrap, target_server.bootstrap
    topic, partitions = f"ck-ledger-{kills}", 4
    create(source, topic, partitions)
    produce_with_transactions(source, topic, partitions, rounds=6, txn_id=f"{topic}-head")
    head = group_consumer(source, f"{topic}-head")  # in the head: past an aborted record
    head.commit(
        offsets=[TopicPartition(topic, p, 5) for p in range(partitions)], asynchronous=False
    )
    head.close()
    movers = [f"{topic}-moving-{n}" for n in range(3)]
    writer = Writer(source, topic, partitions, pause_s=0.5)
    mover = GroupMover(source, topic, partitions, movers)
    writer.start()
    mover.start()
    log = tmp_path / "mirror.log"
    mirror = start_mirror(
        source, target, log,
        "--topics", topic,
        "--groups", f"{topic}-.*",
        "--checkpoint-interval", "0.1",
        "--to-config", f"message.timeout.ms={int(DELIVERY_TIMEOUT_S * 1000)}",
    )  # fmt: skip
    try:
        for kill in range(1, kills + 1):
            wanted = kill * RECORDS // 4
            wait_for(lambda w=wanted: target_count(target, topic, partitions) > w, 60, "copying")
            given_up = starts_over(log)
            target_server.kill()
            down_until_given_up(log, given_up)
            target_server.start()
        written = writer.stop()
        mover.stop()
        total = written + 4 * partitions
        wait_for(lambda: target_count(target, topic, partitions) >= total, 120, "catching up")
        mirror.send_signal(signal.SIGTERM)
        assert mirror.wait(60) == 0, log.read_text(errors="replace")[-3000:]
    finally:
        if mirror.poll() is None:
            mirror.kill()
            mirror.wait(30)
    said = log.read_text(errors="replace")
    assert "Assertion" not in said
    # The target stayed down past the delivery timeout: the mirror gave up
    # its session and started over from what the target held.
    assert STARTS_OVER in said
    again = MirrorRunner(
        MirrorSettings(source, target, topics=topic, groups=f"{topic}-.*"), once=True
    ).run()
    result = assert_mirrored_exactly(source, target, topic, partitions)
    assert result["records"] == written + 4 * partitions
    assert target_count(target, topic, partitions) == result["records"], "a record twice"
    # Read once: each partition's lookups read the same records again.
    sources, targets = read_topic(source, topic, partitions), read_topic(target, topic, partitions)
    ends = [next_record_on_target(sources[p], targets[p], 1 << 62) for p in range(partitions)]
    for group in movers:
        assert committed_offsets(target, group, topic, partitions) == ends, group
    expected_head = [next_record_on_target(sources[p], targets[p], 5) for p in range(partitions)]
    assert committed_offsets(target, f"{topic}-head", topic, partitions) == expected_head
    assert set(again.checkpoints) <= {f"{topic}-head", *movers}
