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
fields): engine/protocol/templates.py makes and checks its template.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import lru_cache, partial
from typing import Any

from engine.protocol.apis import ApiKey, response_schema
from engine.protocol.encoder import EncodedItem, Sink, item_encoder, uvarint
from engine.protocol.templates import RecordsTemplate, Template, records_template, template

FIRST_LOG_START_VERSION = 5
"""Fetch v5 added the log start offset to each partition's entry."""

_INT32 = struct.Struct(">i")
_HEAD = struct.Struct(">ihqq")
_HEAD_WITH_LOG_START = struct.Struct(">ihqqq")


@lru_cache(maxsize=64)
def record_less_packer(version: int, committed: bool) -> Callable[[int, int, int, int, int], bytes]:
    """A partition's entry with no records, for Fetch ``version`` read
    committed or not, as a function of (partition, error, high watermark,
    last stable offset, log start offset): the bytes the schema writes for
    ``entry_fields`` of the same values, from the template found once, for a
    response that writes a topic's many caught-up entries into one buffer."""
    whole, tail = _template(version, committed)
    pack = whole.pack
    if version >= FIRST_LOG_START_VERSION:
        return lambda partition, error, high, stable, start: pack(
            partition, error, high, stable, start, tail
        )
    return lambda partition, error, high, stable, _start: pack(partition, error, high, stable, tail)


def records_entry(
    version: int,
    committed: bool,
    partition: int,
    error: int,
    high_watermark: int,
    last_stable_offset: int,
    log_start_offset: int,
    records: list[Any],
) -> EncodedItem:
    """A partition's entry carrying ``records`` (stored batches) and no
    aborted transactions: the bytes the schema writes for ``entry_fields``
    of the same values, the records attached as Sink.attach takes them."""
    layout = _records_template(version, committed)
    sink = Sink()
    total = sum(map(len, records))
    if version >= FIRST_LOG_START_VERSION:
        sink.buffer += layout.head.pack(
            partition, error, high_watermark, last_stable_offset, log_start_offset, layout.middle
        )
    else:
        sink.buffer += layout.head.pack(
            partition, error, high_watermark, last_stable_offset, layout.middle
        )
    if layout.flexible:
        uvarint(sink.buffer, total + 1)
    else:
        sink.buffer += _INT32.pack(total)
    for batch in records:
        sink.attach(batch)
    sink.buffer += layout.trailer
    # The sink's own buffers are copied: a part is never written to again.
    return EncodedItem(tuple(bytes(p) if isinstance(p, bytearray) else p for p in sink.finish()))


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


@lru_cache(maxsize=64)
def _template(version: int, committed: bool) -> Template:
    write = item_encoder(response_schema(ApiKey.FETCH, version), "responses", "partitions")
    if version >= FIRST_LOG_START_VERSION:
        return template(write, _HEAD_WITH_LOG_START, partial(entry_fields, committed))

    def before_log_start(partition: int, error: int, high_watermark: int, stable: int) -> Any:
        return entry_fields(committed, partition, error, high_watermark, stable, -1)

    return template(write, _HEAD, before_log_start)


@lru_cache(maxsize=64)
def _records_template(version: int, committed: bool) -> RecordsTemplate:
    write = item_encoder(response_schema(ApiKey.FETCH, version), "responses", "partitions")
    if version >= FIRST_LOG_START_VERSION:

        def fields(
            partition: int, error: int, high: int, stable: int, start: int, records: list[Any]
        ) -> Any:
            return entry_fields(committed, partition, error, high, stable, start, records)

        return records_template(write, _HEAD_WITH_LOG_START, fields)

    def before_log_start(
        partition: int, error: int, high: int, stable: int, records: list[Any]
    ) -> Any:
        return entry_fields(committed, partition, error, high, stable, -1, records)

    return records_template(write, _HEAD, before_log_start)
