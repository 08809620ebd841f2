"""An object-store outage long enough for the unuploaded data to pass
``max_unuploaded_bytes``: a producer fills the log cache past the bound
and then waits for room."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import engine
from engine.engine import Engine, EngineConfig
from s3stream.store import LocalStore
from tests.engine.helpers_records import batch
from tests.s3stream.faults import FaultyStore


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


@contextlib.contextmanager
def engine_through_an_outage(
    root: Path, config: EngineConfig, topics: Mapping[str, int], bound: int, timeout: float
) -> Iterator[tuple[Engine, FaultyStore]]:
    """An engine whose object store takes no uploads, filled past ``bound``
    by a producer to t-0 now waiting for room; ``topics`` (names and
    partition counts, t among them) are created before the outage, since a
    topic's creation commits to the store. The store heals, and the
    producer ends, as the block does."""
    faulty = FaultyStore(LocalStore(root / "objects"))
    e = engine.open(root / "node", faulty, config)
    try:
        for name, partitions in topics.items():
            e.create_topic(name, partitions)
        faulty.fail("put")
        filling = filled_past(e, bound, timeout)
        yield e, faulty
        faulty.heal()
        filling.join(timeout)
        assert not filling.is_alive()
    finally:
        faulty.heal()
        e.close()
