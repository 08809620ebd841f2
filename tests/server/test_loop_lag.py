"""The event loop's lag monitor (engine/server/loop_lag.py): a loop held
by a callback is measured at least as late as it was held, the longest lag
is taken and starts anew, and the tidelog.stalls logger gets each lag and
each full garbage collection only while it is on."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

import pytest

from engine import clock
from engine.server.broker_loggers import check, logger_names
from engine.server.loop_lag import IDLE_TICK_S, LATE_S, TICK_S, LoopLag

HELD_S = 0.05


async def _hold_the_loop(lag: LoopLag) -> None:
    """Starts the monitor, holds the loop for HELD_S in one callback, then
    lets the tick run again."""
    lag.start()
    try:
        await asyncio.sleep(TICK_S / 2)
        time.sleep(HELD_S)  # the blocking callback under test
        await asyncio.sleep(TICK_S * 3)
    finally:
        lag.stop()


def test_a_held_loop_is_measured_at_least_as_late_as_it_was_held(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lag = LoopLag()
    with caplog.at_level(logging.DEBUG, logger="tidelog.stalls"):
        asyncio.run(_hold_the_loop(lag))
    # The tick due during the hold ran after it: late by the rest of the hold.
    assert lag.longest_s >= HELD_S - TICK_S
    assert lag.take_longest() >= HELD_S - TICK_S
    assert lag.take_longest() == 0.0


def test_lags_are_logged_on_the_stalls_logger_when_it_is_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="tidelog.stalls"):
        asyncio.run(_hold_the_loop(LoopLag()))
    late = [r.getMessage() for r in caplog.records if r.getMessage().startswith("event loop")]
    assert late and all(r.endswith("ms late") for r in late)


def test_nothing_is_logged_while_the_stalls_logger_is_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="tidelog.stalls"):
        lag = LoopLag()
        lag.observe(LATE_S * 10)
        asyncio.run(_hold_the_loop(lag))
        gc.collect()
    assert [r for r in caplog.records if r.name == "tidelog.stalls"] == []


def test_while_the_stalls_logger_is_off_the_tick_wakes_the_loop_rarely(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def idle(lag: LoopLag, seconds: float) -> None:
        lag.start()
        try:
            await asyncio.sleep(seconds)
        finally:
            lag.stop()

    quiet, watched = LoopLag(), LoopLag()
    with caplog.at_level(logging.INFO, logger="tidelog.stalls"):
        asyncio.run(idle(quiet, IDLE_TICK_S * 0.9))
    with caplog.at_level(logging.DEBUG, logger="tidelog.stalls"):
        asyncio.run(idle(watched, IDLE_TICK_S * 0.9))
    assert quiet.ticks == 0
    assert watched.ticks >= 5


def test_full_collections_are_timed_while_started_and_not_after(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # gc.callbacks belong to the process: other monitors of the test
    # session (servers still running) log collections of their own, so this
    # counts what reaches this monitor's callback.
    lag = LoopLag()
    reached: list[str] = []
    timed = lag._collected

    def collected(phase: str, info: dict[str, Any]) -> None:
        reached.append(phase)
        timed(phase, info)

    lag._collected = collected  # type: ignore[method-assign]

    async def collect_while_started() -> None:
        lag.start()
        gc.collect()
        lag.stop()

    with caplog.at_level(logging.DEBUG, logger="tidelog.stalls"):
        asyncio.run(collect_while_started())
        while_started = len(reached)
        gc.collect()
    lines = [r.getMessage() for r in caplog.records if "garbage collection" in r.getMessage()]
    assert while_started >= 2  # the collection's start and stop
    assert lines and all(line.startswith("full garbage collection took ") for line in lines)
    assert len(reached) == while_started  # nothing after stop
    assert collected not in gc.callbacks


def test_the_stalls_logger_can_be_turned_on_as_a_broker_logger() -> None:
    # docs/operations.md: kafka-configs --entity-type broker-loggers ... tidelog.stalls=DEBUG
    assert "tidelog.stalls" in logger_names()
    check("tidelog.stalls", "SET", "DEBUG")  # refused with InvalidConfig if it were not


def test_a_younger_collection_is_logged_when_it_held_the_gil_late_s_or_more(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under serve's young threshold the middle generation holds the log
    # cache's batches: its collection is the longest pause, and a stall
    # line must say so. The collector's own calls, on a virtual clock.
    now = [100.0]
    monkeypatch.setattr(clock, "monotonic", lambda: now[0])
    lag = LoopLag()

    def collection(generation: int, took_s: float) -> None:
        lag._collected("start", {"generation": generation, "collected": 0, "uncollectable": 0})
        now[0] += took_s
        lag._collected("stop", {"generation": generation, "collected": 3, "uncollectable": 0})

    with caplog.at_level(logging.DEBUG, logger="tidelog.stalls"):
        collection(1, LATE_S * 6)
        collection(0, LATE_S * 2)
        collection(0, LATE_S / 2)
        collection(1, LATE_S / 2)
        collection(2, LATE_S / 2)
    lines = [r.getMessage() for r in caplog.records if "garbage collection" in r.getMessage()]
    assert lines == [
        "garbage collection of generation 1 took 60.0 ms (3 objects freed)",
        "garbage collection of generation 0 took 20.0 ms (3 objects freed)",
        "full garbage collection took 5.0 ms (3 objects freed)",
    ]
