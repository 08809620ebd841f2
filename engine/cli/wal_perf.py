"""How fast the write-ahead log acknowledges on this disk.

Concurrent appenders append fixed-size records for a while; each append is
timed until it is durable. Appenders are asyncio tasks on one event loop (how
the wire server appends) or threads (how embedded code may). With ``batch``
above 1 each call appends that many records at once (``append_many``), and
each call is timed.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from wal import Append, Durability, WriteAheadLog

MODES = ("asyncio", "threads")


@dataclass
class PerfResult:
    mode: str
    writers: int
    record_size: int
    durability: str
    seconds: float
    appends: int
    syncs: int
    latencies: list[float] = field(repr=False)
    batch: int = 1

    @property
    def appends_per_second(self) -> float:
        return self.appends / self.seconds

    @property
    def megabytes_per_second(self) -> float:
        return self.appends * self.record_size / self.seconds / 1e6

    @property
    def appends_per_sync(self) -> float:
        return self.appends / self.syncs if self.syncs else float("inf")

    def latency_ms(self, quantile: float) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0] * 1000 if self.latencies else 0.0
        cuts = statistics.quantiles(self.latencies, n=100, method="inclusive")
        return cuts[round(quantile * 100) - 1] * 1000

    def summary(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "writers": self.writers,
            "record_size": self.record_size,
            "durability": self.durability,
            "batch": self.batch,
            "appends_per_second": round(self.appends_per_second, 1),
            "megabytes_per_second": round(self.megabytes_per_second, 2),
            "p50_ms": round(self.latency_ms(0.50), 3),
            "p99_ms": round(self.latency_ms(0.99), 3),
            "appends_per_sync": round(self.appends_per_sync, 2),
        }


def run_wal_perf(
    directory: str,
    *,
    writers: int = 16,
    record_size: int = 1024,
    seconds: float = 3.0,
    durability: Durability = Durability.FSYNC,
    mode: str = "asyncio",
    batch: int = 1,
) -> PerfResult:
    """Appends from ``writers`` tasks or threads for ``seconds`` into a new log,
    ``batch`` records per call."""
    payload = os.urandom(record_size)
    latencies: list[list[float]] = [[] for _ in range(writers)]
    with WriteAheadLog(directory, durability=durability) as log:
        if mode == "asyncio":
            elapsed = _new_event_loop().run_until_complete(
                _append_from_tasks(log, payload, latencies, seconds, batch)
            )
        elif mode == "threads":
            elapsed = _append_from_threads(log, payload, latencies, seconds, batch)
        else:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        stats = log.stats
    merged = [latency for mine in latencies for latency in mine]
    return PerfResult(
        mode,
        writers,
        record_size,
        durability.value,
        elapsed,
        stats.appends,
        stats.syncs,
        merged,
        batch,
    )


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:  # uvloop does not build everywhere; asyncio's loop works too
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


async def _append_from_tasks(
    log: WriteAheadLog, payload: bytes, latencies: list[list[float]], seconds: float, batch: int
) -> float:
    deadline = time.perf_counter() + seconds
    appends = [Append(payload)] * batch

    async def appender(mine: list[float]) -> None:
        while (began := time.perf_counter()) < deadline:
            if batch > 1:
                await log.append_many_async(appends)
            else:
                await log.append_async(payload)
            mine.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(appender(mine) for mine in latencies))
    return time.perf_counter() - began


def _append_from_threads(
    log: WriteAheadLog, payload: bytes, latencies: list[list[float]], seconds: float, batch: int
) -> float:
    start = threading.Barrier(len(latencies) + 1)
    deadline = 0.0
    appends = [Append(payload)] * batch

    def appender(mine: list[float]) -> None:
        start.wait()
        while (began := time.perf_counter()) < deadline:
            if batch > 1:
                log.append_many(appends)
            else:
                log.append(payload)
            mine.append(time.perf_counter() - began)

    threads = [threading.Thread(target=appender, args=(mine,)) for mine in latencies]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began
