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

BACKOFF_MOST_S = 5.0
"""The longest wait between two attempts at an object store request."""


def backoff_delay(attempt: int, first_s: float = 0.02, doublings: int = 10) -> float:
    """The wait before retry ``attempt`` (from 0): ``first_s``, doubling
    ``doublings`` times at most, never past BACKOFF_MOST_S. The one formula
    of the store's retries: an open's and the manifest's (20 ms first),
    the uploader's puts (50 ms first)."""
    return min(BACKOFF_MOST_S, first_s * (1 << min(attempt, doublings)))


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
    time.sleep(min(left, backoff_delay(attempt)))


def backoff_sleep(
    attempt: int, stop: threading.Event | None = None, at_most: float | None = None
) -> None:
    """Waits before retry ``attempt`` (from 0): 20 ms, doubling up to 5 s,
    never more than ``at_most``; cut short when ``stop`` is set."""
    delay = backoff_delay(attempt)
    if at_most is not None:
        delay = max(min(delay, at_most), 0.0)
    if stop is not None:
        stop.wait(delay)
    else:
        time.sleep(delay)
