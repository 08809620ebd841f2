"""Async fetches' waits for object reads, each ended at its deadline
(``remote_fetch_max_wait_ms``) if its read has not ended first.

One timer per event loop, armed at the oldest wait's deadline, serves every
wait: every wait has the same bound, so deadlines come in the order the
waits began, and a read the block cache answers (ended long before its
deadline) adds no timer, task or callback on the loop of its own. The
read itself runs on a fetch thread and is never cancelled: a wait that
ends leaves it to finish for the next fetch (docs/design/0060)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from concurrent.futures import Future
from functools import partial
from typing import Generic, TypeVar

T = TypeVar("T")


class ReadWaits(Generic[T]):
    """The waits of one event loop (``loop``); used from that loop only."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_wait_s: float) -> None:
        self.loop = loop
        self._max_wait_s = max_wait_s
        self._waits: deque[tuple[float, asyncio.Future[T | None]]] = deque()
        """Each wait's deadline (the loop's time) and its future, oldest first."""
        self._armed = False

    async def wait(self, read: Future[T]) -> T | None:
        """``read``'s result (or its error), or None if it did not end
        within the bound."""
        loop = self.loop
        waiter: asyncio.Future[T | None] = loop.create_future()
        read.add_done_callback(partial(_settle_soon, loop, waiter))
        deadline = loop.time() + self._max_wait_s
        self._waits.append((deadline, waiter))
        if not self._armed:
            self._armed = True
            loop.call_at(deadline, self._expire)
        return await waiter

    def _expire(self) -> None:
        """Ends the waits past their deadline; drops those already
        answered; sleeps until the oldest one left is due."""
        now = self.loop.time()
        waits = self._waits
        while waits:
            deadline, waiter = waits[0]
            if not waiter.done() and deadline > now:
                self.loop.call_at(deadline, self._expire)
                return
            waits.popleft()
            if not waiter.done():
                waiter.set_result(None)
        self._armed = False


def _settle_soon(
    loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[T | None], read: Future[T]
) -> None:
    """On the thread that ended ``read``: its outcome to ``waiter``, on the loop."""
    if loop.is_closed():  # the waiting loop ended first (an embedded caller's)
        return
    with contextlib.suppress(RuntimeError):  # closed meanwhile
        loop.call_soon_threadsafe(_settle, waiter, read)


def _settle(waiter: asyncio.Future[T | None], read: Future[T]) -> None:
    if waiter.done():  # ended at its deadline, or its fetch was cancelled
        return
    error = read.exception()
    if error is not None:
        waiter.set_exception(error)
    else:
        waiter.set_result(read.result())
