"""The transaction completions' retry timer (engine/transactions/retry_timer.py):
one thread, started at the first retry and stopped at close; a retry that
fails to start is cancelled (its completion left for the next open, its
waiter answered), and the thread goes on with the others."""

from __future__ import annotations

import threading

from engine.transactions.retry_timer import RetryTimer

TIMEOUT = 10.0


def _timer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "tidelog-txn-retry"]


def test_the_thread_starts_at_the_first_retry_and_stops_at_close() -> None:
    before = len(_timer_threads())
    timer = RetryTimer()
    assert len(_timer_threads()) == before  # most engines never retry
    ran = threading.Event()
    timer.schedule(0.0, ran.set, lambda: None)
    assert ran.wait(TIMEOUT)
    assert len(_timer_threads()) == before + 1
    timer.close()
    assert len(_timer_threads()) == before


def test_close_cancels_the_waiting_retries_in_order_and_later_ones_at_once() -> None:
    timer = RetryTimer()
    ran: list[str] = []
    cancelled: list[str] = []
    timer.schedule(60.0, lambda: ran.append("late"), lambda: cancelled.append("late"))
    timer.schedule(30.0, lambda: ran.append("early"), lambda: cancelled.append("early"))
    timer.close()
    assert cancelled == ["early", "late"]
    timer.schedule(0.0, lambda: ran.append("after"), lambda: cancelled.append("after"))
    assert cancelled == ["early", "late", "after"]
    assert ran == []


def test_a_retry_that_fails_to_start_is_cancelled_and_the_thread_goes_on() -> None:
    """Its completion is left for the next open (the id released, an EndTxn
    still waiting answered), never held pending for ever."""
    timer = RetryTimer()
    cancelled = threading.Event()
    ran = threading.Event()
    wrongly_cancelled = threading.Event()

    def broken() -> None:
        raise RuntimeError("no worker")

    timer.schedule(0.0, broken, cancelled.set)
    timer.schedule(0.01, ran.set, wrongly_cancelled.set)
    try:
        assert cancelled.wait(TIMEOUT), "the failed retry was not cancelled"
        assert ran.wait(TIMEOUT), "the thread stopped"
        assert not wrongly_cancelled.is_set()
    finally:
        timer.close()
