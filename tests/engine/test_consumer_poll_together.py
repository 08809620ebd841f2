"""An async poll fetches all its partitions together, as Kafka's consumer
sends one Fetch per node naming every partition: partitions whose reads
are slow (an object store stalling their history) cost the poll one wait,
the slowest read's, however many there are. Each fetch asks for its share
of fetch_max_bytes, so together they ask for no more than the budget."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.partition import Partition, PartitionFetch
from engine.types import TopicPartition
from tests.engine.helpers_records import batch

PARTITIONS = 200
SLOW_READ_S = 10.0
"""How long an injected read waits for the others to be under way: only a
poll that never has them all under way together waits it out."""


def test_a_poll_of_many_slow_partitions_waits_for_all_their_reads_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with engine.open(tmp_path / "node") as e:
        e.create_topic("t", PARTITIONS)
        for p in range(PARTITIONS):
            e.produce("t", p, batch([b"%d-0" % p, b"%d-1" % p]))
        fetch_from_async = e.fetch_from_async
        under_way = 0
        most_under_way = 0
        waited_out = 0
        asked: list[int] = []
        all_under_way: asyncio.Event | None = None

        async def slow(leader: Partition, offset: int, max_bytes: int, level: str) -> Any:
            # A read that ends only once every partition's read is under way
            # (a stalled store answering them all at once), or past its wait.
            nonlocal under_way, most_under_way, waited_out, all_under_way
            if all_under_way is None:
                all_under_way = asyncio.Event()
            asked.append(max_bytes)
            under_way += 1
            most_under_way = max(most_under_way, under_way)
            if under_way == PARTITIONS:
                all_under_way.set()
            try:
                await asyncio.wait_for(all_under_way.wait(), SLOW_READ_S)
            except TimeoutError:
                waited_out += 1
            under_way -= 1
            read: PartitionFetch = await fetch_from_async(leader, offset, max_bytes, level)
            return read

        monkeypatch.setattr(e, "fetch_from_async", slow)
        consumer = e.consumer(auto_offset_reset="earliest", max_poll_records=150)
        with consumer:
            consumer.assign([TopicPartition("t", p) for p in range(PARTITIONS)])

            async def poll_all() -> list[engine.ConsumerRecord]:
                got = await consumer.poll_async(30.0)
                assert len(got) == 150  # max_poll_records holds
                assert (most_under_way, waited_out) == (PARTITIONS, 0)
                assert len(asked) == PARTITIONS
                assert sum(asked) <= consumer.fetch_max_bytes  # each its share
                while len(got) < 2 * PARTITIONS:
                    more = await consumer.poll_async(30.0)
                    assert 0 < len(more) <= 150
                    got += more
                return got

            records = asyncio.run(poll_all())
    assert waited_out == 0
    for p in range(PARTITIONS):
        assert [r.value for r in records if r.partition == p] == [b"%d-0" % p, b"%d-1" % p]


def test_a_poll_under_way_when_the_consumer_closes_hands_out_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() from another task while an async poll's fetches wait: the
    poll raises EngineClosed, as one begun after the close does. Records it
    handed out would be past the positions the close committed, read again
    by the partitions' next owner."""
    with engine.open(tmp_path / "node") as e:
        e.create_topic("t", 3)
        for p in range(3):
            e.produce("t", p, batch([b"%d" % p]))
        fetch_from_async = e.fetch_from_async
        closed, under_way = asyncio.Event(), asyncio.Event()

        async def held(leader: Partition, offset: int, max_bytes: int, level: str) -> Any:
            under_way.set()
            await closed.wait()  # the store answers once the consumer closed
            read: PartitionFetch = await fetch_from_async(leader, offset, max_bytes, level)
            return read

        monkeypatch.setattr(e, "fetch_from_async", held)
        consumer = e.consumer(auto_offset_reset="earliest")
        consumer.assign([TopicPartition("t", p) for p in range(3)])

        async def close_while_polling() -> None:
            polling = asyncio.ensure_future(consumer.poll_async(5.0))
            await under_way.wait()
            consumer.close()
            closed.set()
            with pytest.raises(engine.EngineClosed):
                await polling

        asyncio.run(close_while_polling())
