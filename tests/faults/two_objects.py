"""An engine whose two partitions' records are each in an object of their
own, read through a fault-injecting store with neither log cache nor block
cache: every read of them is a GET the store can fail or stall. Each
record's key is its value."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import engine
from s3stream.store import open_store
from tests.engine.conftest import QUIET_STORE
from tests.s3stream.faults import FaultyStore

TOPIC = "history"
RECORDS = 10
TIMEOUT = 30.0


def values(partition: int) -> list[bytes]:
    return [f"p{partition}-{i}".encode() for i in range(RECORDS)]


def two_objects(
    tmp_path: Path, **store_settings: Any
) -> contextlib.AbstractContextManager[tuple[engine.Engine, FaultyStore, list[str]]]:
    """The engine, its store, and the key of the object holding each
    partition's records (by partition); ``store_settings`` on top of the
    store config. The store is healed before the engine closes."""
    return objects_per_partition(tmp_path, 2, **store_settings)


@contextmanager
def objects_per_partition(
    tmp_path: Path, partitions: int, **store_settings: Any
) -> Iterator[tuple[engine.Engine, FaultyStore, list[str]]]:
    """two_objects with ``partitions`` partitions, each in an object of its own."""
    store = FaultyStore(open_store("file://" + str(tmp_path / "bucket")))
    # A read that outlasts the bound is answered empty: a slow read on a
    # loaded machine must not be taken for a fault's answer, or a healthy
    # partition's for none (the bound itself: test_stalled_reads.py).
    store_settings.setdefault("remote_fetch_max_wait_ms", 60_000)
    config = engine.EngineConfig(
        store=replace(
            QUIET_STORE,
            log_cache_bytes=0,
            block_cache_bytes=1,
            readahead_bytes=0,
            **store_settings,
        ),
        cleaner_interval_s=3600,
    )
    opened = engine.open(tmp_path / "node", store, config)
    try:
        opened.create_topic(TOPIC, partitions)
        keys = []
        for partition in range(partitions):
            before = {info.key for info in store.inner.list("objects/")}
            with opened.producer(linger_ms=0) as producer:
                for value in values(partition):
                    # Keyed by its value: a state rebuild reads it too.
                    producer.send(TOPIC, value, key=value, partition=partition).result(TIMEOUT)
            assert opened.flush(TIMEOUT)
            [key] = {info.key for info in store.inner.list("objects/")} - before
            keys.append(key)
        yield opened, store, keys
    finally:
        store.heal()
        opened.close()
