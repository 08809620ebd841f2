"""Reads from object storage rest before they are answered while live
traffic (appends, reads the log cache answers) is present, so a replay
leaves CPU time to live produce and tail reads; alone, they do not."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from s3stream import StreamStore, StreamStoreConfig
from s3stream.replay_pace import LIVE_WINDOW_S, MOST_REST_S, ReplayPace
from s3stream.store import MemoryStore
from tests.s3stream.test_read_path import CONFIG, write_stream_objects
from tests.s3stream.test_stream_store import fill, new_stream


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_no_rest_without_live_traffic() -> None:
    clock = Clock()
    pace = ReplayPace(1.0, clock)
    started = clock.now
    clock.now += 0.04
    assert pace.rest_after(started) == 0.0


def test_a_read_beside_live_traffic_rests_as_long_as_it_took_times_the_ratio() -> None:
    clock = Clock()
    pace = ReplayPace(0.5, clock)
    pace.live()
    started = clock.now
    clock.now += 0.04
    assert pace.rest_after(started) == pytest.approx(0.02)
    # Live traffic during the read counts too.
    clock.now += 10
    started = clock.now
    clock.now += 0.02
    pace.live()
    clock.now += 0.02
    assert pace.rest_after(started) == pytest.approx(0.02)


def test_by_default_a_read_beside_live_traffic_rests_half_as_long_as_it_took() -> None:
    # The replay keeps at least two thirds of its pace beside live traffic
    # (three quarters and more in the burst benchmark: its transfers are
    # not rested); longer rests bought live latency only on a busy machine.
    clock = Clock()
    pace = ReplayPace(StreamStoreConfig().replay_rest_ratio, clock)
    pace.live()
    started = clock.now
    clock.now += 0.04
    assert pace.rest_after(started) == pytest.approx(0.04 * 0.5)


def test_live_traffic_long_before_the_read_does_not_count() -> None:
    clock = Clock()
    pace = ReplayPace(1.0, clock)
    pace.live()
    clock.now += LIVE_WINDOW_S + 0.01
    started = clock.now
    clock.now += 0.04
    assert pace.rest_after(started) == 0.0


def test_the_rest_is_bounded_and_off_at_ratio_zero() -> None:
    clock = Clock()
    for ratio, rest in ((1.0, MOST_REST_S), (0.0, 0.0)):
        pace = ReplayPace(ratio, clock)
        pace.live()
        started = clock.now
        clock.now += 5.0  # a read slowed by a failing store
        assert pace.rest_after(started) == rest


class RecordingPace(ReplayPace):
    """Records the rest given to each read from object storage."""

    def __init__(self, rest_ratio: float, took_s: float) -> None:
        self._took_s = took_s
        # The pace's clock stands still: live traffic seen while a read ran
        # counts however long a loaded machine took to run it (past
        # LIVE_WINDOW_S it would not).
        super().__init__(rest_ratio, Clock())
        self.rests: list[float] = []

    def rest_after(self, started: float) -> float:
        # Every read is taken to have lasted took_s: the rest is then known
        # whatever the machine's speed.
        rest = super().rest_after(self.now() - self._took_s)
        self.rests.append(rest)
        return rest


def _store_with_history(tmp_path: Path, pace: RecordingPace) -> tuple[StreamStore, int, int]:
    """A fresh store over three uploaded stream objects (nothing cached),
    with ``pace``, and a live stream whose data the log cache holds."""
    bucket = MemoryStore()
    history = write_stream_objects(tmp_path, bucket, uploads=3)
    config = dataclasses.replace(CONFIG, log_cache_bytes=CONFIG.upload_bytes)
    store = StreamStore.open(tmp_path / "reader", bucket, config)
    store._fetcher.pace = pace
    live = new_stream(store)
    return store, history, live


def test_a_replay_alone_reads_without_a_rest(tmp_path: Path) -> None:
    pace = RecordingPace(1.0, took_s=0.05)
    store, history, _ = _store_with_history(tmp_path, pace)
    pace._live_at = -float("inf")  # the live stream's creation was no traffic

    async def replay() -> None:
        result = await store.fetch_async(history, 0, 4096)
        assert result.batches

    with store:
        asyncio.run(replay())
    assert pace.rests == [0.0]


def test_a_tail_read_is_answered_while_a_replay_read_rests(tmp_path: Path) -> None:
    pace = RecordingPace(1.0, took_s=0.05)
    store, history, live = _store_with_history(tmp_path, pace)
    answered: list[str] = []

    async def replay() -> None:
        result = await store.fetch_async(history, 0, 4096)
        assert result.batches
        answered.append("replay")

    async def tail() -> None:
        fill(store, live, 2)  # an append: live traffic
        while not pace.rests:  # the replay's read is back from its thread
            await asyncio.sleep(0.001)
        result = await store.fetch_async(live, 0, 4096)  # the log cache answers
        assert result.batches
        answered.append("tail")

    async def both() -> None:
        await asyncio.wait_for(asyncio.gather(replay(), tail()), timeout=10)

    with store:
        asyncio.run(both())
    assert pace.rests == [pytest.approx(0.05, abs=0.01)]
    assert answered == ["tail", "replay"]


def test_a_read_at_the_end_with_nothing_to_answer_is_no_live_traffic(tmp_path: Path) -> None:
    """A replay's Fetch names every partition it is assigned, those it has
    read to their end too (or empty ones): answered with nothing, they are
    its own, not live traffic; else a replay alone would rest and load one
    span at a time. Records at the end come by appends, which count."""
    pace = RecordingPace(1.0, took_s=0.05)
    store, history, live = _store_with_history(tmp_path, pace)
    pace._live_at = -float("inf")  # the live stream's creation was no traffic

    async def replay() -> None:
        caught_up = await store.fetch_async(live, 0, 4096)  # empty: at its end
        assert not caught_up.batches
        result = await store.fetch_async(history, 0, 4096)
        assert result.batches

    with store:
        asyncio.run(replay())
        assert not store.reader.gate.beside_live()
    assert pace.rests == [0.0]
