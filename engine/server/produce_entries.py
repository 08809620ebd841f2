"""A Produce response's entry for a partition whose append was accepted,
encoded from a template instead of a walk of the schema.

librdkafka sends one partition's batch per Produce request to a topic of
thousands of partitions, so the server answers a request per record or
two, and the schema's walk of the one entry was a tenth of the request's
cost on the event loop. An accepted entry is a fixed head (partition
index, error code, base offset, log append time, and from v5 the log start
offset) and a tail the same for every one of a version (no record errors,
no error message, no tagged fields): engine/protocol/templates.py makes
and checks its template. Refused partitions are rare and carry messages:
they are written through the schema.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import Any

from engine.protocol.apis import ApiKey, response_schema
from engine.protocol.encoder import EncodedItem, item_encoder
from engine.protocol.kafka_code import KafkaCode
from engine.protocol.templates import Template, template

FIRST_LOG_START_VERSION = 5
"""Produce v5 added the log start offset to each partition's entry."""

_HEAD = struct.Struct(">ihqq")
_HEAD_WITH_LOG_START = struct.Struct(">ihqqq")


def accepted_entry(
    version: int, index: int, base_offset: int, log_append_time: int, log_start_offset: int
) -> EncodedItem:
    """The entry of an accepted partition for Produce ``version``: the bytes
    the schema writes for ``accepted_fields`` of the same values."""
    whole, tail = _template(version)
    if version >= FIRST_LOG_START_VERSION:
        return EncodedItem.single(
            whole.pack(index, KafkaCode.NONE, base_offset, log_append_time, log_start_offset, tail)
        )
    return EncodedItem.single(whole.pack(index, KafkaCode.NONE, base_offset, log_append_time, tail))


def accepted_fields(
    index: int, base_offset: int, log_append_time: int, log_start_offset: int
) -> dict[str, Any]:
    """The entry of an accepted partition as the schema's fields."""
    return {
        "index": index,
        "error_code": KafkaCode.NONE,
        "base_offset": base_offset,
        "log_append_time": log_append_time,
        "log_start_offset": log_start_offset,
        "record_errors": [],
        "error_message": None,
    }


@lru_cache(maxsize=32)
def _template(version: int) -> Template:
    write = item_encoder(
        response_schema(ApiKey.PRODUCE, version), "responses", "partition_responses"
    )

    def fields(
        index: int, error: int, base_offset: int, append_time: int, log_start: int = -1
    ) -> dict[str, Any]:
        entry = accepted_fields(index, base_offset, append_time, log_start)
        entry["error_code"] = error
        return entry

    head = _HEAD_WITH_LOG_START if version >= FIRST_LOG_START_VERSION else _HEAD
    return template(write, head, fields)
