"""kill -9 a producing engine at random moments, reopen, and find every
acknowledged record: once, in order, at the offset its future reported.

The child (child_producer.py) opens the engine, creates the topic on its
first run, and sends records through the embedded producer, printing each
future's (partition, offset, id) as soon as it resolves. Uploads are small
and frequent, so kills land before, during and after uploads, manifest
commits, WAL trims and producer-state checkpoints. Between kills the parent
opens the engine on the same data directory and object store and checks
the whole log; the next child appends after what the parent saw.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import engine
from tests.engine.conftest import QUIET_STORE
from tests.engine.helpers_records import child_command, child_env, read_partition

TOPIC = "agent-memory"
PARTITIONS = 3
CHECK_CONFIG = engine.EngineConfig(store=QUIET_STORE, cleaner_interval_s=3600)


@dataclass
class ChildRun:
    acked: list[tuple[int, int, int]] = field(default_factory=list)
    """(partition, offset, record id) of every resolved future."""
    failed: list[str] = field(default_factory=list)
    topic_created: bool = False
    killed_by_parent: bool = False
    returncode: int = 0
    stderr: str = ""


class StartedChild:
    """A producer process started and held before its engine's open (its
    WAIT_FOR_GO): its interpreter and imports run while the parent still
    checks the previous round's log, and its round begins with ``go``."""

    def __init__(self, node: Path, store: str, first_id: int, log_dir: Path, **env: str) -> None:
        self.stderr_path = log_dir / f"child-{first_id}.stderr"
        self.run = ChildRun()
        self.opened = threading.Event()
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                child_command(
                    "child_producer.py", str(node), store, TOPIC, str(PARTITIONS), str(first_id)
                ),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=child_env(WAIT_FOR_GO="1", **env),
            )
        self.reader = threading.Thread(target=self._read)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        run = self.run
        for raw in self.process.stdout:
            line = raw.decode()
            if not line.endswith("\n"):
                break  # cannot happen with one write(2) per line; never trust it
            words = line.split()
            if words[0] == "opened":
                self.opened.set()
            elif words[0] == "topic":
                run.topic_created = True
            elif words[0] == "ack":
                partition, offset, record_id = map(int, words[1:])
                run.acked.append((partition, offset, record_id))
            elif words[0] == "fail":
                run.failed.append(line)
        self.opened.set()  # it died before opening the engine

    def go(self, delay: float) -> ChildRun:
        """Lets the child open the engine, SIGKILLs it ``delay`` seconds after
        its engine is open (unless it died first), and collects what it
        acknowledged."""
        child, run = self.process, self.run
        assert child.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # it died first: its stderr says why
            child.stdin.write(b"go\n")
            child.stdin.close()
        self.opened.wait(120)
        try:
            child.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            run.killed_by_parent = True
            child.send_signal(signal.SIGKILL)
            child.wait()
        self._collect()
        run.returncode = child.returncode
        run.stderr = self.stderr_path.read_text(errors="replace")[-3000:]
        assert run.returncode == -signal.SIGKILL, f"the child did not die by SIGKILL:\n{run.stderr}"
        assert not run.failed, f"sends failed before the kill: {run.failed[:5]}"
        return run

    def abandon(self) -> None:
        """Ends a child whose round never came (an earlier check failed)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._collect()

    def _collect(self) -> None:
        self.reader.join()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


def run_child(
    node: Path,
    store: str,
    first_id: int,
    delay: float,
    log_dir: Path,
    **env: str,
) -> ChildRun:
    """Starts a producer, SIGKILLs it ``delay`` seconds after its engine is
    open (unless it died first), and collects what it acknowledged."""
    return StartedChild(node, store, first_id, log_dir, **env).go(delay)


def check_log(
    node: Path,
    store: str | None,
    before: dict[int, list[int]],
    acked: list[tuple[int, int, int]],
    *,
    flush: bool,
    context: str,
) -> dict[int, list[int]]:
    """Opens the engine and checks the whole topic; returns each partition's
    record ids by offset. ``before`` is what the previous check found."""
    e = engine.open(node, store, CHECK_CONFIG)
    try:
        if TOPIC not in e.list_topics():
            assert not acked, f"{context}: records were acknowledged, the topic is gone"
            assert not before, f"{context}: the topic was there before, it is gone"
            return {}
        assert e.partition_count(TOPIC) == PARTITIONS, context
        found: dict[int, list[int]] = {}
        for partition in range(PARTITIONS):
            records = read_partition(e, TOPIC, partition)
            where = f"{context}, partition {partition}"
            assert e.offsets(TOPIC, partition) == (0, len(records)), where
            assert [r.offset for r in records] == list(range(len(records))), f"{where}: gaps"
            ids = []
            for r in records:
                assert r.value is not None, where
                record_id = int(r.value.split(b":")[0])
                assert r.headers == (("id", b"%d" % record_id),), where
                ids.append(record_id)
            assert ids == sorted(set(ids)), f"{where}: records out of order or twice"
            previous = before.get(partition, [])
            assert ids[: len(previous)] == previous, f"{where}: earlier records changed"
            found[partition] = ids
        everywhere = [i for ids in found.values() for i in ids]
        assert len(everywhere) == len(set(everywhere)), f"{context}: a record in two partitions"
        for partition, offset, record_id in acked:
            ids = found[partition]
            assert offset < len(ids), f"{context}: acked {record_id} at {partition}/{offset} lost"
            assert ids[offset] == record_id, (
                f"{context}: {partition}/{offset} holds {ids[offset]}, acked {record_id} there"
            )
            assert offset >= len(before.get(partition, [])), (
                f"{context}: acked {record_id} at {partition}/{offset}, below the earlier end"
            )
        return found
    finally:
        e.close(flush=flush)


def crash_rounds(node: Path, store: str, rounds: int, seed: int, log_dir: Path) -> None:
    rng = random.Random(seed)
    check_store = None if store == "-" else store
    seen: dict[int, list[int]] = {}
    total_acked = 0
    child = StartedChild(node, store, 1_000_000, log_dir)
    try:
        for round_no in range(rounds):
            if round_no == rounds - 1:
                delay = rng.uniform(0.4, 1.0)  # long enough that something is acked
            elif rng.random() < 0.3:
                delay = rng.uniform(0.0, 0.05)  # around topic creation and the first sends
            else:
                delay = rng.uniform(0.05, 1.0)
            run = child.go(delay)
            if round_no < rounds - 1:
                # The next child starts up while this round's log is checked:
                # it opens the engine only once the check has closed it.
                child = StartedChild(node, store, (round_no + 2) * 1_000_000, log_dir)
            total_acked += len(run.acked)
            context = f"seed {seed}, round {round_no}, killed after {delay:.3f} s"
            seen = check_log(
                node, check_store, seen, run.acked, flush=round_no % 2 == 0, context=context
            )
    finally:
        child.abandon()
    assert total_acked > 0, f"seed {seed}: nothing was acknowledged in {rounds} rounds"


def test_the_producing_child_checkpoints_before_it_is_killed(tmp_path: Path) -> None:
    """The kills are to land among checkpoints too: checkpoints follow the
    bytes appended (docs/design/0128), and the child's checkpoint_bytes
    is a small part of what it appends in a second."""
    node = tmp_path / "node"
    run = run_child(node, "-", 1_000_000, 1.0, tmp_path)
    assert run.acked, "nothing was acknowledged in a second"
    e = engine.open(node, None, CHECK_CONFIG)
    try:
        for partition in range(PARTITIONS):
            state_id = e.partition(TOPIC, partition).state_stream_id
            assert e.store.next_offset(state_id) > 1, f"partition {partition}: no checkpoints"
    finally:
        e.close(flush=False)


def test_sigkill_at_random_moments_loses_no_acknowledged_record(tmp_path: Path) -> None:
    crash_rounds(tmp_path / "node", "-", 4, random.randrange(2**32), tmp_path)


def test_sigkill_at_random_moments_with_s3_loses_no_acknowledged_record(
    tmp_path: Path, s3_url: str
) -> None:
    crash_rounds(tmp_path / "node", s3_url, 3, random.randrange(2**32), tmp_path)


MANY_ROUNDS = 12 if os.environ.get("TIDELOG_FAULTS") == "full" else 7
"""Kills of the longer campaign: 7 by default, 12 with TIDELOG_FAULTS=full."""


@pytest.mark.slow
@pytest.mark.parametrize("store_kind", ["local", "s3"])
def test_many_sigkills_lose_no_acknowledged_record(
    tmp_path: Path, store_kind: str, request: pytest.FixtureRequest
) -> None:
    store = "-" if store_kind == "local" else request.getfixturevalue("s3_url")
    crash_rounds(tmp_path / "node", store, MANY_ROUNDS, random.randrange(2**32), tmp_path)


def test_sigkill_after_an_object_put_before_its_commit_loses_nothing(tmp_path: Path) -> None:
    node = tmp_path / "node"
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    seen: dict[int, list[int]] = {}
    for round_no in range(2):
        puts = rng.randint(2, 6)
        run = run_child(
            node, "-", (round_no + 1) * 1_000_000, 120, tmp_path, KILL_AFTER_PUTS=str(puts)
        )
        assert not run.killed_by_parent, "the child never reached its object put"
        assert run.acked, "nothing was acknowledged before the kill"
        context = f"seed {seed}, round {round_no}, killed after put {puts}"
        seen = check_log(node, None, seen, run.acked, flush=False, context=context)


def test_sigkill_before_the_new_catalog_records_anything_leaves_an_engine_that_opens(
    tmp_path: Path,
) -> None:
    """The first open creates the catalog stream (a manifest commit) and then
    writes its first record (a WAL append): a kill between the two must not
    leave a data directory the engine can never open again."""
    node = tmp_path / "node"
    run = run_child(node, "-", 1, 120, tmp_path, KILL_BEFORE_CATALOG="1")
    assert not run.killed_by_parent and not run.topic_created
    check_log(node, None, {}, [], flush=True, context="after the kill")
    run = run_child(node, "-", 1_000_000, 0.5, tmp_path)
    assert run.topic_created and run.acked
    check_log(node, None, {}, run.acked, flush=True, context="after a second run")
    with engine.open(node, None, CHECK_CONFIG) as e:
        assert e.list_topics() == [TOPIC]
