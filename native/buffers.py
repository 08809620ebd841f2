"""The one name for a buffer of bytes, as every package passes them.

A leaf: it imports nothing of the project, so native, wal, s3stream and
engine all take the name from here without an import cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from native._cnative import ByteSlice

    BytesLike: TypeAlias = bytes | bytearray | memoryview | ByteSlice
else:  # ByteSlice exists where the C extension was built
    BytesLike = bytes | bytearray | memoryview
"""A buffer of bytes (a memoryview of format "B" in one dimension, whose
len() is its size in bytes; a ByteSlice is the C extension's read-only
view that the cyclic collector does not track, native.untracked_view)."""
