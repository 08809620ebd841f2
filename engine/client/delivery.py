"""A produced record's pending (partition, offset).

``concurrent.futures.Future`` carries a lock and a condition of its own; one
per record costs more than writing the record (and keeps the garbage
collector busy with a million small containers). A ``DeliveryFuture`` is a
slot object settled a batch at a time under its producer's one condition,
with the same methods a caller uses on a Future: ``result``, ``exception``,
``done`` and ``add_done_callback``. In asyncio, ``Producer.send_async``
returns the outcome directly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Generic, NamedTuple, TypeVar

from engine.clock import Clock

T = TypeVar("T")
A = TypeVar("A")

_PENDING = object()

_running = threading.local()
"""How deep this thread is in delivery callbacks run by run_callbacks."""


def run_callbacks(callbacks: Iterable[tuple[Callable[[A], object], A]]) -> None:
    """Runs settled futures' callbacks, each with its future, marked as such
    on this thread for ``in_callback`` (the thread is often the WAL's, which
    a callback must not wait on)."""
    _running.depth = getattr(_running, "depth", 0) + 1
    try:
        for callback, future in callbacks:
            callback(future)
    finally:
        _running.depth -= 1


def in_callback() -> bool:
    """Whether this thread is running a delivery callback (any producer's:
    they share the threads that settle records)."""
    return getattr(_running, "depth", 0) > 0


class Waits(NamedTuple):
    """What the futures of one producer share: the condition their
    settling notifies, and the clock their timeouts run on."""

    condition: threading.Condition
    clock: Clock


class DeliveryFuture(Generic[T]):
    __slots__ = ("_callbacks", "_error", "_value", "_waits")

    def __init__(self, waits: Waits) -> None:
        self._waits = waits
        self._value: object = _PENDING
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[DeliveryFuture[T]], None]] | None = None

    def done(self) -> bool:
        return self._value is not _PENDING or self._error is not None

    def result(self, timeout: float | None = None) -> T:
        """The outcome, waiting up to ``timeout`` seconds; raises the error if
        the record was refused, TimeoutError if it is still pending."""
        self._wait(timeout)
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set by settle(), never _PENDING here

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._wait(timeout)
        return self._error

    def add_done_callback(self, callback: Callable[[DeliveryFuture[T]], None]) -> None:
        """Calls ``callback(self)`` once settled (at once if it is)."""
        with self._waits.condition:
            if not self.done():
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(callback)
                return
        callback(self)

    def _wait(self, timeout: float | None) -> None:
        if self.done():
            return
        condition, clock = self._waits
        deadline = None if timeout is None else clock.monotonic() + timeout
        with condition:
            while not self.done():
                remaining = None if deadline is None else deadline - clock.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("the record is not durable yet")
                # A real wait bounded by the clock's remaining time: a clock
                # that jumps is read again when it ends.
                condition.wait(remaining)

    def settle(
        self, value: T | None, error: BaseException | None
    ) -> list[Callable[[DeliveryFuture[T]], None]] | None:
        """Sets the outcome (the caller holds the condition and notifies);
        returns the callbacks to run once it has released it, if any."""
        if error is not None:
            self._error = error
        else:
            self._value = value
        callbacks, self._callbacks = self._callbacks, None
        return callbacks
