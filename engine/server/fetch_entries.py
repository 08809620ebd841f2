"""A Fetch response's partition entries that carry no records (a caught-up
partition, a quiet one, one refused), encoded from a template instead of a
walk of the schema per entry.

librdkafka sends nothing but full fetches (it has no fetch sessions), each
naming every partition its consumer reads, and the response answers each:
with thousands of partitions nearly every entry says only "nothing new",
and walking the schema for each cost the event loop more than finding out.

Such an entry is a fixed head (partition index, error code, high
watermark, last stable offset, and from v5 the log start offset) and a
tail that is the same for every entry of a version and isolation level (no
aborted transactions, no preferred read replica, no records, no tagged
fields). The tail is taken from an entry encoded through the schema, and
checked against a second one, so a version whose layout differed would
fail loudly here rather than answer wrong bytes.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import Any, NamedTuple

from engine.protocol.apis import ApiKey, response_schema
from engine.protocol.encoder import EncodedItem, Sink, item_encoder

FIRST_LOG_START_VERSION = 5
"""Fetch v5 added the log start offset to each partition's entry."""

_HEAD = struct.Struct(">ihqq")
_HEAD_WITH_LOG_START = struct.Struct(">ihqqq")


def record_less_entry(
    version: int,
    committed: bool,
    partition: int,
    error: int,
    high_watermark: int,
    last_stable_offset: int,
    log_start_offset: int,
) -> EncodedItem:
    """A partition's entry with no records, for Fetch ``version`` read
    committed or not: the bytes the schema writes for ``entry_fields`` of
    the same values."""
    whole, tail = _template(version, committed)
    if version >= FIRST_LOG_START_VERSION:
        return EncodedItem(
            whole.pack(partition, error, high_watermark, last_stable_offset, log_start_offset, tail)
        )
    return EncodedItem(whole.pack(partition, error, high_watermark, last_stable_offset, tail))


def entry_fields(
    committed: bool,
    partition: int,
    error: int,
    high_watermark: int,
    last_stable_offset: int,
    log_start_offset: int,
    records: list[Any] | None = None,
    aborted: list[dict[str, int]] | None = None,
) -> dict[str, Any]:
    """A partition's entry as the schema's fields (the Fetch handler's
    answer for a partition that carries records)."""
    return {
        "partition_index": partition,
        "error_code": error,
        "high_watermark": high_watermark,
        "last_stable_offset": last_stable_offset,
        "log_start_offset": log_start_offset,
        "aborted_transactions": (aborted or []) if committed else None,
        "preferred_read_replica": -1,
        "records": records or [],
    }


class _Template(NamedTuple):
    whole: struct.Struct
    """The head's fields, then the tail's bytes."""
    tail: bytes


@lru_cache(maxsize=64)
def _template(version: int, committed: bool) -> _Template:
    write = item_encoder(response_schema(ApiKey.FETCH, version), "responses", "partitions")
    with_log_start = version >= FIRST_LOG_START_VERSION
    head = _HEAD_WITH_LOG_START if with_log_start else _HEAD

    def encoded(values: tuple[int, int, int, int, int]) -> bytes:
        sink = Sink()
        write(sink, entry_fields(committed, *values))
        return b"".join(sink.finish())

    def head_of(values: tuple[int, int, int, int, int]) -> bytes:
        return head.pack(*values) if with_log_start else head.pack(*values[:4])

    probe = (0x5A6B7C8D, 0x1234, 0x0102030405060708, 0x1112131415161718, 0x2122232425262728)
    first = encoded(probe)
    if not first.startswith(head_of(probe)):
        raise AssertionError(f"Fetch v{version}: a partition's entry does not start as assumed")
    tail = first[head.size :]
    other = (7, 0, -1, -1, -1)
    if head_of(other) + tail != encoded(other):
        raise AssertionError(f"Fetch v{version}: a partition's entry has no fixed tail")
    return _Template(struct.Struct(f"{head.format}{len(tail)}s"), tail)
