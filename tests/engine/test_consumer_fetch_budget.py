"""A poll's fetch_max_bytes: as a Kafka broker answers one Fetch
(ReplicaManager.readFromLog), only the first partition that has records
may go past what is left of the budget, by its first batch; every other
partition's records come within it. The embedded async consumer has all
its partitions' fetches under way together, each asking for its share: a
share answered with one batch larger than it is kept only where it is the
poll's first records, the others fetched again by a later poll."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import engine
from engine.types import TopicPartition
from tests.engine.counted_polls import counted_reads, poll
from tests.engine.helpers_records import batch

PARTITIONS = 3
BIG = 5000
"""Each partition's one batch: larger than any partition's share."""


@pytest.mark.parametrize("polled", ["blocking", "async"])
def test_only_the_first_partition_with_records_goes_past_the_budget(
    tmp_path: Path, polled: str
) -> None:
    with engine.open(tmp_path / "node") as e:
        e.create_topic("t", PARTITIONS)
        for p in range(PARTITIONS):
            e.produce("t", p, batch([bytes(BIG)]))
        consumer = e.consumer(
            auto_offset_reset="earliest", fetch_max_bytes=3000, max_partition_fetch_bytes=1000
        )
        with consumer:
            consumer.assign([TopicPartition("t", p) for p in range(PARTITIONS)])
            polls: list[set[int]] = []
            seen = []
            while len(seen) < PARTITIONS:
                if polled == "async":
                    got = asyncio.run(consumer.poll_async(5.0))
                else:
                    got = consumer.poll(5.0)
                assert got
                polls.append({r.partition for r in got})
                seen += [(r.partition, r.offset) for r in got]
    # One partition's oversized batch per poll, as Kafka answers; none lost
    # or handed out twice.
    assert [len(p) for p in polls] == [1] * PARTITIONS
    assert sorted(seen) == [(p, 0) for p in range(PARTITIONS)]


BEHIND = 100
BATCH = 1000
"""Each of BEHIND partitions' batches: a tenth of BUDGET, larger than a
partition's share of it (BUDGET / BEHIND)."""
BUDGET = 10_000


@pytest.mark.parametrize("polled", ["blocking", "async"])
def test_a_poll_reads_no_batch_its_budget_cannot_take(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, polled: str
) -> None:
    """A batch a poll's budget has no room left for is dropped once read,
    to be fetched again: a poll that went on fetching the other partitions
    (in turn, or all together, each for a share smaller than its batch)
    would read every partition's batch to take a tenth of them. A poll
    starts only the fetches whose batch fits what is left: as last seen,
    or, not seen yet, as the largest appended since the engine opened
    (tests/engine/test_consumer_poll_goes_on.py reads after a reopen)."""
    with engine.open(tmp_path / "node") as e:
        e.create_topic("t", BEHIND)
        for p in range(BEHIND):
            for _ in range(3):
                e.produce("t", p, batch([bytes(BATCH)]))
        consumer = e.consumer(
            auto_offset_reset="earliest",
            fetch_max_bytes=BUDGET,
            max_partition_fetch_bytes=BUDGET,
            max_poll_records=10_000,
        )
        with consumer, counted_reads(e, monkeypatch) as read:
            consumer.assign([TopicPartition("t", p) for p in range(BEHIND)])
            taken: list[tuple[int, int]] = []
            while len(taken) < 3 * BEHIND:
                read.clear()
                got = poll(consumer, polled)
                assert got
                taken += [(r.partition, r.offset) for r in got]
                # No more read than the budget takes, and one batch.
                assert sum(read) <= BUDGET + max(read), len(read)
    assert sorted(taken) == [(p, o) for p in range(BEHIND) for o in range(3)]
