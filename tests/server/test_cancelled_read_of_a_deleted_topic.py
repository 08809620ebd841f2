"""A read cancelled while it waits on its object read, of a partition
whose topic was deleted meanwhile, ends cancelled: the cancellation (a
closed connection, a Fetch's wait given up) is the caller's, never an
UnknownTopic, or the task that cancelled it would not see it end as it
asked. Only an error of the read itself says the topic is gone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

import engine
from s3stream.fetcher import Fetcher
from tests.server.fetching import send_records
from tests.server.test_fetch_cold_read import COLD

RECORDS = 4


@pytest.fixture
def uploaded(tmp_path: Path) -> Iterator[engine.Engine]:
    with engine.open(tmp_path / "data", config=engine.EngineConfig(store=COLD)) as opened:
        opened.create_topic("t", 1)
        send_records(opened, "t", {0: RECORDS})
        assert opened.store.flush(30)
        yield opened


def test_a_read_of_a_deleted_topic_cancelled_under_its_object_read_ends_cancelled(
    uploaded: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    never_answered: Future[Any] = Future()
    reached = asyncio.Event()

    def deleted_then_held(self: Fetcher, *args: Any) -> tuple[Future[Any], bool]:
        uploaded.delete_topic("t")
        reached.set()
        return never_answered, False

    monkeypatch.setattr(Fetcher, "_object_read", deleted_then_held)

    async def cancelled_read() -> asyncio.Task[Any]:
        read = asyncio.ensure_future(uploaded.fetch_async("t", 0, 1, 1 << 20))
        await asyncio.wait_for(reached.wait(), 30)
        read.cancel()
        await asyncio.wait([read], timeout=30)
        return read

    read = asyncio.run(cancelled_read())
    assert read.done()
    assert read.cancelled(), f"the read ended with {read.exception()!r}"
