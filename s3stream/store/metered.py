"""An object store that counts its requests: per operation, how many, how
many failed and how long each took (docs/operations.md's
``tidelog_object_store_*``). The stream store wraps whatever store it was
given in one, so every caller (uploads, reads, compaction, the manifest,
the readiness probe) is counted in one place.

Counting takes a lock: object-store requests come from several threads
and each costs a round trip, so the lock is noise beside it. Retries that
the backend makes inside one call (botocore's) are one request here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from s3stream.store.base import (
    BytesLike,
    ObjectData,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    PreconditionFailed,
)
from wal.histogram import PlainHistogram

_T = TypeVar("_T")

stalls = logging.getLogger("tidelog.stalls")
"""Each write to the store, at DEBUG with its duration, size, what it
wrote and its MiB/s, and each slow read, list or delete: background disk
or network work that a latency spike may be laid against."""

SLOW_REQUEST_S = 0.02
"""Reads, lists and deletes this long or longer are logged on
``tidelog.stalls`` (every write is)."""

_KINDS = (
    ("objects/", "data object"),
    ("manifest/log/", "manifest delta"),
    ("manifest/checkpoint/", "manifest checkpoint"),
    ("manifest/probe/", "conditional-write probe"),
    ("tables/", "table file"),
)
"""What a key holds, by its prefix (s3stream/uploader.py, manifest.py,
conditional_probe.py; engine/tables): a stall line names the kind, never
the bucket or the store's address."""

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
            if stalls.isEnabledFor(logging.DEBUG):
                _log_stall(operation, key, elapsed, size, result, outcome)

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

    def put_if_absent(self, key: str, data: BytesLike) -> str:
        return self._timed(
            "put_if_absent", key, lambda: self.inner.put_if_absent(key, data), data_size(data)
        )

    def put_if_version(self, key: str, data: BytesLike, version: str) -> str:
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

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        return self._timed("list", prefix, lambda: self.inner.list(prefix))

    def close(self) -> None:
        self.inner.close()


def data_size(data: ObjectData) -> int:
    """The bytes of an object's data, whole or in parts."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return memoryview(data).nbytes
    return sum(memoryview(part).nbytes for part in data)


def key_kind(key: str) -> str:
    """What the object at ``key`` holds (a prefix for a list)."""
    for prefix, kind in _KINDS:
        if key.startswith(prefix):
            return kind
    return "other object"


def _log_stall(
    operation: str, key: str, elapsed: float, size: int | None, result: object, outcome: str
) -> None:
    """One tidelog.stalls line: every write, with its size and MiB/s; a
    read, list or delete once it took SLOW_REQUEST_S or longer. The
    duration is the line's first "N ms" (bench/_stalls.py reads it)."""
    writing = operation.startswith("put")
    if not writing and elapsed < SLOW_REQUEST_S:
        return
    ms = elapsed * 1000
    if operation == "list":
        stalls.debug("object store list of %s keys took %.1f ms%s", key_kind(key), ms, outcome)
        return
    if size is None and isinstance(result, (bytes, bytearray, memoryview)):
        size = memoryview(result).nbytes
    elif size is None and isinstance(result, tuple) and isinstance(result[0], bytes):
        size = len(result[0])  # get_versioned's (data, version)
    if size is None or outcome:
        stalls.debug(
            "object store %s of a %s took %.1f ms%s", operation, key_kind(key), ms, outcome
        )
        return
    mib = size / (1024 * 1024)
    stalls.debug(
        "object store %s of %s (%s) took %.1f ms, %.1f MiB/s",
        operation,
        f"{mib:.2f} MiB" if mib >= 1 else f"{size / 1024:.1f} KiB",
        key_kind(key),
        ms,
        mib / elapsed if elapsed > 0 else float("inf"),
    )
