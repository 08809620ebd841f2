"""An object store that counts its requests: per operation, how many, how
many failed and how long each took (docs/operations.md's
``tidelog_object_store_*``). The stream store wraps whatever store it was
given in one, so every caller (uploads, reads, compaction, the manifest,
the readiness probe) is counted in one place.

Each request is also a line on ``tidelog.stalls`` when that logger is on
(every write; a read, list or delete once slow: stall_lines.py).

Counting takes a lock: object-store requests come from several threads
and each costs a round trip, so the lock is noise beside it. Retries that
the backend makes inside one call (botocore's) are one request here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TypeVar

from s3stream.store.base import (
    ObjectBuffer,
    ObjectData,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    PreconditionFailed,
)
from s3stream.store.stall_lines import data_size, log_request, stalls
from wal.histogram import PlainHistogram

_T = TypeVar("_T")

ANSWERS = (ObjectNotFound, PreconditionFailed)
"""Errors that are the store's answer, not its failure: not counted as errors."""


class MeteredStore(ObjectStore):
    """Counts the requests made to ``inner`` and passes them on."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.conditional_writes = inner.conditional_writes
        self.checks_its_own_conditions = inner.checks_its_own_conditions
        self.requests: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.latency: dict[str, PlainHistogram] = {}
        self.trace: Callable[[str, str, float, float], None] | None = None
        """Told each request's operation, key, start and end when set
        (s3stream/ack_trace.py's UploadTrace.request)."""
        self._lock = threading.Lock()

    def _timed(
        self, operation: str, key: str, call: Callable[[], _T], size: int | None = None
    ) -> _T:
        """Runs ``call``, counted as one ``operation``; ``size``: the bytes a
        write sends (a read's are those it returns)."""
        started = time.monotonic()
        failed = False
        result: _T | None = None
        outcome = ""
        try:
            result = call()
            return result
        except ANSWERS as answer:
            outcome = f" ({type(answer).__name__})"
            raise
        except Exception as error:
            failed = True
            outcome = f" (failed: {type(error).__name__})"
            raise
        finally:
            elapsed = time.monotonic() - started
            with self._lock:
                self.requests[operation] += 1
                if failed:
                    self.errors[operation] += 1
                histogram = self.latency.get(operation)
                if histogram is None:
                    histogram = self.latency[operation] = PlainHistogram()
                histogram.observe(elapsed)
            if self.trace is not None:
                self.trace(operation, key, started, started + elapsed)
            if stalls.isEnabledFor(logging.DEBUG):
                log_request(operation, key, elapsed, size, result, outcome)

    def snapshot(self) -> tuple[dict[str, int], dict[str, int], dict[str, PlainHistogram]]:
        """Requests, errors and latency by operation, copied under the lock."""
        with self._lock:
            latency = {}
            for operation, source in self.latency.items():
                copied = PlainHistogram(source.bounds)
                copied.counts = list(source.counts)
                copied.sum = source.sum
                latency[operation] = copied
            return dict(self.requests), dict(self.errors), latency

    def put(self, key: str, data: ObjectData) -> str:
        return self._timed("put", key, lambda: self.inner.put(key, data), data_size(data))

    def put_if_absent(self, key: str, data: ObjectBuffer) -> str:
        return self._timed(
            "put_if_absent", key, lambda: self.inner.put_if_absent(key, data), data_size(data)
        )

    def put_if_version(self, key: str, data: ObjectBuffer, version: str) -> str:
        return self._timed(
            "put_if_version",
            key,
            lambda: self.inner.put_if_version(key, data, version),
            data_size(data),
        )

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        return self._timed("get", key, lambda: self.inner.get(key, start, end))

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        return self._timed("get_versioned", key, lambda: self.inner.get_versioned(key))

    def head(self, key: str) -> ObjectInfo:
        return self._timed("head", key, lambda: self.inner.head(key))

    def delete(self, key: str) -> None:
        self._timed("delete", key, lambda: self.inner.delete(key))

    def delete_many(self, keys: Sequence[str]) -> None:
        if keys:
            self._timed("delete", keys[0], lambda: self.inner.delete_many(keys))

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        return self._timed("list", prefix, lambda: self.inner.list(prefix))

    def remove_abandoned_writes(self) -> int:
        return self.inner.remove_abandoned_writes()

    def close(self) -> None:
        self.inner.close()
