"""DeliveryFuture: the producer's per-record future, settled a batch at a time."""

from __future__ import annotations

import threading

import pytest

from engine.client.delivery import DeliveryFuture, Waits
from engine.clock import SYSTEM


def _settle(condition: threading.Condition, future: DeliveryFuture[int], value: int) -> None:
    with condition:
        callbacks = future.settle(value, None)
        condition.notify_all()
    for callback in callbacks or ():
        callback(future)


def test_result_waits_until_another_thread_settles_it() -> None:
    condition = threading.Condition()
    future: DeliveryFuture[int] = DeliveryFuture(Waits(condition, SYSTEM))
    assert not future.done()
    settler = threading.Timer(0.05, _settle, (condition, future, 7))
    settler.start()
    assert future.result(timeout=30) == 7
    assert future.done()
    assert future.exception() is None
    settler.join()


def test_result_raises_timeout_while_pending() -> None:
    future: DeliveryFuture[int] = DeliveryFuture(Waits(threading.Condition(), SYSTEM))
    with pytest.raises(TimeoutError):
        future.result(timeout=0.01)
    assert not future.done()


def test_an_error_is_raised_by_result_and_returned_by_exception() -> None:
    condition = threading.Condition()
    future: DeliveryFuture[int] = DeliveryFuture(Waits(condition, SYSTEM))
    error = ValueError("refused")
    with condition:
        future.settle(None, error)
    with pytest.raises(ValueError, match="refused"):
        future.result()
    assert future.exception() is error


def test_callbacks_run_once_settled_and_at_once_when_added_later() -> None:
    condition = threading.Condition()
    future: DeliveryFuture[int] = DeliveryFuture(Waits(condition, SYSTEM))
    seen: list[int] = []
    future.add_done_callback(lambda f: seen.append(f.result()))
    assert seen == []
    _settle(condition, future, 3)
    assert seen == [3]
    future.add_done_callback(lambda f: seen.append(f.result() * 10))
    assert seen == [3, 30]
