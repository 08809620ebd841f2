"""What the long-poll Fetch tests share: a max_wait only the test ends, the
waits an engine has registered, and a bounded wait for a condition."""

from __future__ import annotations

import time
from collections.abc import Callable

import engine

TIMEOUT = 30.0
HOUR_MS = 3_600_000
"""A max_wait far past the test's timeout: only what the test does answers it."""


def registered(opened: engine.Engine) -> int:
    """The waits registered, each counted once."""
    return opened._waiters.waiting_count()


def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)
