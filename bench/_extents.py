"""What a file's extents are, as the file system keeps them (Linux's
FS_IOC_FIEMAP, linux/fiemap.h): whether a benchmark's file really is
preallocated, written, or still waiting for writeback, without perf or
privileges."""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from typing import NamedTuple

FS_IOC_FIEMAP = 0xC020660B
"""_IOWR('f', 11, struct fiemap)."""
_HEADER = struct.Struct("=QQIIII")
"""struct fiemap: fm_start, fm_length, fm_flags, fm_mapped_extents,
fm_extent_count, fm_reserved; its extents follow."""
_EXTENT = struct.Struct("=QQQ2QI3I")
"""struct fiemap_extent: fe_logical, fe_physical, fe_length, two reserved
u64, fe_flags, three reserved u32."""
EXTENT_LAST = 0x1
EXTENT_DELALLOC = 0x4
EXTENT_UNWRITTEN = 0x800
_PER_CALL = 64
_UNSUPPORTED = (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS)


class Extents(NamedTuple):
    """Bytes of a file by the state of the blocks under them (a hole's are
    in none)."""

    written: int
    """On the disk as written data."""
    unwritten: int
    """Allocated, never written (fallocate'd): a write into them makes the
    next sync convert the extent."""
    delayed: int
    """Written to the page cache, not yet given blocks: not on the disk."""


def extents_of(path: str) -> Extents | None:
    """The file's extents as they are now (no flush first: FIEMAP_FLAG_SYNC
    would write out what the count is meant to find), or None where the
    file system cannot map them (tmpfs, not Linux)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        written = unwritten = delayed = start = 0
        while True:
            request = bytearray(_HEADER.size + _PER_CALL * _EXTENT.size)
            _HEADER.pack_into(request, 0, start, (1 << 64) - 1 - start, 0, 0, _PER_CALL, 0)
            try:
                fcntl.ioctl(fd, FS_IOC_FIEMAP, request, True)
            except OSError as error:
                if error.errno in _UNSUPPORTED:
                    return None
                raise
            mapped = _HEADER.unpack_from(request, 0)[3]
            if mapped == 0:
                return Extents(written, unwritten, delayed)
            for index in range(mapped):
                logical, _, length, _, _, flags, *_ = _EXTENT.unpack_from(
                    request, _HEADER.size + index * _EXTENT.size
                )
                if flags & EXTENT_UNWRITTEN:
                    unwritten += length
                elif flags & EXTENT_DELALLOC:
                    delayed += length
                else:
                    written += length
                start = logical + length
                if flags & EXTENT_LAST:
                    return Extents(written, unwritten, delayed)
    finally:
        os.close(fd)
