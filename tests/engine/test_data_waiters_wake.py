"""Consumers waiting on one event loop for the same partition's growth (a
long-polling Fetch each, in fan-out) are woken together, with one hop from
the notifying thread to their loop, not one each."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import engine

WAITERS = 8


def test_one_growth_wakes_every_waiter_of_a_loop_with_one_hop(tmp_path: Path) -> None:
    with engine.open(tmp_path / "data", config=engine.EngineConfig.small()) as opened:
        opened.create_topic("t", 1)
        hops: list[str] = []

        async def main() -> list[bool]:
            loop = asyncio.get_running_loop()
            call_soon_threadsafe = loop.call_soon_threadsafe

            def counted(callback: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
                hops.append(getattr(callback, "__name__", repr(callback)))
                return call_soon_threadsafe(callback, *args, **kwargs)

            loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
            waits = [
                asyncio.ensure_future(opened.wait_for_data_async({("t", 0): 0}, 30))
                for _ in range(WAITERS)
            ]
            while sum(map(len, opened._waiters.async_waiters.values())) < WAITERS:
                await asyncio.sleep(0.005)
            producer = threading.Thread(target=_produce, args=(opened,))
            producer.start()
            try:
                return await asyncio.wait_for(asyncio.gather(*waits), 30)
            finally:
                await asyncio.to_thread(producer.join, 30)

        woken = asyncio.run(main())
    assert woken == [True] * WAITERS
    assert [hop for hop in hops if "wake" in hop] == ["_wake_all"]


def _produce(opened: engine.Engine) -> None:
    with opened.producer() as producer:
        producer.send("t", b"grown", partition=0).result(30)
