"""Record batches appended in one produce, as one stored entry, and a
fetch's answer split back into its batches: what the tests of fetches
cut at batch boundaries share."""

from __future__ import annotations

import engine
import native
from native import RecordSpec

NOW = 1_700_000_000_000


def batches_of(sizes: list[int], value_bytes: int = 40) -> list[bytes]:
    """One encoded batch per item of ``sizes``, of that many records."""
    return [
        native.encode_batch(
            [RecordSpec(NOW, b"k", bytes([i % 256]) * value_bytes, ()) for _ in range(count)]
        )
        for i, count in enumerate(sizes)
    ]


def appended_as_one(opened: engine.Engine, topic: str, batches: list[bytes]) -> list[bytes]:
    """``batches`` appended in one produce (one stored entry); the batches as
    stored (offsets and leader epoch rewritten), in order."""
    opened.create_topic(topic, 1)
    opened.produce(topic, 0, b"".join(batches))
    stored = bytearray(b"".join(opened.fetch(topic, 0, 0, 1 << 30).records))
    return [bytes(stored[h.position : h.position + h.size]) for h in native.scan_batches(stored)]


def batch_offsets(batch: bytes | memoryview) -> tuple[int, int]:
    (header,) = native.scan_batches(batch)
    return header.base_offset, header.last_offset


def split(records: list[bytes | memoryview]) -> list[bytes]:
    """The record batches of a fetch's answer, one by one."""
    whole = b"".join(records)
    return [whole[h.position : h.position + h.size] for h in native.scan_batches(whole)]
