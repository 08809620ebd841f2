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
