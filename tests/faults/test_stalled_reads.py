"""A read the object store stalls: a Fetch waits for it at most
``remote_fetch_max_wait_ms`` and answers the partition with no records, as
Kafka's DelayedRemoteFetch answers on expiry; the read goes on, one per
partition and offset however often clients ask, and the records come once
the store answers (docs/design/0060). The store is a real local one behind
a wrapper that holds chosen GETs until released."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition as KafkaPartition

import engine
import native
from engine.memory.state_at import TopicState
from engine.protocol.kafka_code import KafkaCode
from s3stream import StreamStoreConfig
from s3stream.fetcher import PendingReads
from tests.faults.two_objects import (
    RECORDS,
    TIMEOUT,
    TOPIC,
    objects_per_partition,
    two_objects,
    values,
)
from tests.s3stream.faults import FaultyStore
from tests.server.in_process import InProcessServer
from tests.server.server_closes import server_closes
from tests.server.test_confluent import make_consumer
from tests.server.wire import Wire, fetch_each

MAX_WAIT_MS = 50
"""The configured bound: short, so the tests wait little for each answer."""
ASKED_AGAIN = 5


@dataclass
class Stalled:
    engine: engine.Engine
    store: FaultyStore
    keys: list[str]
    """The object holding each partition's records, by partition."""

    def stall_reads_of(self, partition: int) -> None:
        self.store.stall_gets(self.keys[partition])

    def pending_reads(self) -> PendingReads:
        return self.engine.store.pending_reads()

    def get_stalled(self) -> bool:
        """Whether the stalled read's GET has reached the store: on a loaded
        machine its fetch thread may start it only after a fetch's wait
        for it ran out."""
        return self.store.stalled_now == 1

    def until_get_stalled(self) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not self.get_stalled():
            assert time.monotonic() < deadline, "the stalled read never reached the store"
            time.sleep(0.01)


@pytest.fixture
def stalled(tmp_path: Path) -> Iterator[Stalled]:
    with two_objects(tmp_path, remote_fetch_max_wait_ms=MAX_WAIT_MS) as (opened, store, keys):
        yield Stalled(opened, store, keys)


def record_values(records: bytes | None) -> list[bytes | None]:
    return [record.value for record in native.decode_records(records or b"")]


def test_a_fetch_answers_the_stalled_partition_empty_and_the_other_with_its_records(
    stalled: Stalled,
) -> None:
    server = InProcessServer(stalled.engine)
    try:
        with Wire(server.bootstrap, timeout=TIMEOUT) as wire:
            # The healthy partition's read, made once and shared by the
            # fetches below (shared_reads.py): a read of its own in each
            # could outlast the short bound on a loaded machine too.
            healthy_alone = fetch_each(12, [(TOPIC, 1, 0)])
            deadline = time.monotonic() + TIMEOUT
            while not wire.request(healthy_alone).responses[0].partitions[0].records:
                assert time.monotonic() < deadline
            before = stalled.pending_reads()
            stalled.stall_reads_of(0)
            fetch = fetch_each(12, [(TOPIC, 0, 0), (TOPIC, 1, 0)])
            for _ in range(ASKED_AGAIN):  # a client asking again while the store stalls
                waiting, healthy = [p for t in wire.request(fetch).responses for p in t.partitions]
                # Kafka's expired DelayedRemoteFetch: no records, no error,
                # the partition's offsets as usual.
                assert (waiting.partition_index, waiting.error_code) == (0, KafkaCode.NONE)
                assert not waiting.records
                assert (waiting.high_watermark, waiting.log_start_offset) == (RECORDS, 0)
                assert (healthy.error_code, record_values(healthy.records)) == (
                    KafkaCode.NONE,
                    values(1),
                )
                # Answered while the read was still under way.
                assert stalled.pending_reads().under_way == 1
            # One read, one GET, of the stalled partition for all of those
            # fetches: the read went on, and each fetch after the first
            # waited for it. (The healthy partition's is the shared one.)
            stalled.until_get_stalled()
            assert stalled.store.stalls == 1
            assert stalled.pending_reads() == (
                before.answered_early + ASKED_AGAIN,
                before.started + 1,
                1,
            )

            stalled.store.release()
            deadline = time.monotonic() + TIMEOUT
            while True:
                answer, _ = [p for t in wire.request(fetch).responses for p in t.partitions]
                if answer.records:
                    break
                assert time.monotonic() < deadline
            assert (answer.error_code, record_values(answer.records)) == (
                KafkaCode.NONE,
                values(0),
            )
            # Nothing left behind. (The healthy partition, asked beside
            # records now, has a read of its own, which may still run.)
            while stalled.pending_reads().under_way:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert not wire.closed_by_server(timeout=0.2)
        assert server.server.stats.connections == 1
    finally:
        server.stop()


def test_a_long_poll_ends_when_its_read_outlasts_the_bound(stalled: Stalled) -> None:
    """A Fetch that would wait a minute for data (more than the client's
    socket allows here) is answered once the read's wait ends, as Kafka
    answers once its DelayedRemoteFetch expires: data cannot arrive at an
    offset below the high watermark, so waiting for more would only hold
    the answer."""
    server = InProcessServer(stalled.engine)
    try:
        with Wire(server.bootstrap, timeout=TIMEOUT) as wire:
            stalled.stall_reads_of(0)
            fetch = fetch_each(12, [(TOPIC, 0, 0)], max_wait_ms=60_000, min_bytes=1)
            [waiting] = [p for t in wire.request(fetch).responses for p in t.partitions]
            assert waiting.error_code == KafkaCode.NONE
            assert not waiting.records
            assert stalled.pending_reads().under_way == 1  # the read goes on
    finally:
        stalled.store.release()
        server.stop()


def test_the_embedded_fetch_async_answers_as_the_wire_and_starts_one_read(
    stalled: Stalled,
) -> None:
    opened = stalled.engine
    stalled.stall_reads_of(0)
    for _ in range(ASKED_AGAIN):  # each on a loop of its own: the read outlives them
        fetched = asyncio.run(opened.fetch_async(TOPIC, 0, 0))
        assert fetched.read_pending
        assert (fetched.records, fetched.next_offset) == ([], 0)
        assert (fetched.high_watermark, fetched.log_start_offset) == (RECORDS, 0)
    stalled.until_get_stalled()
    assert stalled.store.stalls == 1
    assert stalled.pending_reads() == (ASKED_AGAIN, 1, 1)
    # The healthy partition is answered with its records once its own read
    # ends, which on a loaded machine may take longer than the bound too.
    deadline = time.monotonic() + TIMEOUT
    while (healthy := asyncio.run(opened.fetch_async(TOPIC, 1, 0))).read_pending:
        assert time.monotonic() < deadline
    assert [v for batch in healthy.records for v in record_values(bytes(batch))] == values(1)
    stalled.store.release()
    deadline = time.monotonic() + TIMEOUT
    while not (fetched := asyncio.run(opened.fetch_async(TOPIC, 0, 0))).records:
        assert time.monotonic() < deadline
    assert [v for batch in fetched.records for v in record_values(bytes(batch))] == values(0)


def test_a_state_rebuild_waits_out_a_read_that_outlasts_the_bound(stalled: Stalled) -> None:
    """state_at_async reads through the same bounded wait: a read answered
    empty because it outlasted the bound is not the partition's end, or the
    state would silently lack every key past it."""
    opened = stalled.engine
    stalled.stall_reads_of(0)

    async def rebuild_across_the_stall() -> TopicState:
        state = asyncio.ensure_future(opened.state_at_async(TOPIC, datetime.now(UTC)))
        deadline = time.monotonic() + TIMEOUT
        # It asked again after a wait ran out, and the read met the stall.
        while stalled.pending_reads().answered_early < 2 or not stalled.get_stalled():
            assert time.monotonic() < deadline and not state.done()
            await asyncio.sleep(0.01)
        stalled.store.release()
        return await asyncio.wait_for(state, TIMEOUT)

    state = asyncio.run(rebuild_across_the_stall())
    assert sorted(state.values) == sorted(values(0) + values(1))
    assert all(key == kept.value for key, kept in state.values.items())
    assert stalled.store.stalls == 1


def test_a_read_committed_async_poll_asks_again_after_a_read_outlasts_the_bound(
    stalled: Stalled,
) -> None:
    """An answer empty because its read outlasted the bound leaves the
    records below the high watermark to be read: a read_committed consumer
    (a replay's) asks again, not waits for data past the high watermark as
    after records held back by an open transaction, which held its poll,
    and a replay, until their timeout when nothing more was written."""
    opened = stalled.engine
    stalled.stall_reads_of(0)
    consumer = opened.consumer(isolation_level="read_committed", auto_offset_reset="earliest")
    consumer.assign([engine.TopicPartition(TOPIC, 0)])

    async def poll_across_the_stall() -> list[engine.ConsumerRecord]:
        polled = asyncio.ensure_future(consumer.poll_async(3600.0))
        deadline = time.monotonic() + TIMEOUT
        # Answered empty once, the read meeting the stall.
        while stalled.pending_reads().answered_early < 1 or not stalled.get_stalled():
            assert time.monotonic() < deadline and not polled.done()
            await asyncio.sleep(0.01)
        stalled.store.release()
        return await asyncio.wait_for(polled, TIMEOUT)

    try:
        records = asyncio.run(poll_across_the_stall())
    finally:
        consumer.close()
    assert [record.value for record in records] == values(0)
    assert stalled.store.stalls == 1


def test_a_read_committed_async_poll_waits_out_each_bound_and_serves_the_other_partition(
    stalled: Stalled,
) -> None:
    """While one partition's read stalls, an async read_committed poll
    hands out the other partition's records, and asks for the stalled one
    again only after each wait for its read ran out: at most one empty
    answer a bound, however long it polls (a poll that asked at once would
    spin the loop and count many more)."""
    opened = stalled.engine
    stalled.stall_reads_of(0)
    consumer = opened.consumer(isolation_level="read_committed", auto_offset_reset="earliest")
    consumer.assign([engine.TopicPartition(TOPIC, 0), engine.TopicPartition(TOPIC, 1)])
    polled_s = 1.0

    async def poll_during_the_stall() -> tuple[list[engine.ConsumerRecord], float, int]:
        got: list[engine.ConsumerRecord] = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < RECORDS:
            assert time.monotonic() < deadline, got
            got += await consumer.poll_async(1.0)
        stalled.until_get_stalled()
        early = stalled.pending_reads().answered_early
        began = time.monotonic()
        # Nothing more to read: the poll waits on the stalled read alone.
        got += await consumer.poll_async(polled_s)
        return got, time.monotonic() - began, stalled.pending_reads().answered_early - early

    try:
        records, elapsed, answered_early = asyncio.run(poll_during_the_stall())
        assert [(r.partition, r.value) for r in records] == [(1, v) for v in values(1)]
        assert stalled.store.stalls == 1
        assert 0 < answered_early <= elapsed / (MAX_WAIT_MS / 1000) + 1
        stalled.store.release()
        deadline = time.monotonic() + TIMEOUT
        late: list[engine.ConsumerRecord] = []
        while len(late) < RECORDS:
            assert time.monotonic() < deadline, late
            late += consumer.poll(1.0)
        assert [(r.partition, r.value) for r in late] == [(0, v) for v in values(0)]
    finally:
        consumer.close()


def test_a_confluent_consumer_reads_every_record_once_after_the_store_is_released(
    stalled: Stalled,
) -> None:
    server = InProcessServer(stalled.engine)
    consumer = make_consumer(server.bootstrap, **{"fetch.wait.max.ms": 100})
    received: dict[int, list[bytes]] = {0: [], 1: []}
    deadline = time.monotonic() + TIMEOUT

    def poll() -> None:
        assert time.monotonic() < deadline, received
        message = consumer.poll(0.1)
        if message is not None and message.error() is None:
            received[message.partition()].append(message.value())

    try:
        stalled.stall_reads_of(0)
        consumer.assign([KafkaPartition(TOPIC, 0, 0), KafkaPartition(TOPIC, 1, 0)])
        with server_closes() as closes:
            while (
                len(received[1]) < RECORDS
                or stalled.pending_reads().answered_early < ASKED_AGAIN
                or not stalled.get_stalled()
            ):
                poll()
            assert received[0] == []
            assert (stalled.store.stalls, stalled.store.stalled_now) == (1, 1)
            # However often the consumer asked, one read of partition 0 at
            # offset 0, under way still. (Partition 1's reads are not counted:
            # on a loaded machine one may outlast the bound and be made again.)
            assert stalled.pending_reads().under_way == 1
            stalled.store.release()
            while len(received[0]) < RECORDS:
                poll()
            for _ in range(5):  # nothing more arrives: no record twice
                poll()
        assert received == {0: values(0), 1: values(1)}
        # No connection closed by the server (librdkafka may open one of
        # its own accord: tests/server/server_closes.py).
        assert closes.closes == []
    finally:
        consumer.close()
        server.stop()


def test_the_bound_is_at_least_one_millisecond_as_in_kafka() -> None:
    with pytest.raises(ValueError, match="remote_fetch_max_wait_ms"):
        StreamStoreConfig(remote_fetch_max_wait_ms=0)
    assert StreamStoreConfig().remote_fetch_max_wait_ms == 500  # Kafka's default


def test_an_async_replay_goes_on_once_a_read_that_outlasts_the_bound_finishes(
    stalled: Stalled,
) -> None:
    """An async replay reads through the same bounded wait: a fetch answered
    empty because its read outlasted the bound is not the partition's end:
    the replay goes on to every record below the vector, each once."""
    opened = stalled.engine
    vector = opened.snapshot([TOPIC])
    stalled.stall_reads_of(0)

    async def replay_across_the_stall() -> list[bytes | None]:
        async def read_all() -> list[bytes | None]:
            async with opened.replay(vector, timeout=TIMEOUT) as replay:
                return [record.value async for record in replay]

        replayed = asyncio.ensure_future(read_all())
        deadline = time.monotonic() + TIMEOUT
        while stalled.pending_reads().answered_early < 1 or not stalled.get_stalled():
            assert time.monotonic() < deadline and not replayed.done()
            await asyncio.sleep(0.01)
        stalled.store.release()
        return await asyncio.wait_for(replayed, TIMEOUT)

    replayed = asyncio.run(replay_across_the_stall())
    assert sorted(v for v in replayed if v is not None) == sorted(values(0) + values(1))
    assert stalled.store.stalls == 1


def test_the_blocking_fetch_answers_as_fetch_async_and_starts_one_read(stalled: Stalled) -> None:
    """Engine.fetch waits for a stalled read at most the bound, as
    fetch_async does, and answers "no records yet" (read_pending), never
    the partition's end; asking again waits on the same read."""
    opened = stalled.engine
    stalled.stall_reads_of(0)
    with ThreadPoolExecutor(1) as caller:
        try:
            for _ in range(ASKED_AGAIN):
                # On a thread of its own: a fetch without a bound would
                # wait until the release below.
                fetched = caller.submit(opened.fetch, TOPIC, 0, 0).result(TIMEOUT)
                assert fetched.read_pending
                assert (fetched.records, fetched.next_offset) == ([], 0)
                assert (fetched.high_watermark, fetched.log_start_offset) == (RECORDS, 0)
            stalled.until_get_stalled()
            assert stalled.store.stalls == 1
            assert stalled.pending_reads() == (ASKED_AGAIN, 1, 1)
        finally:
            stalled.store.release()
    deadline = time.monotonic() + TIMEOUT
    while not (fetched := opened.fetch(TOPIC, 0, 0)).records:
        assert fetched.read_pending and time.monotonic() < deadline
    assert [v for batch in fetched.records for v in record_values(bytes(batch))] == values(0)


def test_a_blocking_read_committed_poll_asks_again_after_a_read_outlasts_the_bound(
    stalled: Stalled,
) -> None:
    """The blocking poll reads through Engine.fetch: an answer empty for a
    stalled read is asked again, and the records come once the store
    answers. The engine's own blocking readers (lookup, state_at) read on
    through their partition and wait for the read."""
    opened = stalled.engine
    stalled.stall_reads_of(0)
    consumer = opened.consumer(isolation_level="read_committed", auto_offset_reset="earliest")
    consumer.assign([engine.TopicPartition(TOPIC, 0)])
    with ThreadPoolExecutor(3) as callers:
        try:
            polled = callers.submit(consumer.poll, 3600.0)
            rebuilt = callers.submit(opened.state_at, TOPIC, datetime.now(UTC))
            found = callers.submit(opened.lookup, TOPIC, "none", "x")
            deadline = time.monotonic() + TIMEOUT
            # The poll was answered empty and asked again; the reads met
            # the stall (the block cache shares one GET among them).
            while stalled.pending_reads().answered_early < 2 or stalled.store.stalled_now < 1:
                assert time.monotonic() < deadline and not polled.done()
                time.sleep(0.01)
            assert not rebuilt.done() and not found.done()
        finally:
            stalled.store.release()
        records = polled.result(TIMEOUT)
        state = rebuilt.result(TIMEOUT)
        assert found.result(TIMEOUT) == []
    consumer.close()
    assert [record.value for record in records] == values(0)
    assert sorted(state.values) == sorted(values(0) + values(1))


def test_an_async_poll_reads_its_partitions_at_once(tmp_path: Path) -> None:
    """Within one poll step the async consumer fetches its partitions at
    once: both partitions' object reads are under way together (in turn,
    the second would start only after the first's wait ended, costing a
    bound per stalled partition). Records still come in each partition's
    order, and max_records still bounds each poll."""
    with two_objects(tmp_path, remote_fetch_max_wait_ms=600_000) as (opened, store, keys):
        store.stall_gets(os.path.commonpath(keys))
        consumer = opened.consumer(auto_offset_reset="earliest")
        consumer.assign([engine.TopicPartition(TOPIC, 0), engine.TopicPartition(TOPIC, 1)])

        async def poll_both() -> list[engine.ConsumerRecord]:
            polled = asyncio.ensure_future(consumer.poll_async(TIMEOUT, max_records=3))
            deadline = time.monotonic() + TIMEOUT
            try:
                while store.stalled_now < 2:
                    assert time.monotonic() < deadline and not polled.done()
                    await asyncio.sleep(0.01)
            finally:
                store.release()
            got = await asyncio.wait_for(polled, TIMEOUT)
            assert len(got) == 3
            while len(got) < 2 * RECORDS:
                more = await consumer.poll_async(TIMEOUT, max_records=3)
                assert 0 < len(more) <= 3
                got += more
            return got

        try:
            records = asyncio.run(poll_both())
        finally:
            consumer.close()
    for partition in (0, 1):
        assert [r.value for r in records if r.partition == partition] == values(partition)
    assert store.stalls == 2


def test_an_async_poll_waits_for_more_stalled_partitions_than_a_group_together(
    tmp_path: Path,
) -> None:
    """An async poll of more partitions than were once fetched in a group
    (16, each group waited for before the next started) has every stalled
    partition's object read under way at once: the poll waits for the
    slowest, not for one read per group. The reads stall until released
    (the bound, ten minutes, never runs out here); records come in each
    partition's order and max_records bounds each poll."""
    partitions = 20
    with objects_per_partition(
        tmp_path, partitions, remote_fetch_max_wait_ms=600_000, read_workers=partitions
    ) as (opened, store, keys):
        store.stall_gets(os.path.commonpath(keys))
        consumer = opened.consumer(auto_offset_reset="earliest")
        consumer.assign([engine.TopicPartition(TOPIC, p) for p in range(partitions)])

        async def poll_all() -> list[engine.ConsumerRecord]:
            polled = asyncio.ensure_future(consumer.poll_async(TIMEOUT, max_records=7))
            deadline = time.monotonic() + TIMEOUT
            try:
                while store.stalled_now < partitions:
                    assert time.monotonic() < deadline, f"{store.stalled_now} reads under way"
                    assert not polled.done()
                    await asyncio.sleep(0.01)
            finally:
                store.release()
            got = await asyncio.wait_for(polled, TIMEOUT)
            assert len(got) == 7
            while len(got) < partitions * RECORDS:
                more = await consumer.poll_async(TIMEOUT, max_records=7)
                assert 0 < len(more) <= 7
                got += more
            return got

        try:
            records = asyncio.run(poll_all())
        finally:
            consumer.close()
    for partition in range(partitions):
        assert [r.value for r in records if r.partition == partition] == values(partition)
    assert store.stalls == partitions


@pytest.mark.parametrize("moved", ["seek", "pause", "unassign"])
def test_a_partition_moved_while_its_fetch_waits_drops_that_fetchs_answer(
    tmp_path: Path, moved: str
) -> None:
    """A partition sought, paused or unassigned by another task while an
    async poll's fetches wait on the store: that fetch's answer is stale and
    dropped, as Kafka's consumer drops a fetch whose offset is no longer
    the partition's position; the other partition's records come as
    fetched. Nothing comes from before the seek, nothing of a paused
    partition, and an unassigned one stays unassigned."""
    tp0, tp1 = engine.TopicPartition(TOPIC, 0), engine.TopicPartition(TOPIC, 1)
    with two_objects(tmp_path, remote_fetch_max_wait_ms=600_000) as (opened, store, keys):
        store.stall_gets(os.path.commonpath(keys))
        consumer = opened.consumer(auto_offset_reset="earliest")
        consumer.assign([tp0, tp1])

        async def poll_across_the_move() -> list[engine.ConsumerRecord]:
            polled = asyncio.ensure_future(consumer.poll_async(TIMEOUT))
            deadline = time.monotonic() + TIMEOUT
            try:
                while store.stalled_now < 2:
                    assert time.monotonic() < deadline and not polled.done()
                    await asyncio.sleep(0.01)
                if moved == "seek":
                    consumer.seek(tp0, 2)
                elif moved == "pause":
                    consumer.pause([tp0])
                else:
                    consumer.assign([tp1])
            finally:
                store.release()
            got = await asyncio.wait_for(polled, TIMEOUT)
            while len([r for r in got if r.partition == 1]) < RECORDS:
                got += await consumer.poll_async(TIMEOUT)
            if moved == "seek":
                while len([r for r in got if r.partition == 0]) < RECORDS - 2:
                    got += await consumer.poll_async(TIMEOUT)
            return got

        try:
            records = asyncio.run(poll_across_the_move())
            assigned = consumer.assignment()
        finally:
            consumer.close()
    assert [r.value for r in records if r.partition == 1] == values(1)
    zero = [r.value for r in records if r.partition == 0]
    assert zero == (values(0)[2:] if moved == "seek" else [])
    assert set(assigned) == ({tp1} if moved == "unassign" else {tp0, tp1})


def test_an_async_poll_cancelled_while_its_fetches_wait_moves_no_position(tmp_path: Path) -> None:
    """Cancelling a poll whose partitions' reads are under way cancels its
    fetches with it: no answer arriving later moves a position, and the
    next polls hand out every record once, in each partition's order."""
    tp0, tp1 = engine.TopicPartition(TOPIC, 0), engine.TopicPartition(TOPIC, 1)
    with two_objects(tmp_path, remote_fetch_max_wait_ms=600_000) as (opened, store, keys):
        store.stall_gets(os.path.commonpath(keys))
        consumer = opened.consumer(auto_offset_reset="earliest")
        consumer.assign([tp0, tp1])

        async def cancel_then_poll() -> list[engine.ConsumerRecord]:
            polled = asyncio.ensure_future(consumer.poll_async(TIMEOUT))
            deadline = time.monotonic() + TIMEOUT
            try:
                while store.stalled_now < 2:
                    assert time.monotonic() < deadline and not polled.done()
                    await asyncio.sleep(0.01)
                polled.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await polled
            finally:
                store.release()
            while opened.store.pending_reads().under_way:  # the reads end, answered to nobody
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            assert (consumer.position(tp0), consumer.position(tp1)) == (0, 0)
            got: list[engine.ConsumerRecord] = []
            while len(got) < 2 * RECORDS:
                more = await consumer.poll_async(TIMEOUT)
                assert more
                got += more
            return got

        try:
            records = asyncio.run(cancel_then_poll())
        finally:
            consumer.close()
    for partition in (0, 1):
        assert [r.value for r in records if r.partition == partition] == values(partition)
