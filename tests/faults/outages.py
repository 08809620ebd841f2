"""An object-store outage long enough for the unuploaded data to pass
``max_unuploaded_bytes``: a producer fills the log cache past the bound
and then waits for room."""

from __future__ import annotations

import threading
import time

from engine.engine import Engine
from tests.engine.helpers_records import batch


def filled_past(e: Engine, bound: int, timeout: float) -> threading.Thread:
    """Starts a producer of 32 records of 16 KiB to t-0, in its own thread
    (the embedded produce blocks), and returns its thread once the
    unuploaded bytes pass ``bound``: the producer waits for room from then
    on, until the store takes uploads again."""
    filling = threading.Thread(
        target=lambda: [e.produce("t", 0, batch([b"x" * 16384])) for _ in range(32)],
        daemon=True,
    )
    filling.start()
    deadline = time.monotonic() + timeout
    while e.store.log_cache_usage().unuploaded_bytes <= bound:
        assert time.monotonic() < deadline, "the producer never passed the bound"
        time.sleep(0.01)
    return filling
