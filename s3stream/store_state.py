"""What the stream store's parts share: one lock, and under it the log
cache, the open streams, and the failure that stops them all.

The facade (stream_store.py) appends and reads through it; the uploader
waits on its condition for blocks to seal and upload; the compactor reads
retention and moves start offsets under its lock; recovery fills it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from s3stream.errors import Fenced, StoreClosed, StoreFailed, StreamNotFound
from s3stream.header_index import Indexer
from s3stream.log_cache import LogCache
from s3stream.store import ObjectStoreError

log = logging.getLogger("tidelog.s3stream")


@dataclass(frozen=True)
class Retention:
    """Per-stream limits, Kafka's retention.ms and retention.bytes (None: unlimited)."""

    ms: int | None = None
    bytes: int | None = None


@dataclass
class StreamState:
    stream_id: int
    epoch: int
    start_offset: int
    next_offset: int
    """The end of every append accepted so far, durable or not."""
    end_offset: int
    """The end of the durable prefix: what readers see."""
    opened: bool = False
    retention: Retention = field(default_factory=Retention)
    indexer: Indexer | None = None
    """What the stream's objects index of its headers (None: nothing)."""


@dataclass
class StoreStats:
    uploads: int = 0
    uploaded_bytes: int = 0
    upload_errors: int = 0
    compactions: int = 0
    objects_deleted: int = 0
    abandoned_writes_removed: int = 0
    """Temp files of puts that crashed writers left, removed (on open too)."""
    last_error: str = ""

    def note_store_error(self, error: ObjectStoreError) -> None:
        """Counts (and logs) an object-store error that will be retried."""
        self.upload_errors += 1
        self.last_error = str(error)
        log.warning("object store error (will retry): %s", error)


class StoreState:
    """The lock and what it guards; ``changed`` is notified whenever the log
    cache or the store's health changes (a block sealed, confirmed or
    uploaded, the first append of a block, a failure, closing)."""

    def __init__(self, log_cache_bytes: int) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.stop = threading.Event()
        """Set on close (or a simulated crash): every loop ends."""
        self.closed = False
        self.failure: BaseException | None = None
        """The first error that stopped the store (Fenced, or a WAL or internal failure)."""
        self.cache = LogCache(log_cache_bytes)
        self.streams: dict[int, StreamState] = {}

    def check_usable(self) -> None:
        if self.closed:
            raise StoreClosed
        if self.failure is not None:
            raise self.failure_error()

    def failure_error(self) -> BaseException:
        """What callers are given for the failure: Fenced as is, else StoreFailed."""
        assert self.failure is not None
        return self.failure if isinstance(self.failure, Fenced) else StoreFailed(self.failure)

    @property
    def fenced(self) -> bool:
        return isinstance(self.failure, Fenced)

    def indexers(self) -> dict[int, Indexer]:
        """The streams' indexers, as they are now (for an object being written)."""
        with self.lock:
            return {
                sid: stream.indexer
                for sid, stream in self.streams.items()
                if stream.indexer is not None
            }

    def stream_locked(self, stream_id: int) -> StreamState:
        stream = self.streams.get(stream_id)
        if stream is None:
            raise StreamNotFound(stream_id)
        return stream


def fail_all(waiters: Sequence[Future[int]], error: BaseException) -> None:
    """Fails the waiters not answered yet."""
    for waiter in waiters:
        if not waiter.done():
            waiter.set_exception(error)
