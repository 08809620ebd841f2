"""The threads that read from object storage run at a lower OS priority
than the process (``read_nice``), so a replay of history takes the CPU
time live produce and tail reads leave; with ``read_nice = 0`` they run
at the process's priority."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import threading
from pathlib import Path

import pytest

from s3stream import StreamStore, StreamStoreConfig
from s3stream.store import MemoryStore, ObjectStore
from s3stream.uploader import OBJECT_PREFIX
from tests.s3stream.faults import FaultyStore
from tests.s3stream.test_read_path import CONFIG, write_stream_objects
from tests.s3stream.test_stream_store import expected
from wal.thread_priority import MOST_NICE, lower_own_priority

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's"
)


class PriorityOfGets(FaultyStore):
    """Records, for every GET of a data object, the name and the nice value
    of the thread that made it."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.readers: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        if key.startswith(OBJECT_PREFIX):
            nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            with self._lock:
                self.readers.append((threading.current_thread().name, nice))
        return super().get(key, start, end)


async def _read_all_async(store: StreamStore, stream: int) -> list[tuple[int, int, bytes]]:
    """Every batch of the stream through fetch_async: a read the log cache
    cannot answer runs on a fetch thread, as a Kafka Fetch's does."""
    out = []
    offset = store.start_offset(stream)
    while offset < store.end_offset(stream):
        result = await store.fetch_async(stream, offset, 4096)
        assert result.batches, f"no data at {offset}"
        out += [(b.base_offset, b.end_offset, bytes(b.payload)) for b in result.batches]
        offset = result.next_offset
    return out


def _replay(tmp_path: Path, read_nice: int) -> list[tuple[str, int]]:
    """Replays three stream objects from a fresh store (nothing cached):
    who read them from the bucket, at what nice value."""
    bucket = MemoryStore()
    stream = write_stream_objects(tmp_path, bucket, uploads=3)
    recording = PriorityOfGets(bucket)
    config = dataclasses.replace(CONFIG, read_nice=read_nice)
    with StreamStore.open(tmp_path / "reader", recording, config) as reader:
        read = asyncio.run(_read_all_async(reader, stream))
        assert read == expected(stream, 0, 3 * 700, per_batch=1)
    assert recording.readers, "the replay read nothing from the bucket"
    return recording.readers


def _own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@linux_only
def test_object_reads_run_on_read_threads_at_a_lower_priority(tmp_path: Path) -> None:
    lowered = min(MOST_NICE, _own_nice() + 7)
    readers = _replay(tmp_path, read_nice=7)
    # The fetch threads read what a fetch needs now, the read-ahead workers
    # the objects after it: both pools, never the caller's thread, and all
    # at the same priority, though a fetch thread starts the read-ahead
    # workers (a thread inherits the nice value of the one that starts it).
    names = {name.rsplit("_", 1)[0] for name, _ in readers}
    assert names == {"s3stream-fetch", "s3stream-read"}
    assert {nice for _, nice in readers} == {lowered}
    assert _own_nice() == lowered - 7 or lowered == MOST_NICE  # the caller's is its own


@linux_only
def test_read_nice_zero_keeps_the_process_priority(tmp_path: Path) -> None:
    readers = _replay(tmp_path, read_nice=0)
    assert {nice for _, nice in readers} == {_own_nice()}


@linux_only
def test_a_thread_lowers_its_own_priority_only() -> None:
    before = _own_nice()
    seen: list[int] = []

    def lowered() -> None:
        lower_own_priority(before + 3)
        seen.append(_own_nice())
        lower_own_priority(before + 1)  # never raised again
        seen.append(_own_nice())

    thread = threading.Thread(target=lowered)
    thread.start()
    thread.join(timeout=30)
    assert seen == [min(MOST_NICE, before + 3)] * 2
    assert _own_nice() == before


def test_the_default_reads_at_a_lower_priority() -> None:
    assert StreamStoreConfig().read_nice > 0
    assert StreamStoreConfig.small().read_nice == StreamStoreConfig().read_nice
