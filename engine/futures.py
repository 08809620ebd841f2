"""Futures the engine hands to callers on other threads and event loops:
created running, so a caller that stops waiting cannot cancel them (an
asyncio task cancelled, a client gone away must not take the answer from
the others waiting on it), and settled once, whatever settles them first."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError
from typing import Any, TypeVar

T = TypeVar("T")


def running_future() -> Future[Any]:
    """A future nobody can cancel."""
    future: Future[Any] = Future()
    future.set_running_or_notify_cancel()
    return future


def done(value: T) -> Future[T]:
    future: Future[T] = running_future()
    future.set_result(value)
    return future


def failed(error: BaseException) -> Future[Any]:
    future: Future[Any] = running_future()
    future.set_exception(error)
    return future


def settle(future: Future[Any], value: Any) -> None:
    """Settles ``future`` (an exception as its exception) unless something
    settled it first."""
    with contextlib.suppress(InvalidStateError):
        if isinstance(value, BaseException):
            future.set_exception(value)
        else:
            future.set_result(value)


def all_done(futures: Sequence[Future[T]]) -> Future[T]:
    """Resolves to the last of ``futures``' results once every one resolved,
    or to the first exception among them as soon as it comes."""
    joined: Future[T] = running_future()
    left = [len(futures)]
    lock = threading.Lock()

    def one_done(future: Future[T]) -> None:
        error = future.exception()
        if error is not None:
            settle(joined, error)
            return
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            settle(joined, futures[-1].result())

    for future in futures:
        future.add_done_callback(one_done)
    return joined
