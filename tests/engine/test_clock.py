"""engine.clock: the system clock reads real time; a ManualClock moves only
when told, both its times together, and wakes what waits on it."""

from __future__ import annotations

import time

import pytest

from engine import clock
from engine.clock import ManualClock


def test_the_system_clock_reads_real_time() -> None:
    before = int(time.time() * 1000)
    assert before <= clock.time_ms() <= int(time.time() * 1000)
    first = clock.monotonic()
    assert first <= clock.monotonic() <= time.monotonic()


def test_a_manual_clock_moves_only_when_advanced() -> None:
    manual = ManualClock(time_ms=5_000, monotonic=10.0)
    assert (manual.time_ms(), manual.monotonic()) == (5_000, 10.0)
    manual.advance(1.5)
    assert (manual.time_ms(), manual.monotonic()) == (6_500, 11.5)


def test_a_manual_clock_wakes_its_waiters_and_never_goes_back() -> None:
    manual = ManualClock()
    woken: list[float] = []
    manual.on_advance(lambda: woken.append(manual.monotonic()))
    manual.advance(2)
    assert woken == [manual.monotonic()]
    with pytest.raises(ValueError, match="cannot go back"):
        manual.advance(-1)
    assert len(woken) == 1
