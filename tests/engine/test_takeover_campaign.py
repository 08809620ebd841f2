"""Takeover campaigns: two writers on one bucket (moto's S3 server), in both
acknowledgement modes, while producers keep appending to both.

Scenarios: a takeover (B opens while A is busy: A has uploaded once, by a
flush, and acknowledged more since; its uploads wait while B opens, and in
``local`` mode from that flush on, so that B sees exactly that one however
slow a loaded machine makes its open) and a simultaneous start (A and B open at the same
moment; the first to fence is fenced by the other). Each writer appends
single-record batches to two partitions with many appends in flight, and
records every acknowledgement: its value, its offset and a sequence number
from one counter shared by everything in the campaign (so "after B
opened" is an order, not a duration). After both
close, the log is read from B and from a fresh data directory on the bucket.

What holds:
- ``remote``: no acknowledged record is lost; each is at its acked offset.
- ``local``: the only records lost are the old owner's that no upload the
  new owner's open saw holds: each lost one lies past the end the new owner
  opened with, and each of the old owner's acknowledgements below that end
  survives. Those are the appends acknowledged after the old owner's last
  upload committed before the fence: the ones acknowledged after the new
  owner opened, and as well the ones acknowledged before it but not yet
  uploaded (up to an upload interval's), which were only in the old owner's
  WAL. The old owner learned of the fence at its first manifest request
  after the new owner's open (a commit, or the idle check), so it went on
  acknowledging for at most one upload interval plus one request.
- Both: offsets are dense, no record appears twice, and every acknowledged
  record of the surviving owner is there.

The figures (acked, lost, duplicated per mode and scenario, and how many
of the lost were acknowledged before the new owner began opening) are
printed for the README. ``TIDELOG_FAULTS=full`` runs more rounds with more timings.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import engine
from engine.config import ACK_DURABILITY
from engine.partition import AppendResult
from s3stream import ObjectStore, ObjectStoreError, StreamStoreConfig
from s3stream.manifest_records import LOG_PREFIX
from s3stream.store import open_store
from s3stream.uploader import OBJECT_PREFIX
from tests.engine.helpers_records import batch, read_partition
from tests.s3stream.conftest import S3Endpoint, s3_endpoint  # noqa: F401
from tests.s3stream.faults import FaultyStore

FULL = os.environ.get("TIDELOG_FAULTS") == "full"
ROUNDS = 8 if FULL else 2
INTERVAL_S = 0.2
"""Both owners' upload interval, and so how long the old owner goes on
after a takeover before a manifest request tells it it was fenced. What
the old owner acknowledged after its flush is kept out of the bucket by
holding its uploads, not by an interval longer than the new owner's open:
an interval of 3 s made each takeover round wait it out up to twice, for
an acknowledgement in ``remote`` mode and for the fence."""
PARTITIONS = 2
IN_FLIGHT = 4
PACE_S = 0.001
TOPIC = "agent"


class Clock:
    """One counter for the order of everything a campaign observes."""

    def __init__(self) -> None:
        self._next = itertools.count(1)
        self._lock = threading.Lock()

    def tick(self) -> int:
        with self._lock:
            return next(self._next)


@dataclass
class Ack:
    writer: str
    value: bytes
    partition: int
    offset: int
    seq: int


class WatchedStore(FaultyStore):
    """The writer's object store, noting the order of its manifest requests
    and whether the writer already knew it was fenced when it made each.
    Its uploads wait while ``uploads`` is clear: the old owner's while the
    new owner opens (in ``local`` mode from its flush on), so that the old
    owner's next upload comes after the open however long a loaded machine
    makes the open take."""

    def __init__(self, inner: ObjectStore, clock: Clock) -> None:
        super().__init__(inner)
        self.clock = clock
        self.knows_fenced: Callable[[], bool] = lambda: False
        self.manifest_requests: list[tuple[int, bool]] = []
        self.uploads = threading.Event()
        self.uploads.set()

    def _check(self, operation: str, key: str) -> None:
        if key.startswith(LOG_PREFIX) and operation in ("head", "put"):
            self.manifest_requests.append((self.clock.tick(), self.knows_fenced()))
        if key.startswith(OBJECT_PREFIX) and operation == "put":
            assert self.uploads.wait(120), "uploads held for good"
        super()._check(operation, key)


@dataclass
class Writer:
    name: str
    engine: engine.Engine
    store: WatchedStore
    acks: list[Ack] = field(default_factory=list)
    refused: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)


def open_writer(name: str, data_dir: Path, bucket: str, mode: str, clock: Clock) -> Writer:
    store = WatchedStore(open_store(bucket), clock)
    config = engine.EngineConfig(
        cleaner_interval_s=3600,
        topic_defaults={ACK_DURABILITY: mode},
        store=StreamStoreConfig(upload_interval_s=INTERVAL_S, compaction_interval_s=3600),
    )
    e = engine.open(data_dir, store, config)
    store.knows_fenced = lambda: e.store.fenced
    return Writer(name, e, store)


def produce(writer: Writer, partition: int, clock: Clock) -> None:
    """Appends until stopped or refused, ``IN_FLIGHT`` at a time."""
    lock = threading.Lock()
    room = threading.Semaphore(IN_FLIGHT)
    for i in itertools.count():
        if writer.stop.is_set():
            break
        value = b"%s-%d-%d" % (writer.name.encode(), partition, i)
        # A paced stream of appends: two writers in one process share its
        # interpreter, and one appending flat out would starve the other's open.
        time.sleep(PACE_S)
        if not room.acquire(timeout=30):
            raise AssertionError(f"{writer.name}: appends stopped completing")
        try:
            future = writer.engine.submit(TOPIC, partition, batch([value]))
        except engine.EngineError:
            room.release()
            writer.refused += 1
            break

        def done(f: Future[AppendResult], value: bytes = value) -> None:
            room.release()
            if f.exception() is None:
                with lock:
                    writer.acks.append(
                        Ack(writer.name, value, partition, f.result().base_offset, clock.tick())
                    )
            else:
                writer.refused += 1
                writer.stop.set()

        future.add_done_callback(done)
    for _ in range(IN_FLIGHT):  # every append answered
        assert room.acquire(timeout=60), f"{writer.name}: appends never completed"


def start(writer: Writer, clock: Clock) -> None:
    for partition in range(PARTITIONS):
        thread = threading.Thread(target=produce, args=(writer, partition, clock))
        thread.start()
        writer.threads.append(thread)


def finish(writer: Writer) -> None:
    writer.stop.set()
    for thread in writer.threads:
        thread.join(120)
        assert not thread.is_alive()


def wait_for_an_ack(writer: Writer, past: list[int], timeout: float = 30) -> None:
    """Waits until ``writer`` has acknowledged an append at or past the
    offsets ``past`` (one per partition), however slow a loaded machine is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(ack.offset >= past[ack.partition] for ack in list(writer.acks)):
            return
        time.sleep(0.01)
    raise AssertionError(f"{writer.name} acknowledged nothing past {past}")


def wait_fenced(writer: Writer, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not writer.engine.store.fenced and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.engine.store.fenced, f"{writer.name} never learned it was fenced"


@dataclass
class Outcome:
    acked: int
    lost: list[Ack]
    duplicated: int


def check_log(e: engine.Engine, acks: list[Ack]) -> Outcome:
    """Offsets dense, no value twice; which acknowledged records are missing."""
    at: dict[tuple[int, int], bytes | None] = {}
    seen: set[bytes | None] = set()
    duplicated = 0
    for partition in range(PARTITIONS):
        records = read_partition(e, TOPIC, partition)
        assert [r.offset for r in records] == list(range(len(records)))
        for r in records:
            at[(partition, r.offset)] = r.value
            duplicated += r.value in seen
            seen.add(r.value)
    lost = []
    for ack in acks:
        found = at.get((ack.partition, ack.offset))
        if found != ack.value:
            assert ack.value not in seen, f"{ack.value!r} moved from its acked offset"
            lost.append(ack)
    return Outcome(len(acks), lost, duplicated)


@contextlib.contextmanager
def fresh_bucket(endpoint: S3Endpoint, tmp_path: Path) -> Iterator[str]:
    """A fresh prefix of the test bucket holding the campaign's topic
    (emptied after)."""
    prefix = f"campaign-{uuid.uuid4().hex}"
    url = endpoint.store_url(prefix)
    setup_config = engine.EngineConfig(store=StreamStoreConfig(upload_interval_s=3600))
    with engine.open(tmp_path / "setup", url, setup_config) as setup:
        setup.create_topic(TOPIC, PARTITIONS)
    try:
        yield url
    finally:
        store = endpoint.store(prefix)
        with contextlib.suppress(ObjectStoreError):
            # DeleteObjects, a thousand keys a request, where a DELETE each
            # took a round's teardown one request per object.
            store.delete_many([info.key for info in store.list()])
        store.close()


def open_both(bucket: str, tmp_path: Path, mode: str, clock: Clock) -> list[Writer]:
    """A and B open at the same moment; an engine whose open was fenced by
    the other's (it lost the race mid-open) is not a writer at all."""
    opened: list[Writer] = []

    def open_one(name: str) -> None:
        with contextlib.suppress(engine.Fenced):
            opened.append(open_writer(name, tmp_path / name, bucket, mode, clock))

    openers = [threading.Thread(target=open_one, args=(name,)) for name in ("a", "b")]
    for opener in openers:
        opener.start()
    for opener in openers:
        opener.join(120)
    return sorted(opened, key=lambda w: w.engine.leader_epoch)


def run_round(tmp_path: Path, bucket: str, mode: str, scenario: str, rng: random.Random) -> None:
    clock = Clock()
    old: Writer | None
    if scenario == "takeover":
        old = open_writer("a", tmp_path / "a", bucket, mode, clock)
        start(old, clock)
        time.sleep(rng.uniform(0.3, 1.0) if FULL else 0.3)
        # An upload the new owner's open sees, and acknowledgements after it
        # that no upload before the open holds (in ``remote`` mode an
        # acknowledgement is an upload: the one after the flush is let through).
        assert old.engine.flush(30)
        if mode == "local":
            old.store.uploads.clear()
        wait_for_an_ack(old, past=[old.engine.offsets(TOPIC, p)[1] for p in range(PARTITIONS)])
        old.store.uploads.clear()
        new_started = clock.tick()
        try:
            new = open_writer("b", tmp_path / "b", bucket, mode, clock)
        finally:
            old.store.uploads.set()
    else:
        new_started = clock.tick()
        both = open_both(bucket, tmp_path, mode, clock)
        old, new = (None, both[0]) if len(both) == 1 else (both[0], both[1])
        if old is not None:
            start(old, clock)
    new_opened = clock.tick()
    # What the uploads the new owner's open saw hold: the old owner's
    # acknowledgements below these ends are in the bucket, the rest were
    # only in its WAL.
    opened_ends = [new.engine.offsets(TOPIC, p)[1] for p in range(PARTITIONS)]
    start(new, clock)
    writers = [w for w in (old, new) if w is not None]
    try:
        if old is not None:
            wait_fenced(old)
        time.sleep(rng.uniform(0.2, 0.6) if FULL else 0.2)
    finally:
        for writer in writers:
            finish(writer)
    if old is not None:
        # The old owner learned of the fence at its first manifest request
        # after the new owner had opened: a window of at most one interval.
        unaware = [s for s, knew in old.store.manifest_requests if s > new_opened and not knew]
        assert len(unaware) <= 1, old.store.manifest_requests
        old.engine.close()
    acks = [ack for writer in writers for ack in writer.acks]
    from_owner = check_log(new.engine, acks)
    new.engine.close()
    with engine.open(tmp_path / "fresh", bucket, engine.EngineConfig()) as fresh:
        from_bucket = check_log(fresh, acks)
    assert [x.value for x in from_bucket.lost] == [x.value for x in from_owner.lost]
    for outcome in (from_owner, from_bucket):
        assert outcome.duplicated == 0
        assert not [x for x in outcome.lost if x.writer == new.name]  # the owner loses nothing
        if mode == "remote":
            assert outcome.lost == []
        elif old is not None:
            lost = {(x.partition, x.offset) for x in outcome.lost}
            past_open = {
                (x.partition, x.offset) for x in old.acks if x.offset >= opened_ends[x.partition]
            }
            assert lost == past_open, "lost: exactly the acks no upload the new owner saw holds"
            if scenario == "takeover":  # the acks below the ends are there: both halves shown
                assert any(x.offset < opened_ends[x.partition] for x in old.acks)
    old_acks = len(old.acks) if old is not None else 0
    before_open = sum(x.seq < new_started for x in from_bucket.lost)
    if mode == "local" and scenario == "takeover":
        # The old owner had uploaded nothing when the new one opened: what
        # it acknowledged before then was only in its WAL, and is lost.
        assert before_open > 0, "no acknowledgement from before the open was lost"
    print(
        f"\ntakeover campaign: mode={mode} scenario={scenario} acked={from_bucket.acked} "
        f"(old owner {old_acks}, new owner {len(new.acks)}) lost={len(from_bucket.lost)} "
        f"(acknowledged before the new owner began opening: {before_open}) "
        f"duplicated={from_bucket.duplicated} "
        f"refused={sum(w.refused for w in writers)}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["takeover", "simultaneous"])
@pytest.mark.parametrize("mode", ["local", "remote"])
def test_takeover_campaign(
    tmp_path: Path,
    s3_endpoint: S3Endpoint,  # noqa: F811
    mode: str,
    scenario: str,
) -> None:
    rng = random.Random(f"{mode}-{scenario}")
    for round_number in range(ROUNDS):
        root = tmp_path / f"round{round_number}"
        with fresh_bucket(s3_endpoint, root) as bucket:
            run_round(root, bucket, mode, scenario, rng)
