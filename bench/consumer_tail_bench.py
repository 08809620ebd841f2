"""What an embedded consumer tailing one partition costs its own thread.

    python bench/consumer_tail_bench.py [--records N] [--rounds N] [--json]

One engine, one topic of one partition. A producer thread appends one
record at a time (each durable before the next) and waits until the
consumer has it; the consumer polls with a timeout, so every poll reads
nothing, waits, is woken by the record's growth and reads it: the tail
path (a fill, a wait, a wake-up, a fill). ``sync`` polls on a thread
(``poll``); ``async`` on an event loop (``poll_async``). The figure is the
consumer's thread CPU time (``time.thread_time``) per record, which the
producer's fsyncs leave out; compare revisions with it in alternating
runs on one machine (its load moves it, run to run).

``--steps`` times the steps of that path instead, each the best of seven
runs of ``--records`` calls on a caught-up partition: a ``poll(0)`` and a
``poll_async(0)`` (a fill that reads nothing, no wait), and a wait for
data built and ended at once (``AwaitData`` with no time left, on a thread
and on a loop). Less noisy than the tail; with ``PYTHONPATH`` naming
another checkout it times that one (whose consumer built its wait from
``_wanted``, before it watched what it read).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import engine
from engine.client.consumer import Consumer
from engine.client.poll_steps import AwaitData
from native import RecordSpec, encode_batch

TOPIC = "tail"
TIMEOUT_S = 30.0


def _tail(api: str, records: int, scratch: Path) -> float:
    """Thread CPU seconds of the consumer per record."""
    with engine.open(scratch / api, config=engine.EngineConfig.small()) as e:
        e.create_topic(TOPIC, 1)
        consumer = e.consumer(auto_offset_reset="latest")
        consumer.assign([(TOPIC, 0)])
        consumer.poll(0.0)
        got = threading.Semaphore(0)
        cpu: list[float] = []

        def consume_sync() -> None:
            started = time.thread_time()
            read = 0
            while read < records:
                polled = consumer.poll(TIMEOUT_S)
                read += len(polled)
                for _ in polled:
                    got.release()
            cpu.append(time.thread_time() - started)

        async def consume_async(c: Consumer) -> None:
            started = time.thread_time()
            read = 0
            while read < records:
                polled = await c.poll_async(TIMEOUT_S)
                read += len(polled)
                for _ in polled:
                    got.release()
            cpu.append(time.thread_time() - started)

        run: Callable[[], None] = (
            consume_sync if api == "sync" else lambda: asyncio.run(consume_async(consumer))
        )
        thread = threading.Thread(target=run, name=f"consumer-{api}")
        thread.start()
        record = encode_batch([RecordSpec(0, None, b"x" * 100)])
        for _ in range(records):
            e.produce(TOPIC, 0, record)
            if not got.acquire(timeout=TIMEOUT_S):
                raise RuntimeError("the consumer stopped reading")
        thread.join(TIMEOUT_S)
        consumer.close()
        return cpu[0] / records


REPEATS = 7


def _best(calls: int, step: Callable[[], object]) -> float:
    """The fastest of REPEATS runs of ``calls`` calls, in µs per call."""
    runs = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        for _ in range(calls):
            step()
        runs.append((time.perf_counter() - started) / calls * 1e6)
    return min(runs)


def _steps(calls: int, scratch: Path) -> dict[str, float]:
    with engine.open(scratch / "steps", config=engine.EngineConfig.small()) as e:
        e.create_topic(TOPIC, 1)
        e.produce(TOPIC, 0, encode_batch([RecordSpec(0, None, b"x")]))
        consumer = e.consumer(auto_offset_reset="earliest")
        consumer.assign([(TOPIC, 0)])
        consumer.poll(0.0)
        # What the poll hands its wait (a revision before 0098: positions by name).
        watched = getattr(consumer, "_watched", None) or consumer._wanted  # type: ignore[attr-defined]
        loop = asyncio.new_event_loop()

        async def calls_async(step: Callable[[], Any]) -> None:
            for _ in range(calls):
                await step()

        def on_loop(step: Callable[[], Any]) -> Callable[[], object]:
            return lambda: loop.run_until_complete(calls_async(step))

        figures = {
            "poll0_us": _best(calls, lambda: consumer.poll(0.0)),
            "poll_async0_us": _best(1, on_loop(lambda: consumer.poll_async(0.0))) / calls,
            "wait_sync_us": _best(calls, lambda: AwaitData(e, watched(), None, 0.0, 0.0).run()),
            "wait_async_us": _best(
                1, on_loop(lambda: AwaitData(e, watched(), None, 0.0, 0.0).run_async())
            )
            / calls,
        }
        loop.close()
        consumer.close()
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000, help="records per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per api")
    parser.add_argument("--steps", action="store_true", help="time the path's steps instead")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        if args.steps:
            figures = _steps(args.records, Path(scratch))
            print(json.dumps(figures) if args.json else figures)
            return
        for api in ("sync", "async"):
            per_record = [
                _tail(api, args.records, Path(scratch) / str(i)) for i in range(args.rounds)
            ]
            figures[f"{api}_cpu_us_per_record"] = statistics.median(per_record) * 1e6
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{'api':<8} {'consumer CPU per record (µs, median)':>38}")
    for name, value in figures.items():
        print(f"{name.split('_')[0]:<8} {value:>38.1f}")


if __name__ == "__main__":
    main()
