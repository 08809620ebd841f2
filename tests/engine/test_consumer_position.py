"""The embedded consumer's position is exact per record: the offset after
the last record handed to the caller, by poll or by iteration, so a reader
that stops part-way through what was fetched loses nothing; and pause /
resume hold a partition's records back without moving its position."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import engine
from engine.types import TopicPartition
from tests.engine.helpers_records import batch

TP = TopicPartition("t", 0)


def _fill(e: engine.Engine, count: int, per_batch: int = 5) -> None:
    e.create_topic("t", partitions=2)
    with e.producer(linger_ms=0, batch_size=per_batch * 40) as producer:
        for i in range(count):
            producer.send("t", value=b"v%d" % i, partition=0)
            if i % per_batch == per_batch - 1:
                producer.flush()
        producer.flush()


def test_stopping_iteration_mid_fetch_loses_no_record(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node") as e:
        _fill(e, 201)
        with e.consumer(auto_offset_reset="earliest", iter_timeout=0.5) as consumer:
            consumer.assign([TP])
            seen = []
            for record in consumer:
                seen.append(record.offset)
                if record.offset == 196:
                    break
            assert consumer.position(TP) == 197  # the offset after the last one returned
            rest = [r.offset for r in consumer.poll(1.0)]
            assert seen + rest == list(range(201))


def test_a_group_commit_after_a_stopped_iteration_resumes_at_the_next_record(
    tmp_path: Path,
) -> None:
    with engine.open(tmp_path / "node") as e:
        _fill(e, 50)
        with e.consumer(
            "t", group_id="g", auto_offset_reset="earliest", enable_auto_commit=False
        ) as consumer:
            consumer.assign([TP])
            for record in consumer:
                if record.offset == 9:
                    break
            assert consumer.commit()[TP].offset == 10
        with e.consumer(group_id="g", enable_auto_commit=False) as again:
            again.assign([TP])
            assert again.poll(1.0)[0].offset == 10


def test_async_iteration_stopped_mid_fetch_loses_no_record(tmp_path: Path) -> None:
    async def read(e: engine.Engine) -> list[int]:
        async with e.consumer(auto_offset_reset="earliest", iter_timeout=0.5) as consumer:
            consumer.assign([TP])
            seen = []
            async for record in consumer:
                seen.append(record.offset)
                if record.offset == 30:
                    break
            assert consumer.position(TP) == 31
            return seen + [r.offset for r in await consumer.poll_async(1.0)]

    with engine.open(tmp_path / "node") as e:
        _fill(e, 40)
        assert asyncio.run(read(e)) == list(range(40))


def test_poll_with_max_records_positions_after_the_records_returned(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node") as e:
        _fill(e, 12)
        with e.consumer(auto_offset_reset="earliest") as consumer:
            consumer.assign([TP])
            assert [r.offset for r in consumer.poll(1.0, max_records=3)] == [0, 1, 2]
            assert consumer.position(TP) == 3


def test_a_paused_partition_hands_out_nothing_and_resumes_where_it_was(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node") as e:
        _fill(e, 20)
        other = TopicPartition("t", 1)
        e.produce("t", 1, batch([b"x"]))
        with e.consumer(auto_offset_reset="earliest") as consumer:
            consumer.assign([TP, other])
            assert consumer.poll(1.0, max_records=4)
            position = consumer.position(TP)
            consumer.pause([TP])
            assert consumer.paused() == {TP}
            later = consumer.poll(0.2) + consumer.poll(0.2)
            assert all(r.partition == 1 for r in later)
            assert consumer.position(TP) == position
            consumer.resume([TP])
            assert consumer.paused() == set()
            rest = []
            while len(rest) < 20 - position:
                got = consumer.poll(1.0)
                assert got
                rest += [r.offset for r in got if r.partition == 0]
            assert rest == list(range(position, 20))


def test_async_pause_and_resume(tmp_path: Path) -> None:
    async def read(e: engine.Engine) -> tuple[list[int], list[int]]:
        async with e.consumer(auto_offset_reset="earliest") as consumer:
            consumer.assign([TP])
            consumer.pause([TP])
            while_paused = [r.offset for r in await consumer.poll_async(0.2)]
            consumer.resume([TP])
            return while_paused, [r.offset for r in await consumer.poll_async(1.0)]

    with engine.open(tmp_path / "node") as e:
        _fill(e, 10)
        assert asyncio.run(read(e)) == ([], list(range(10)))


def test_a_consumer_until_a_bound_stops_there_and_says_so(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node") as e:
        _fill(e, 30)
        with e.consumer(until={TP: 17}, auto_offset_reset="earliest") as consumer:
            assert consumer.assignment() == {TP}
            assert not consumer.at_end()
            offsets = [r.offset for r in consumer]  # no iter_timeout: ends at the bound
            assert offsets == list(range(17))
            assert consumer.at_end()
            assert consumer.position(TP) == 17
            assert consumer.poll(0.1) == []


class _CountedWaits:
    """Counts a consumer's waits for data (each poll round that found
    nothing to hand out): a poll with nothing to watch waits out its
    timeout once, not round after round until it ends."""

    def __init__(self, consumer: engine.Consumer) -> None:
        self.count = 0
        watched = consumer._watched

        def counted() -> Any:
            self.count += 1
            return watched()

        consumer._watched = counted  # type: ignore[method-assign]


def test_a_poll_with_every_partition_paused_waits_instead_of_spinning(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node") as e:
        _fill(e, 5)
        with e.consumer(auto_offset_reset="earliest") as consumer:
            consumer.assign([TP])
            consumer.pause([TP])
            waits = _CountedWaits(consumer)
            assert consumer.poll(0.3) == []
            assert waits.count == 1


def test_an_async_poll_with_every_partition_paused_waits_instead_of_spinning(
    tmp_path: Path,
) -> None:
    """On a loop a spinning poll also starves every other task of it."""

    async def read(e: engine.Engine) -> tuple[int, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        async with e.consumer(auto_offset_reset="earliest") as consumer:
            consumer.assign([TP])
            consumer.pause([TP])
            waits = _CountedWaits(consumer)
            ticking = asyncio.ensure_future(tick())
            assert await consumer.poll_async(0.3) == []
            ticking.cancel()
            return waits.count, ticks

    with engine.open(tmp_path / "node") as e:
        _fill(e, 5)
        waits, ticks = asyncio.run(read(e))
        assert waits == 1
        assert ticks > 1  # the loop ran other tasks during the wait
