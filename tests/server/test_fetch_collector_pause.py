"""A Fetch reads its partitions and builds its answer with the garbage
collector paused (engine/gc_pause.py, PausedWhileRunning), and leaves it
running: a Fetch of thousands of partitions otherwise sets off collections
that walk the objects it holds, full ones among them."""

from __future__ import annotations

import datetime
import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.protocol.apis import ApiKey, load_request_schema
from engine.server.handlers import fetch
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire, build

PARTITIONS = 4


@pytest.fixture
def served(tmp_path: Path) -> Iterator[InProcessServer]:
    with engine.open(tmp_path / "data", config=engine.EngineConfig.small()) as opened:
        opened.create_topic("t", PARTITIONS)
        with opened.producer() as producer:
            for partition in range(PARTITIONS):
                producer.send("t", b"v", partition=partition).result(30)
        server = InProcessServer(opened)
        try:
            yield server
        finally:
            server.stop()


def _request(offset: int) -> Any:
    return build(
        load_request_schema(ApiKey.FETCH, 12),
        replica_id=-1,
        max_wait=datetime.timedelta(0),
        min_bytes=0,
        max_bytes=1 << 20,
        isolation_level=0,
        session_epoch=-1,
        topics=[
            {
                "topic": "t",
                "partitions": [
                    {"partition": p, "fetch_offset": offset, "partition_max_bytes": 1 << 20}
                    for p in range(PARTITIONS)
                ],
            }
        ],
    )


@pytest.mark.parametrize("offset", [0, 1], ids=["records", "caught-up"])
def test_the_reads_and_the_answer_are_made_with_the_collector_paused(
    served: InProcessServer, monkeypatch: pytest.MonkeyPatch, offset: int
) -> None:
    enabled: dict[str, list[bool]] = {"look": [], "read": [], "answer": []}
    look, read, response = fetch._look, fetch._read, fetch._response
    read_at_once = fetch._read_at_once

    def looked(*args: Any) -> Any:
        enabled["look"].append(gc.isenabled())
        return look(*args)

    async def reading(*args: Any) -> Any:
        enabled["read"].append(gc.isenabled())
        return await read(*args)

    def read_now(*args: Any) -> Any:  # a tail read, made without a coroutine
        enabled["read"].append(gc.isenabled())
        return read_at_once(*args)

    def answering(*args: Any) -> Any:
        enabled["answer"].append(gc.isenabled())
        return response(*args)

    run_looks = fetch._run_looks

    def run_looked(*args: Any) -> Any:  # a run of a topic's partitions, looked at in one pass
        looks, end = run_looks(*args)
        enabled["look"].extend([gc.isenabled()] * len(looks))
        return looks, end

    monkeypatch.setattr(fetch, "_look", looked)
    monkeypatch.setattr(fetch, "_run_looks", run_looked)
    monkeypatch.setattr(fetch, "_read", reading)
    monkeypatch.setattr(fetch, "_read_at_once", read_now)
    monkeypatch.setattr(fetch, "_response", answering)
    assert served.on_loop(gc.isenabled)
    with Wire(served.bootstrap) as wire:
        (topic,) = wire.request(_request(offset)).responses
    assert [bool(p.records) for p in topic.partitions] == [offset == 0] * PARTITIONS
    assert enabled["look"] == [False] * PARTITIONS
    assert enabled["read"] == ([False] * PARTITIONS if offset == 0 else [])
    assert enabled["answer"] == [False]
    assert served.on_loop(gc.isenabled)  # and running again after
