"""Pausing Python's cyclic garbage collector around bulk allocations.

A full collection walks every object in the process while holding the GIL,
and one is due each time the long-lived objects grow by a quarter. A change
that makes many long-lived objects at once (creating thousands of topics:
some 30 objects per partition) would otherwise set off several full
collections in a row, each stalling every other thread (the event loop
serving produce and fetch) for a hundred milliseconds or more on a large
engine. Paused, the collector runs at most once after, instead of many
times during. Reference counting still frees everything acyclic meanwhile,
and the changes that pause it are bounded (Kafka's bound of records per
request, or one engine call).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator


class _Pauses:
    """Who is pausing the collector now, and whether to resume it after."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.resume = True


_pauses = _Pauses()


@contextlib.contextmanager
def collector_paused(pause: bool = True) -> Iterator[None]:
    """Pauses the collector inside (if ``pause``); nests and works across
    threads: the collector resumes when the last pauser leaves, and only if
    it was enabled when the first came."""
    if not pause:
        yield
        return
    with _pauses.lock:
        if _pauses.count == 0:
            _pauses.resume = gc.isenabled()
            gc.disable()
        _pauses.count += 1
    try:
        yield
    finally:
        with _pauses.lock:
            _pauses.count -= 1
            if _pauses.count == 0 and _pauses.resume:
                gc.enable()


def freeze_what_start_made() -> None:
    """Moves every object the collector tracks now into its permanent
    generation, which no collection walks again.

    Called once a server has started: what its start made (modules,
    classes, functions, the engine's and the server's state) lives as long
    as the process. A full collection holds the GIL for as long as it walks,
    and so holds the event loop that acknowledges produces: on a server
    that has opened and imported all it serves, tens of milliseconds per
    collection for objects that can never be garbage. Frozen, a full
    collection walks only what was made since. Cycles already garbage at
    the moment of the call stay allocated: a bounded, one-time amount.
    """
    gc.freeze()
