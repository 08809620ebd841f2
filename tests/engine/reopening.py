"""An engine a test closes and opens again on the same WAL and bucket, as
a restart does, for the fixtures of tests that check what a restart loads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import engine
from engine.clock import SYSTEM, Clock
from engine.engine import Engine


def reopening(
    root: Path, config: engine.EngineConfig, topic: str, partitions: int, clock: Clock = SYSTEM
) -> Iterator[Callable[[], Engine]]:
    """For a fixture to ``yield from``: a function that opens the engine
    under ``root`` each time it is called (closing the one before), with
    ``topic`` made on the first open; the last one is closed after the test."""
    opened: list[Engine] = []

    def open_node() -> Engine:
        if opened:
            opened[-1].close()
        e = engine.open(root / "data", f"file://{root / 'objects'}", config, clock=clock)
        opened.append(e)
        if topic not in e.list_topics():
            e.create_topic(topic, partitions)
        return e

    yield open_node
    if opened:
        opened[-1].close()
