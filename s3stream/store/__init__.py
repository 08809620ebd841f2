"""Object-store backends behind one interface, and the URLs that name them.

``open_store(url)`` picks one:

- ``file:///path/to/dir`` (or a plain path): a local directory, created if
  missing (LocalStore);
- ``s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1``: S3
  or any S3-compatible server (S3Store). Optional parameters:
  ``access_key_id``, ``secret_access_key``, ``multipart_threshold``,
  ``part_size``, ``max_attempts``, ``connect_timeout``, ``read_timeout``,
  ``max_pool_connections``, ``conditional_writes`` (``enforced``, the
  default, checked at open; or ``unenforced-single-writer`` for a server
  that ignores If-None-Match / If-Match, see docs/object-format.md); values
  are percent-encoded as in any query.
  Without keys, credentials come from boto3's usual chain;
- ``memory://``: a new, empty in-process store (MemoryStore), for tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from s3stream.store.base import (
    BytesLike,
    ConditionalWrites,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    PreconditionFailed,
)
from s3stream.store.local import LocalStore
from s3stream.store.memory import MemoryStore
from s3stream.store.s3 import S3Store

# URL parameter -> (S3Store argument, its type)
_S3_OPTIONS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "endpoint": ("endpoint_url", str),
    "region": ("region", str),
    "access_key_id": ("access_key_id", str),
    "secret_access_key": ("secret_access_key", str),
    "multipart_threshold": ("multipart_threshold", int),
    "part_size": ("part_size", int),
    "max_attempts": ("max_attempts", int),
    "connect_timeout": ("connect_timeout", float),
    "read_timeout": ("read_timeout", float),
    "max_pool_connections": ("max_pool_connections", int),
    "conditional_writes": ("conditional_writes", ConditionalWrites),
}


def open_store(url: str) -> ObjectStore:
    """The object store a URL names (see the module docstring); ValueError if it names none."""
    parsed = urlparse(url)
    if parsed.scheme == "memory":
        if parsed.netloc or parsed.path or parsed.query:
            raise ValueError(f"memory:// takes no location or parameters: {url!r}")
        return MemoryStore()
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"file URLs name a local path (file:///...), not a host: {url!r}")
        if parsed.query:
            raise ValueError(f"file URLs take no parameters: {url!r}")
        return _local(url, unquote(parsed.path))
    if not parsed.scheme:
        return _local(url, url)
    if parsed.scheme == "s3":
        return _s3(url, parsed.netloc, unquote(parsed.path), parsed.query)
    raise ValueError(f"unsupported object store URL {url!r} (file://, s3://, memory://)")


def _local(url: str, path: str) -> LocalStore:
    if not path:
        raise ValueError(f"no directory in {url!r}")
    return LocalStore(path)


def _s3(url: str, bucket: str, prefix: str, query: str) -> S3Store:
    if not bucket:
        raise ValueError("no bucket in the s3:// URL")
    where = f"s3://{bucket}/{prefix.lstrip('/')}"  # not the query: it may hold a secret
    parameters = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(parameters) - set(_S3_OPTIONS))
    if unknown:
        raise ValueError(
            f"unknown s3 URL parameters {', '.join(unknown)} for {where}"
            f" (known: {', '.join(_S3_OPTIONS)})"
        )
    options: dict[str, Any] = {}
    for name, values in parameters.items():
        argument, kind = _S3_OPTIONS[name]
        if len(values) > 1:
            raise ValueError(f"s3 URL parameter {name} given {len(values)} times for {where}")
        try:
            if not values[0]:
                raise ValueError("empty")
            options[argument] = kind(values[0])
        except ValueError:
            shown = "..." if name == "secret_access_key" else repr(values[0])
            raise ValueError(f"bad s3 URL parameter {name}={shown} for {where}") from None
    return S3Store(bucket, prefix, **options)


__all__ = [
    "BytesLike",
    "ConditionalWrites",
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
