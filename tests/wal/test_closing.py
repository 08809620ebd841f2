"""wal/closing.py's best-effort close: the clean-up of something that
failed part way, whose steps each run though one before it raised."""

from __future__ import annotations

import asyncio
import logging

import pytest

from wal.closing import Closing


def _refuse() -> None:
    raise OSError("refused")


def test_a_best_effort_step_that_raises_is_logged_and_the_next_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[str] = []
    closing = Closing("Owner", best_effort=True)
    with caplog.at_level(logging.ERROR, "tidelog.closing"):
        closing.step("first", _refuse)
        closing.step("second", lambda: ran.append("second"))
    assert ran == ["second"]
    assert [r.getMessage() for r in caplog.records] == [
        "Owner.first failed; the steps after it still run"
    ]
    assert caplog.records[0].exc_info is not None
    closing.step("first", lambda: ran.append("first again"))
    assert ran == ["second"]  # given up, not run again by a resumed close


def test_a_best_effort_async_step_that_raises_is_logged_and_the_next_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[str] = []

    async def refuse() -> None:
        raise OSError("refused")

    async def record() -> None:
        ran.append("second")

    async def close(closing: Closing) -> None:
        await closing.step_async("first", refuse)
        await closing.step_async("second", record)

    with caplog.at_level(logging.ERROR, "tidelog.closing"):
        asyncio.run(close(Closing("Owner", best_effort=True)))
    assert ran == ["second"]
    assert "Owner.first failed" in caplog.text


def test_a_best_effort_step_cancelled_is_left_for_the_next_call() -> None:
    """A cancellation is not a step's failure: it ends the close, and the
    next call runs the step cut short."""
    ran: list[str] = []

    async def cancelled() -> None:
        raise asyncio.CancelledError

    async def record() -> None:
        ran.append("resumed")

    closing = Closing("Owner", best_effort=True)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(closing.step_async("step", cancelled))
    asyncio.run(closing.step_async("step", record))
    assert ran == ["resumed"]


def test_a_step_that_raises_ends_a_close_not_best_effort() -> None:
    closing = Closing("Owner")
    with pytest.raises(OSError, match="refused"):
        closing.step("first", _refuse)
    assert not closing.begun
