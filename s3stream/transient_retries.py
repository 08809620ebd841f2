"""Waiting out an object store's transient errors (unreachable, throttled,
reset): the back-off between attempts, and the attempts an open makes
before it gives up."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from s3stream.store import ObjectStoreError

log = logging.getLogger("tidelog.manifest")

OPEN_ATTEMPTS = 20


def retrying_transient(action: Callable[[], None], deadline: float) -> None:
    """Runs ``action``, again after a backoff while it fails transiently
    (until ``deadline``, a time.monotonic() value)."""
    for attempt in range(OPEN_ATTEMPTS):
        try:
            action()
            return
        except ObjectStoreError as error:
            retry_or_raise(error, attempt, deadline)


def retry_or_raise(error: ObjectStoreError, attempt: int, deadline: float) -> None:
    """Sleeps before the next attempt at opening, or raises ``error`` if it
    is not transient or the attempts or the time are spent."""
    left = deadline - time.monotonic()
    if not error.transient or attempt == OPEN_ATTEMPTS - 1 or left <= 0:
        raise error
    log.warning("the object store failed while opening, retrying for %.0f s more: %s", left, error)
    time.sleep(min(left, 5.0, 0.02 * 2 ** min(attempt, 10)))


def backoff_sleep(
    attempt: int, stop: threading.Event | None = None, at_most: float | None = None
) -> None:
    """Waits before retry ``attempt`` (from 0): 20 ms, doubling up to 5 s,
    never more than ``at_most``; cut short when ``stop`` is set."""
    delay = min(5.0, 0.02 * (2 ** min(attempt, 10)))
    if at_most is not None:
        delay = max(min(delay, at_most), 0.0)
    if stop is not None:
        stop.wait(delay)
    else:
        time.sleep(delay)
