"""A Fetch reads its partitions and builds its answer with the garbage
collector paused (engine/gc_pause.py, PausedWhileRunning), and leaves it
running: a Fetch of thousands of partitions otherwise sets off collections
that walk the objects it holds, full ones among them."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.server.handlers import fetch
from tests.server.fetching import engine_with_records, fetch_request
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire

PARTITIONS = 4


@pytest.fixture
def served(tmp_path: Path) -> Iterator[InProcessServer]:
    with engine_with_records(
        tmp_path / "data", PARTITIONS, dict.fromkeys(range(PARTITIONS), 1)
    ) as opened:
        server = InProcessServer(opened)
        try:
            yield server
        finally:
            server.stop()


def _request(offset: int) -> Any:
    return fetch_request(12, [("t", [(p, offset) for p in range(PARTITIONS)])])


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
