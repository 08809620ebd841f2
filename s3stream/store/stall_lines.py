"""The object store's lines on ``tidelog.stalls`` (docs/operations.md,
"Stalls"): every write with its size, what it wrote and its MiB/s, and
each read, list or delete that took ``SLOW_REQUEST_S`` or longer. What an
object is comes from its key's prefix; a line never names the bucket or
the store's address. A line's duration is its first "N ms", which
bench/_stalls.py reads back."""

from __future__ import annotations

import logging

from s3stream.store.base import ObjectData

stalls = logging.getLogger("tidelog.stalls")
"""Background disk or network work that a latency spike may be laid against."""

SLOW_REQUEST_S = 0.02
"""Reads, lists and deletes this long or longer are logged (every write is)."""

_KINDS = (
    ("objects/", "data object"),
    ("manifest/log/", "manifest delta"),
    ("manifest/checkpoint/", "manifest checkpoint"),
    ("manifest/probe/", "conditional-write probe"),
    ("tables/", "table file"),
)
"""What a key holds, by its prefix (s3stream/uploader.py, manifest.py,
conditional_probe.py; engine/tables)."""


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


def log_request(
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
