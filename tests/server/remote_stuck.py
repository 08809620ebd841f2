"""A server whose ``remote`` topic can acknowledge nothing: its object
store refuses every put, so an append to it is kept in the WAL but never
becomes remote-durable until the store is healed."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import engine
from engine.config import ACK_DURABILITY
from s3stream import StreamStoreConfig
from s3stream.store import open_store
from tests.s3stream.faults import FaultyStore
from tests.server.in_process import InProcessServer


@contextmanager
def remote_stuck(
    tmp_path: Path, local: Sequence[str] = ()
) -> Iterator[tuple[InProcessServer, FaultyStore, engine.Engine]]:
    """The server, its failing store (``heal()`` lets puts through again)
    and its engine; uploads and compactions only when a flush asks, so the
    refused puts are the appends' own. The ``local`` topics (one partition,
    acknowledged from the WAL) are made before the puts fail: a topic's
    creation waits for its catalog record's upload."""
    faulty = FaultyStore(open_store("file://" + str(tmp_path / "bucket")))
    config = engine.EngineConfig(
        store=StreamStoreConfig(upload_interval_s=3600, compaction_interval_s=3600)
    )
    opened = engine.open(tmp_path / "node", faulty, config)
    server = InProcessServer(opened)
    try:
        opened.create_topic("remote", 1, configs={ACK_DURABILITY: "remote"})
        for name in local:
            opened.create_topic(name, 1)
        faulty.fail("put")
        yield server, faulty, opened
    finally:
        server.stop()
        opened.close()
