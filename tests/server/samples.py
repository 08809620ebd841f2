"""Records the Python clients' tests send and expect back unchanged."""

from __future__ import annotations

import native
from native import RecordSpec

CREATE_TIME, LOG_APPEND_TIME = 0, 1
T0 = 1_700_000_000_000
MAX_MESSAGE_BYTES = 1_048_588  # the topic default, Kafka's

Header = tuple[str, bytes]
Sent = tuple[bytes | None, bytes | None, list[Header], int]

# The clients refuse a record with neither key nor value, so each is null
# once, beside empty ones, binary ones, repeated header keys and timestamps
# that go back in time within a batch.
RECORDS: list[Sent] = [
    (b"key", b"value", [("h1", b"one"), ("h2", b"")], T0),
    (None, b"no key", [], T0 + 1),
    (b"tombstone", None, [("h", b"\x00\xff")], T0 + 2),
    (b"", b"", [], T0 + 3),
    (b"repeated", b"v", [("h", b"1"), ("h", b"2"), ("h", b"1")], T0 + 10),
    (b"earlier", b"v", [], T0 + 5),
    (bytes(range(256)), bytes(range(256)) * 64, [("\u00e9t\u00e9", bytes(range(256)))], T0 + 6),
    (b"compressible", b"abc" * 20_000, [], T0 + 7),
]


def value_filling_a_batch(limit: int) -> bytes:
    """A value whose batch (one record at T0, no key, no headers,
    uncompressed) is exactly ``limit`` bytes, as any client lays it out."""

    def batch_size(value: bytes) -> int:
        return len(native.encode_batch([RecordSpec(T0, None, value, ())]))

    value = bytes(limit - 100)
    value = bytes(len(value) + limit - batch_size(value))
    assert batch_size(value) == limit
    return value
