"""docs/migration.md's steps, run as written, from a ``tidelog serve`` to
another: dual-run, verify, cut over consumers, cut over producers, roll back. A
consumer group moves at each step without skipping or repeating a record,
and the way back sends nothing twice."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from engine.cli.main import main
from tests.mirror.conftest import facts, group_consumer, producer, read_partition, read_some
from tests.mirror.sides import assert_mirrored_exactly, create, produce_with_transactions
from tests.server.conftest import ServerProcess

TOPIC = "basket"


def mirror_args(source: str, target: str) -> list[str]:
    return ["mirror", "--from", source, "--to", target, "--topics", TOPIC, "--groups", "billing"]


def start_mirror(source: str, target: str, log: Path) -> subprocess.Popen[bytes]:
    """The mirror as a child, once it is running (its signal handlers set)."""
    started = log.read_text().count("mirroring") if log.exists() else 0
    with log.open("ab") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "engine", *mirror_args(source, target)], stdout=out, stderr=out
        )
    for _ in range(600):
        if log.read_text().count("mirroring") > started:
            return child
        assert child.poll() is None, log.read_text()
        time.sleep(0.05)
    child.kill()
    raise AssertionError(f"the mirror did not start: {log.read_text()}")


def stop(mirror: subprocess.Popen[bytes], log: Path) -> None:
    mirror.send_signal(signal.SIGTERM)
    assert mirror.wait(60) == 0, log.read_text()


def billing(bootstrap: str) -> Consumer:
    consumer = group_consumer(bootstrap, "billing", **{"session.timeout.ms": 6000})
    consumer.subscribe([TOPIC])
    return consumer


def take(consumer: Consumer, count: int) -> list[Any]:
    """The next ``count`` records, committed once read."""
    records = read_some(consumer, count, seconds=60.0)
    consumer.commit(asynchronous=False)
    return records


def write(bootstrap: str, first: int, count: int) -> None:
    client = producer(bootstrap, acks="all")
    for n in range(first, first + count):
        client.produce(TOPIC, f"order-{n}".encode(), f"c{n % 5}".encode(), partition=0)
    assert client.flush(30) == 0


def test_the_runbook_dual_run_cut_over_and_roll_back(
    source_server: ServerProcess, target_server: ServerProcess, tmp_path: Path
) -> None:
    tidelog, kafka = source_server.bootstrap, target_server.bootstrap
    log = tmp_path / "mirror.log"
    create(tidelog, TOPIC, 1)
    produce_with_transactions(tidelog, TOPIC, 1, rounds=9, txn_id="shop")  # 6 committed
    write(tidelog, 0, 10)

    # 1. Dual-run: the mirror on, the consumers on tidelog.
    mirror = start_mirror(tidelog, kafka, log)
    first = billing(tidelog)
    seen = take(first, 8)
    # The consumer leaves (step 3) now, not when the garbage collector or
    # its session timeout says: the roll back commits for its group on
    # tidelog only once it has no members there.
    first.close()

    # 3. Cut over consumers: stop the mirror, run it --once, start it again.
    stop(mirror, log)
    assert main([*mirror_args(tidelog, kafka), "--once"]) == 0
    # 2. Verify (here, where the target has caught up with the source).
    assert main(["mirror", "--verify", "--from", tidelog, "--to", kafka, "--topics", TOPIC]) == 0
    mirror = start_mirror(tidelog, kafka, log)
    write(tidelog, 10, 5)  # producers still on tidelog
    moved = billing(kafka)
    seen += take(moved, 6 + 10 + 5 - 8)
    assert [facts(r) for r in seen] == [facts(r) for r in read_partition(tidelog, TOPIC, 0)]

    # 4. Cut over producers: stop them, stop and drain the mirror, write to the target.
    stop(mirror, log)
    assert main([*mirror_args(tidelog, kafka), "--once"]) == 0
    write(kafka, 15, 7)
    seen += take(moved, 4)
    moved.close()
    on_tidelog = [facts(r) for r in read_partition(tidelog, TOPIC, 0)]
    assert [facts(r) for r in read_partition(kafka, TOPIC, 0)][: len(on_tidelog)] == on_tidelog

    # 5. Roll back: mirror the other way; tidelog has everything, each once.
    assert main([*mirror_args(kafka, tidelog), "--once"]) == 0
    assert_mirrored_exactly(kafka, tidelog, TOPIC, 1)
    back = billing(tidelog)
    rest = take(back, 3)
    back.close()
    assert [facts(r) for r in seen + rest] == [facts(r) for r in read_partition(kafka, TOPIC, 0)]
