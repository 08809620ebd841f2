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

The answer to a request of one accepted partition, librdkafka's every
request to such a topic, is likewise written whole from a template of its
topic and version (accepted_answer): the frame's size and correlation id,
the bytes the schema writes before the entry (the response header, the one
topic and the arrays' lengths), the entry, and the bytes after it (no
tagged fields, a throttle time of 0 that a quota's throttle overwrites).
They are taken from an answer encoded through the schema around a marker
entry and a marker throttle time.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import Any

from engine.protocol.apis import ApiKey, response_schema
from engine.protocol.codec import Encoded, encode_response
from engine.protocol.encoder import EncodedItem, item_encoder
from engine.protocol.frames import SIZE_PREFIX, RequestHeader
from engine.protocol.kafka_code import KafkaCode
from engine.protocol.templates import Template, template

FIRST_LOG_START_VERSION = 5
"""Produce v5 added the log start offset to each partition's entry."""

_HEAD = struct.Struct(">ihqq")
_HEAD_WITH_LOG_START = struct.Struct(">ihqqq")
_FRAME_HEAD = struct.Struct(">ii")
_ENTRY_MARK = bytes(range(0xF0, 0x100))
"""Stands for the entry in the answer a template is taken from: bytes no
topic name holds (UTF-8 has no 0xF5-0xFF), found there exactly once or no
template is made."""
_THROTTLE_PROBE = 0x7E5D4C3B
"""The throttle time of the answer a template is taken from, found there
exactly once: where a quota's throttle is written in (Encoded.throttle_at)."""
_ANSWER_TEMPLATES = 4096
"""Answer templates kept, by version and topic (a few hundred bytes each)."""
_new = tuple.__new__
_NO_ERROR = KafkaCode.NONE
"""Read once: an Enum class's attribute is looked up through its
metaclass's __getattr__ hook (some 900 instructions), and every accepted
Produce's answer is packed with it."""


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


def accepted_answer(
    header: RequestHeader,
    topic: str,
    index: int,
    base_offset: int,
    log_append_time: int,
    log_start_offset: int,
) -> Encoded | None:
    """The whole answer frame to a Produce request whose one partition's
    append was accepted: the bytes encode_response writes for the answer
    holding only accepted_entry's entry and a throttle time of 0 (a
    quota's throttle is written in later, at ``throttle_at``). None for a
    topic whose answer cannot be templated."""
    # Unpacked, where each field read by name is a descriptor call (3.11).
    _, version, correlation_id, _, _ = header
    made = _answer_template(version, topic)
    if made is None:
        return None
    whole, before, after, throttle_from_end = made
    size = whole.size - SIZE_PREFIX  # the size counts what follows it
    if version >= FIRST_LOG_START_VERSION:
        frame = whole.pack(
            size, correlation_id, before, index, _NO_ERROR, base_offset, log_append_time,
            log_start_offset, after,
        )  # fmt: skip
    else:
        frame = whole.pack(
            size, correlation_id, before, index, _NO_ERROR, base_offset, log_append_time, after
        )
    # tuple.__new__ itself: the NamedTuple's own __new__ is a Python call,
    # once an accepted Produce.
    return _new(Encoded, ([frame], whole.size - throttle_from_end))


@lru_cache(maxsize=_ANSWER_TEMPLATES)
def _answer_template(version: int, topic: str) -> tuple[struct.Struct, bytes, bytes, int] | None:
    """Packs a whole answer (size, correlation id, ``before``, the entry's
    head, ``after``: the entry's tail and what follows it), with the two
    byte strings to pack and where the throttle time is, from the end."""
    header = RequestHeader(ApiKey.PRODUCE, version, 0, None, 0)
    body = {
        "responses": [
            {"name": topic, "partition_responses": [EncodedItem.single(_ENTRY_MARK)]},
        ],
        "throttle_time": _THROTTLE_PROBE,
    }
    frame = b"".join(encode_response(header, body))[_FRAME_HEAD.size :]
    if frame.count(_ENTRY_MARK) != 1:
        return None
    before, after = frame.split(_ENTRY_MARK)
    throttle = _THROTTLE_PROBE.to_bytes(4, "big")
    if after.count(throttle) != 1:
        return None
    at = after.index(throttle)
    throttle_from_end = len(after) - at  # the frame ends with ``after``
    _, tail = _template(version)
    after = tail + after[:at] + bytes(4) + after[at + 4 :]
    head = _HEAD_WITH_LOG_START if version >= FIRST_LOG_START_VERSION else _HEAD
    whole = struct.Struct(f">ii{len(before)}s{head.format[1:]}{len(after)}s")
    return whole, before, after, throttle_from_end
