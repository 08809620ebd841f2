"""Engine.fetch_leader_async(cold=True) skips the log cache's check its
caller made: the object read it goes to reads the log cache too, so a
caller whose check went stale (data appended, uploaded or trimmed since)
still gets the answer a read of its own gives, never other data."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import engine
from s3stream import StreamStoreConfig

RECORDS = 6
TIMEOUT = 30.0


@pytest.fixture(scope="module")
def opened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[engine.Engine]:
    """One partition whose first records are only in objects, its last
    in the log cache too, its log start moved past the first."""
    data = tmp_path_factory.mktemp("cold-fetch") / "data"
    store = StreamStoreConfig(
        upload_interval_s=3600,
        compaction_interval_s=3600,
        log_cache_bytes=0,  # once uploaded, a read needs an object
        remote_fetch_max_wait_ms=60_000,  # a loaded machine's slow read is still answered
    )
    with engine.open(data, config=engine.EngineConfig(store=store)) as served:
        served.create_topic("t", 1)
        with served.producer() as producer:
            for i in range(RECORDS):
                producer.send("t", b"v%d" % i, partition=0).result(TIMEOUT)
                if i == RECORDS // 2:
                    assert served.store.flush(TIMEOUT)
        served.delete_records("t", 0, 1)
        stream = served.partition("t", 0).stream_id
        assert served.store.fetch_hot(stream, 1) is None  # an object read
        assert served.store.fetch_hot(stream, RECORDS - 1) is not None  # the log cache's
        yield served


def _answer(opened: engine.Engine, offset: int, committed: bool, cold: bool) -> Any:
    leader = opened.partition("t", 0)

    async def read() -> Any:
        return await opened.fetch_leader_async(leader, offset, 1 << 20, committed, cold=cold)

    try:
        fetched = asyncio.run(read())
    except engine.OffsetOutOfRange:
        return "out of range"
    return (
        fetched.records,
        fetched.next_offset,
        fetched.high_watermark,
        fetched.log_start_offset,
        fetched.last_stable_offset,
        fetched.aborted_transactions,
    )


@pytest.mark.parametrize("committed", [False, True])
@pytest.mark.parametrize("offset", [0, 1, 2, RECORDS - 1, RECORDS, RECORDS + 1])
def test_a_cold_read_answers_as_a_read_that_checks_the_log_cache(
    opened: engine.Engine, offset: int, committed: bool
) -> None:
    """Below the log start, from objects, from the log cache, at the end,
    past it."""
    assert _answer(opened, offset, committed, cold=True) == _answer(
        opened, offset, committed, cold=False
    )
