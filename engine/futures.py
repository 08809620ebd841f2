"""Futures the engine hands to callers on other threads and event loops."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any


def running_future() -> Future[Any]:
    """A future nobody can cancel: a waiter that gives up on it (an asyncio
    task cancelled, a client gone away) must not cancel the answer for the
    others waiting on it."""
    future: Future[Any] = Future()
    future.set_running_or_notify_cancel()
    return future
