"""The one name for a buffer of bytes, as every package passes them.

A leaf: it imports nothing of the project, so native, wal, s3stream and
engine all take the name from here without an import cycle.
"""

from __future__ import annotations

BytesLike = bytes | bytearray | memoryview
"""A buffer of bytes (a memoryview of format "B" in one dimension, whose
len() is its size in bytes)."""
