"""An in-memory object store, for unit tests and benchmarks of the layers above.

A dict under one lock; versions are a per-store counter ("1", "2", ...), so
every write, even of identical bytes, gets a version never seen before.
"""

from __future__ import annotations

import itertools
import threading

from native.buffers import BytesLike
from s3stream.store.base import (
    ObjectBuffer,
    ObjectData,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    PreconditionFailed,
    joined,
)


class MemoryStore(ObjectStore):
    """Objects in a dict; nothing survives the process."""

    url = "memory://"
    checks_its_own_conditions = True  # under the dict's lock

    def __init__(self) -> None:
        self._objects: dict[str, tuple[bytes, str]] = {}
        self._versions = itertools.count(1)
        self._lock = threading.Lock()

    def put(self, key: str, data: ObjectData) -> str:
        _check_key(key)
        with self._lock:
            return self._store(key, joined(data))

    def put_if_absent(self, key: str, data: ObjectBuffer) -> str:
        _check_key(key)
        with self._lock:
            if key in self._objects:
                raise PreconditionFailed(key, "exists")
            return self._store(key, data)

    def put_if_version(self, key: str, data: ObjectBuffer, version: str) -> str:
        _check_key(key)
        with self._lock:
            current = self._objects.get(key)
            if current is None or current[1] != version:
                raise PreconditionFailed(key, f"version is not {version}")
            return self._store(key, data)

    def _store(self, key: str, data: BytesLike) -> str:
        version = str(next(self._versions))
        self._objects[key] = (bytes(data), version)
        return version

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        if start < 0 or (end is not None and end < 0):
            raise ValueError(f"negative range [{start}, {end}) for {key!r}")
        data, _ = self._get(key)
        if start > len(data):
            raise ObjectNotFound(key)
        return data[start:end]

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        return self._get(key)

    def _get(self, key: str) -> tuple[bytes, str]:
        with self._lock:
            found = self._objects.get(key)
        if found is None:
            raise ObjectNotFound(key)
        return found

    def head(self, key: str) -> ObjectInfo:
        data, version = self._get(key)
        return ObjectInfo(key, len(data), version)

    def delete(self, key: str) -> None:
        with self._lock:
            self._objects.pop(key, None)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        with self._lock:
            items = [(k, v) for k, v in self._objects.items() if k.startswith(prefix)]
        return [ObjectInfo(k, len(data), version) for k, (data, version) in sorted(items)]


def _check_key(key: str) -> None:
    # The other backends cannot store an empty key either; refuse it here too
    # so tests on memory catch what would fail on disk or S3.
    if not key:
        raise ValueError("empty object key")
