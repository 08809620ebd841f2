"""The transaction completions' retry timer (engine/transactions/retry_timer.py):
one thread, started at the first retry and stopped at close; a retry that
fails to start is cancelled (its completion left for the next open, its
waiter answered), and the thread goes on with the others."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from engine.transactions.retry_timer import RetryTimer
from tests.engine.interrupted import _put_back, _raising_sigint

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


def test_a_close_cut_short_in_its_join_cancels_the_waiting_retries_when_called_again() -> None:
    """Ctrl-C as close waits for the call under way (a real SIGINT, under
    Python's own handler): the retries still waiting are cancelled by the
    close that finishes it (docs/design/0113), each once."""
    previous = _raising_sigint()
    try:
        timer = RetryTimer()
        running, go_on = threading.Event(), threading.Event()
        cancelled: list[str] = []
        timer.schedule(0.0, lambda: (running.set(), go_on.wait(TIMEOUT)), lambda: None)
        assert running.wait(TIMEOUT)
        timer.schedule(60.0, lambda: None, lambda: cancelled.append("waiting"))

        def interrupt_the_join() -> None:
            time.sleep(0.2)  # close is in the join by then
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            go_on.set()

        threading.Thread(target=interrupt_the_join).start()
        with pytest.raises(KeyboardInterrupt):
            timer.close()
        go_on.wait(TIMEOUT)
        timer.close()
        assert cancelled == ["waiting"]
        timer.close()
        assert cancelled == ["waiting"]
    finally:
        _put_back(previous)
