"""The manifest's objects in the store: their keys and their framing.

Version N of the manifest is the delta ``manifest/log/<N>``, and the whole
state at version N may be the checkpoint ``manifest/checkpoint/<N>``; each
is one record: MAGIC, the CRC32C of the body, then the msgpack body
(docs/object-format.md).
"""

from __future__ import annotations

from typing import Any

import msgpack

from native import crc32c
from s3stream.errors import CorruptObject

MAGIC = b"TLMANI\x00\x01"
LOG_PREFIX = "manifest/log/"
CHECKPOINT_PREFIX = "manifest/checkpoint/"
HEADER_SIZE = len(MAGIC) + 4
"""MAGIC and the body's CRC32C: the body starts here."""


def delta_key(seq: int) -> str:
    return f"{LOG_PREFIX}{seq:020d}"


def checkpoint_key(seq: int) -> str:
    return f"{CHECKPOINT_PREFIX}{seq:020d}"


def seq_of(key: str) -> int:
    """The version a delta's or a checkpoint's key names."""
    return int(key.rsplit("/", 1)[-1])


def encode_record(body: Any) -> bytes:
    """MAGIC, CRC32C of the body, then the msgpack body."""
    return framed_record(msgpack.packb(body, use_bin_type=True))


def framed_record(payload: bytes) -> bytes:
    """A record of an already packed msgpack body."""
    return MAGIC + crc32c(payload).to_bytes(4, "little") + payload


def check_framing(key: str, data: bytes) -> None:
    """Refuses a record whose MAGIC or body's CRC32C is wrong: its body,
    ``data[HEADER_SIZE:]``, is then the bytes written."""
    if len(data) < HEADER_SIZE or data[: len(MAGIC)] != MAGIC:
        raise CorruptObject(key, "not a manifest record (bad magic)")
    body = memoryview(data)[HEADER_SIZE:]
    if crc32c(body) != int.from_bytes(data[len(MAGIC) : HEADER_SIZE], "little"):
        raise CorruptObject(key, "manifest record checksum mismatch")


def decode_record(key: str, data: bytes) -> Any:
    check_framing(key, data)
    try:
        return msgpack.unpackb(data[HEADER_SIZE:], raw=False, strict_map_key=False)
    except (TypeError, ValueError, msgpack.ExtraData) as error:
        # TypeError: a map whose key is an array or a map (unhashable).
        raise CorruptObject(key, f"undecodable manifest record: {error}") from error
