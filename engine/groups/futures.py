"""The futures the coordinator answers with: created running, so a caller
that stops waiting cannot cancel them (a client that goes away must not
take the coordinator's answer to the others with it), and settled once,
whatever settles them first."""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, InvalidStateError
from typing import Any, TypeVar

T = TypeVar("T")


def running_future() -> Future[Any]:
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
