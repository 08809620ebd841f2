"""A poll takes what fits from every partition, as a Kafka broker answers
one Fetch (ReplicaManager.readFromLog goes on past a partition whose
first batch does not fit what is left, to the later ones): a partition
whose batch does not fit is left at its position for a later poll, and
the ones after it are still read. No partition waits for ever (each is
the poll's first in turn, and the first may pass the budget by a batch),
and a consumer's first poll, which has seen no batch yet, reads within
its budget too (reads counted, never timed)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.client.consumer import Consumer
from engine.partition import Partition
from engine.types import TopicPartition
from s3stream import StreamStoreConfig
from s3stream.store import open_store
from tests.engine.counted_polls import counted_reads, poll
from tests.engine.helpers_records import batch
from tests.s3stream.faults import FaultyStore

POLLS = ["blocking", "async"]


BUDGET = 3000
VALUES = {0: 1000, 1: 2500, 2: 300}
"""Each partition's record size: one record a batch, so its batches are
alike; partition 1's do not fit what partition 0's leave of BUDGET, and
partition 2's do."""


@pytest.mark.parametrize("polled", POLLS)
def test_a_poll_goes_on_past_a_batch_that_does_not_fit_to_those_that_do(
    tmp_path: Path, polled: str
) -> None:
    sizes = {p: len(batch([bytes(n)])) for p, n in VALUES.items()}
    with engine.open(tmp_path / "node") as e:
        e.create_topic("t", len(VALUES))
        for p, n in VALUES.items():
            for _ in range(12):
                e.produce("t", p, batch([bytes(n)]))
        consumer = e.consumer(
            auto_offset_reset="earliest",
            fetch_max_bytes=BUDGET,
            max_partition_fetch_bytes=BUDGET,
            max_poll_records=10_000,
        )
        with consumer:
            consumer.assign([TopicPartition("t", p) for p in VALUES])
            left = dict.fromkeys(VALUES, 12)
            taken: list[tuple[int, int]] = []
            for polls in range(100):
                if not any(left.values()):
                    break
                got = poll(consumer, polled)
                taken += [(r.partition, r.offset) for r in got]
                counts = {p: sum(r.partition == p for r in got) for p in VALUES}
                room = BUDGET - sum(counts[p] * sizes[p] for p in VALUES)
                for p, count in counts.items():
                    left[p] -= count
                if polls < len(VALUES):
                    continue  # each partition's batch seen once
                # Nothing with records left out whose batch fits what the
                # poll left of its budget: it had at least that room.
                left_out = [p for p in VALUES if left[p] and not counts[p] and sizes[p] <= room]
                assert not left_out, (polls, counts, room)
    assert sorted(taken) == sorted((p, o) for p in VALUES for o in range(12))


MANY = 60
"""Partitions all behind: more than fetch_max_bytes / max_partition_fetch_bytes,
so each is asked for a share smaller than its batches."""
SMALL = 100
LARGE = 8000
"""Partition LARGE_AT's one batch: larger than its share and than the budget."""
LARGE_AT = 7
SHARED = 6000


@pytest.mark.parametrize("polled", POLLS)
def test_many_partitions_behind_each_progress_and_a_batch_past_the_budget_comes_whole(
    tmp_path: Path, polled: str
) -> None:
    with engine.open(tmp_path / "node") as e:
        e.create_topic("t", MANY)
        for p in range(MANY):
            if p == LARGE_AT:
                e.produce("t", p, batch([bytes(LARGE)]))
                continue
            for _ in range(10):
                e.produce("t", p, batch([bytes(SMALL)]))
        consumer = e.consumer(
            auto_offset_reset="earliest",
            fetch_max_bytes=SHARED,
            max_partition_fetch_bytes=SHARED,
            max_poll_records=100_000,
        )
        with consumer:
            consumer.assign([TopicPartition("t", p) for p in range(MANY)])
            left = {p: 1 if p == LARGE_AT else 10 for p in range(MANY)}
            waited = dict.fromkeys(range(MANY), 0)
            taken: list[tuple[int, int]] = []
            while any(left.values()):
                got = poll(consumer, polled)
                assert got
                taken += [(r.partition, r.offset) for r in got]
                delivered = {r.partition for r in got}
                for p in range(MANY):
                    if p in delivered:
                        left[p] -= sum(r.partition == p for r in got)
                        waited[p] = 0
                    elif left[p]:
                        waited[p] += 1
                        assert waited[p] < MANY, f"partition {p} waited {waited[p]} polls"
    assert sorted(taken) == sorted(
        (p, o) for p in range(MANY) for o in range(1 if p == LARGE_AT else 10)
    )


BEHIND = 100
BATCH = 1000
"""Each of BEHIND partitions' batches: a tenth of FIRST_BUDGET, larger
than a partition's share of it (FIRST_BUDGET / BEHIND)."""
FIRST_BUDGET = 10_000


def _write_behind(e: engine.Engine) -> None:
    """BEHIND partitions of three batches of BATCH bytes each."""
    e.create_topic("t", BEHIND)
    for p in range(BEHIND):
        for _ in range(3):
            e.produce("t", p, batch([bytes(BATCH)]))


def _first_consumer(e: engine.Engine, **settings: Any) -> Consumer:
    """A consumer from the earliest offsets, FIRST_BUDGET its budget."""
    return e.consumer(
        auto_offset_reset="earliest",
        fetch_max_bytes=FIRST_BUDGET,
        max_partition_fetch_bytes=FIRST_BUDGET,
        **settings,
    )


@pytest.mark.parametrize("reopened", [False, True], ids=["appended", "reopened"])
@pytest.mark.parametrize("polled", POLLS)
def test_a_first_poll_reads_within_its_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, polled: str, reopened: bool
) -> None:
    """A first poll has seen no batch: it reads within its budget all the
    same, from the largest batch its partitions were appended since the
    engine opened, or, with none (an engine just reopened), from the
    batches its first fetch found."""
    size = len(batch([bytes(BATCH)]))
    with engine.open(tmp_path / "node") as e:
        _write_behind(e)
    with engine.open(tmp_path / "node") as e:
        if not reopened:
            for p in range(BEHIND):
                e.produce("t", p, batch([bytes(BATCH)]))
        consumer = _first_consumer(e, max_poll_records=10_000)
        with consumer, counted_reads(e, monkeypatch) as read:
            consumer.assign([TopicPartition("t", p) for p in range(BEHIND)])
            got = poll(consumer, polled)
            assert got
    # What a broker answering one Fetch would read: the budget, and one
    # batch past it at most; one read a batch.
    assert sum(read) <= FIRST_BUDGET + size, (len(read), sum(read))
    assert len(read) <= FIRST_BUDGET // size + 1


SLOW_WAIT_MS = 20
"""The fetches' wait for an object read (remote_fetch_max_wait_ms): short,
as every read of the slow store below outlasts it."""


@pytest.mark.parametrize("polled", POLLS)
def test_a_first_poll_whose_store_is_slow_reads_within_its_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, polled: str
) -> None:
    """A fetch whose store read outlasts its wait answers no records, the
    read going on for the next poll: its batch keeps its part of the
    budget, so the poll starts no other partition's read in its place (on
    a loaded machine, one after another past the budget)."""
    size = len(batch([bytes(BATCH)]))
    store = FaultyStore(open_store("file://" + str(tmp_path / "bucket")))
    config = engine.EngineConfig(store=StreamStoreConfig(remote_fetch_max_wait_ms=SLOW_WAIT_MS))
    with engine.open(tmp_path / "node", store, config) as e:
        _write_behind(e)
    with engine.open(tmp_path / "node", store, config) as e:
        for p in range(BEHIND):  # sizes every partition's batch
            e.produce("t", p, batch([bytes(BATCH)]))
        consumer = _first_consumer(e, max_poll_records=10_000)
        with consumer, counted_reads(e, monkeypatch) as read:
            consumer.assign([TopicPartition("t", p) for p in range(BEHIND)])
            store.stall_gets("")
            try:
                got = poll(consumer, polled, timeout=0)
            finally:
                store.release()
            first = list(read)
            assert got == []
            assert store.stalls
            # The reads go on: the next polls take their batches.
            got = []
            for _ in range(30):  # each poll waits for data up to a second
                got += poll(consumer, polled, timeout=1.0)
                if got:
                    break
            assert got
    # Each read answered nothing; one a batch within the budget.
    assert first == [0] * len(first)
    assert len(first) <= FIRST_BUDGET // size + 1, len(first)


def test_a_first_blocking_poll_whose_store_stalls_after_a_reopen_waits_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a reopen nothing tells a batch's size: a blocking fetch asks
    for what is left of the budget. Answered with its store read still
    going on, it keeps what it asked, so the poll ends there: a stalled
    store costs it one wait, not one a partition in turn."""
    store = FaultyStore(open_store("file://" + str(tmp_path / "bucket")))
    config = engine.EngineConfig(store=StreamStoreConfig(remote_fetch_max_wait_ms=SLOW_WAIT_MS))
    with engine.open(tmp_path / "node", store, config) as e:
        _write_behind(e)
    with engine.open(tmp_path / "node", store, config) as e:
        consumer = _first_consumer(e)
        with consumer, counted_reads(e, monkeypatch) as read:
            consumer.assign([TopicPartition("t", p) for p in range(BEHIND)])
            store.stall_gets("")
            try:
                assert consumer.poll(0) == []
            finally:
                store.release()
    assert read == [0]


STALLED = 8


def test_a_first_async_poll_whose_store_stalls_waits_for_one_read_alone_not_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a reopen nothing tells a batch's size: the first fetch runs
    alone and sizes the others. If it answers none (its object read
    outlasted the fetch's wait) the others still start together: a stalled
    store costs the poll two waits, not one a partition."""
    with engine.open(tmp_path / "node") as e:
        e.create_topic("t", STALLED)
        for p in range(STALLED):
            e.produce("t", p, batch([bytes(BATCH)]))
    with engine.open(tmp_path / "node") as e:
        in_flight = [0]
        most = [0]
        fetches = [0]
        fetch_from_async = e.fetch_from_async

        async def stalled(leader: Partition, offset: int, max_bytes: int, level: str) -> Any:
            # The store's read outlasts the fetch's wait: no records, read_pending.
            fetches[0] += 1
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
            try:
                fetched = await fetch_from_async(leader, offset, max_bytes, level)
                await asyncio.sleep(0.01)
                return fetched._replace(records=[], read_pending=True)
            finally:
                in_flight[0] -= 1

        monkeypatch.setattr(e, "fetch_from_async", stalled)
        consumer = _first_consumer(e)
        with consumer:
            consumer.assign([TopicPartition("t", p) for p in range(STALLED)])
            assert asyncio.run(consumer.poll_async(0)) == []
    assert fetches[0] == STALLED
    assert most[0] == STALLED - 1, "after the first, the fetches ran one at a time"


@pytest.mark.parametrize("polled", POLLS)
def test_a_partition_left_alone_in_a_poll_is_guessed_from_the_batches_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, polled: str
) -> None:
    """After a reopen, a batch not seen is guessed from the largest the
    consumer has seen; the last partition a poll has left to fetch is
    guessed so too, not read to have its batch dropped."""
    values = {0: 1000, 1: 1000, 2: 1200}  # in plan order
    sizes = {p: len(batch([bytes(n)])) for p, n in values.items()}
    budget = sizes[0] + sizes[1] + sizes[2] // 2
    with engine.open(tmp_path / "node") as e:
        e.create_topic("t", len(values))
        for p, n in values.items():
            for _ in range(3):
                e.produce("t", p, batch([bytes(n)]))
    with engine.open(tmp_path / "node") as e:
        consumer = e.consumer(
            auto_offset_reset="earliest",
            fetch_max_bytes=budget,
            max_partition_fetch_bytes=sizes[1],
            max_poll_records=10_000,
        )
        with consumer, counted_reads(e, monkeypatch) as read:
            consumer.assign([TopicPartition("t", p) for p in values])
            got = poll(consumer, polled)
    assert sorted({r.partition for r in got}) == [0, 1]
    # Every byte read was handed out: none read to be dropped.
    assert sum(read) == sum(sizes[r.partition] for r in got), (read, len(got))


@pytest.mark.parametrize("polled", POLLS)
def test_a_partition_sought_has_its_batch_guessed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, polled: str
) -> None:
    """A seek leaves the batch seen at the old position behind: the one at
    the new position is guessed again (the largest appended), not taken for
    the old one's size and read to be dropped when it does not fit."""
    big, small = len(batch([bytes(2000)])), len(batch([bytes(100)]))
    with engine.open(tmp_path / "node") as e:
        e.create_topic("t", 2)
        for value in [2000] * 3 + [100] * 3:
            e.produce("t", 0, batch([bytes(value)]))
        for _ in range(60):
            e.produce("t", 1, batch([bytes(100)]))
        consumer = e.consumer(
            auto_offset_reset="earliest",
            fetch_max_bytes=big + small,
            max_partition_fetch_bytes=4 * small,
            max_poll_records=10_000,
        )
        p0, p1 = TopicPartition("t", 0), TopicPartition("t", 1)
        with consumer:
            consumer.assign([p0, p1])
            consumer.seek(p0, 3)
            while consumer.position(p0) < 6:  # p0's small batches seen
                poll(consumer, polled)
            consumer.seek(p0, 0)
            with counted_reads(e, monkeypatch) as read:
                handed = 0
                for _ in range(6):
                    got = poll(consumer, polled)
                    handed += sum(big if r.partition == 0 and r.offset < 3 else small for r in got)
    # Every byte read was handed out: none read to be dropped.
    assert sum(read) == handed, read
