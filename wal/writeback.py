"""Writing a file's new bytes out to the disk a step at a time, without a
sync: Linux's sync_file_range, for the background writers that share the
disk with the log (a spare segment's zeros, the local object store's
objects).

Such a writer flushes each step as it goes, so that the log's own
fdatasync waits behind at most one step of its bytes, never behind a
whole file flushed at the end. Flushed with fdatasync, each step of a file
still growing also commits the filesystem's journal and flushes the
disk's cache: tens of cache flushes per object, each one the log's sync
queues behind. sync_file_range only writes the pages out and waits for
them; the writer's one fsync at the end makes the file durable, so what
it promises is unchanged. Where the call is missing (not Linux, not
glibc), or the file refuses it, each step is fdatasync'ed as before.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable

WAIT_BEFORE, WRITE, WAIT_AFTER = 1, 2, 4
"""SYNC_FILE_RANGE_* (linux/fs.h): wait for the range's writeback under way,
start the range's, wait for it."""
_UNSUPPORTED = (errno.ENOSYS, errno.EINVAL, errno.ESPIPE, errno.EOPNOTSUPP)

SyncFileRange = Callable[[int, int, int, int], int]


def _find() -> SyncFileRange | None:
    try:
        # The process's own symbols, the C library's among them (as in
        # engine/cli/serve.py: finding libc by name runs ldconfig).
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    call.restype = ctypes.c_int
    found: SyncFileRange = call  # a CDLL call releases the GIL while it waits
    return found


sync_file_range: SyncFileRange | None = _find()


def write_back(fd: int, offset: int, length: int) -> None:
    """Writes bytes [offset, offset + length) of ``fd`` out to the disk and
    waits until they are written (not durable: the caller's fsync at the
    end makes them so)."""
    if sync_file_range is not None:
        if sync_file_range(fd, offset, length, WAIT_BEFORE | WRITE | WAIT_AFTER) == 0:
            return
        error = ctypes.get_errno()
        if error not in _UNSUPPORTED:
            raise OSError(error, os.strerror(error))
    os.fdatasync(fd)
