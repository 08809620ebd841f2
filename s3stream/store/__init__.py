"""Object-store backends behind one interface: local directory, S3, memory.

``open_store(url)`` picks one from a URL:

- ``file:///path/to/dir`` (or a plain path): a local directory;
- ``s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1``:
  S3 or any S3-compatible server; optional ``access_key_id``,
  ``secret_access_key``, ``multipart_threshold``, ``part_size``,
  ``max_attempts``; credentials otherwise come from boto3's usual chain;
- ``memory://``: in-process, for tests.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from s3stream.store.base import (
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    PreconditionFailed,
)
from s3stream.store.local import LocalStore
from s3stream.store.memory import MemoryStore
from s3stream.store.s3 import S3Store

_S3_OPTIONS = {
    "endpoint": ("endpoint_url", str),
    "region": ("region", str),
    "access_key_id": ("access_key_id", str),
    "secret_access_key": ("secret_access_key", str),
    "multipart_threshold": ("multipart_threshold", int),
    "part_size": ("part_size", int),
    "max_attempts": ("max_attempts", int),
}


def open_store(url: str) -> ObjectStore:
    """The object store a URL names (see the module docstring)."""
    parsed = urlparse(url)
    if parsed.scheme == "memory":
        return MemoryStore()
    if parsed.scheme in ("", "file"):
        path = unquote(parsed.path) if parsed.scheme else url
        if parsed.scheme and parsed.netloc not in ("", "localhost"):
            raise ValueError(f"file URLs name a local path (file:///...): {url!r}")
        if not path:
            raise ValueError(f"no directory in {url!r}")
        return LocalStore(path)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"no bucket in {url!r}")
        query = parse_qs(parsed.query, keep_blank_values=True)
        unknown = sorted(set(query) - set(_S3_OPTIONS))
        if unknown:
            raise ValueError(f"unknown s3 URL parameters: {', '.join(unknown)}")
        options: dict[str, Any] = {}
        for name, values in query.items():
            argument, kind = _S3_OPTIONS[name]
            options[argument] = kind(values[-1])
        return S3Store(parsed.netloc, parsed.path.strip("/"), **options)
    raise ValueError(f"unsupported object store URL {url!r} (file://, s3://, memory://)")


__all__ = [
    "LocalStore",
    "MemoryStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreError",
    "PreconditionFailed",
    "S3Store",
    "open_store",
]
