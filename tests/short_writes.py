"""What a short write of a vector of buffers takes, for the fakes that make
the disk take less than it was given (tests/wal/test_segment_write_faults.py,
tests/s3stream/test_local_write_faults.py)."""

from __future__ import annotations

from collections.abc import Sequence

from native.buffers import BytesLike


def leading_bytes(buffers: Sequence[BytesLike], count: int) -> bytes:
    """The first ``count`` bytes of ``buffers`` laid end to end. Only those
    are copied: copying all that is left at every call made a write taken
    one byte a call quadratic in its size."""
    taken = []
    for buffer in buffers:
        if count <= 0:
            break
        taken.append(memoryview(buffer).cast("B")[:count])
        count -= len(taken[-1])
    return b"".join(taken)
