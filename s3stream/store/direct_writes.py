"""Writing a large object's bytes past the page cache (O_DIRECT), for the
local object store.

Written through the page cache, every byte of an object is copied by the
kernel into pages cut from free memory, written out a MiB at a time,
and the pages are then given back (local.py's ``_release_pages``): page
allocation, dirty accounting, the write-out's per-page work and the
give-back, for bytes nothing reads again (readers go through the block
cache). On a virtual machine whose host takes free memory back, the fresh
pages cost a host fault each on top
(docs/design/0130-large-objects-written-past-the-page-cache.md).

Written direct, each MiB is copied once in user space into a buffer that
stays mapped (its pages present, reused put after put) and handed to the
disk from there. O_DIRECT wants the memory, the file offset and the length
aligned to the device's logical block: the buffer is page-aligned (an
anonymous mapping), every write is a whole number of ``ALIGNMENT`` bytes at
a multiple of it, and the last one is padded with zeros past the object's
end, which ``ftruncate`` then cuts off. Each write returns once the device
has the bytes, so at most one step of object data is ever queued ahead of
the WAL's fdatasync, as with the buffered writer's write-out per MiB; the
caller's fsync makes the object durable (the file's size, and the device's
cache), as before.

A filesystem that refuses O_DIRECT (tmpfs before Linux 6.6, some FUSE
filesystems, a device with a logical block larger than ``ALIGNMENT``)
refuses with EINVAL (some with EOPNOTSUPP) when the flag is set or at the
first write: the file is then emptied and written through the page cache (``write_direct`` returns
False), and nothing written is lost or doubled.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import threading
from collections.abc import Sequence

ALIGNMENT = 4096
"""Bytes every direct write's offset and length are a multiple of: a page,
and the largest logical block of the disks in use."""
STEP = 1024 * 1024
"""Bytes per direct write, and the size of each bounce buffer. Steps of 512
and 256 KiB did not lower the WAL's fdatasync tail beside the puts, and cost
the putting thread more CPU per MiB (docs/design/0138)."""
DIRECT_MIN_BYTES = 1024 * 1024
"""Objects smaller than this (manifests, catalog records) are written
through the page cache: for a few KiB a bounce copy and a round trip to
the device per write save nothing."""
_KEPT_BUFFERS = 4
"""Bounce buffers kept mapped between puts: one per thread that puts at
once (the upload thread, its put-ahead and background workers, the
compactor)."""

_O_DIRECT: int = getattr(os, "O_DIRECT", 0)
"""0 where the platform has no such flag (macOS): always buffered."""

_REFUSALS = frozenset({errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP})
"""The errors a filesystem refuses O_DIRECT with: a put given one is
written through the page cache instead, where another error fails it (and
the uploader tries again: a refusal retried would fail every time)."""

_spare: list[mmap.mmap] = []
_spare_lock = threading.Lock()


def _take_buffer() -> mmap.mmap:
    with _spare_lock:
        if _spare:
            return _spare.pop()
    return mmap.mmap(-1, STEP)


def _give_back(buffer: mmap.mmap) -> None:
    with _spare_lock:
        if len(_spare) < _KEPT_BUFFERS:
            _spare.append(buffer)
    # One not kept is dropped, never closed: after a failed write, views of
    # it live on in the traceback being raised, and ``close`` would raise
    # BufferError over the put's own error (a transient EIO the uploader
    # retries would become an error it does not catch). The mapping goes
    # with its last view.


def _set_direct(fd: int, on: bool) -> bool:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    wanted = flags | _O_DIRECT if on else flags & ~_O_DIRECT
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, wanted)
    except OSError as error:
        if error.errno in _REFUSALS:
            return False
        raise
    return True


def write_direct(fd: int, parts: Sequence[memoryview], size: int) -> bool:
    """Writes ``parts`` (contiguous byte views, ``size`` bytes in all) back
    to back from offset 0 of ``fd``, a new, empty file opened for writing,
    with O_DIRECT. Returns False, having written nothing that stays, if
    the platform or the filesystem refuses O_DIRECT: the caller then writes
    the file through the page cache. Leaves ``fd`` without O_DIRECT unless
    it raises (the caller then removes the file)."""
    if not _O_DIRECT or size < DIRECT_MIN_BYTES or not _set_direct(fd, True):
        return False
    buffer = _take_buffer()
    try:
        _write_through(fd, memoryview(buffer), parts, size)
    except OSError as error:
        if error.errno not in _REFUSALS:
            raise
        # Refused at a write: start again through the page cache.
        _set_direct(fd, False)
        os.ftruncate(fd, 0)
        return False
    finally:
        _give_back(buffer)
    _set_direct(fd, False)
    return True


def _write_through(fd: int, bounce: memoryview, parts: Sequence[memoryview], size: int) -> None:
    filled = offset = 0
    for part in parts:
        at, length = 0, len(part)
        while at < length:
            take = min(STEP - filled, length - at)
            bounce[filled : filled + take] = part[at : at + take]
            filled += take
            at += take
            if filled == STEP:
                _pwrite_all(fd, bounce, offset)
                offset += STEP
                filled = 0
    if filled:
        padded = -(-filled // ALIGNMENT) * ALIGNMENT
        bounce[filled:padded] = bytes(padded - filled)
        _pwrite_all(fd, bounce[:padded], offset)
        offset += filled
    if offset != size:
        raise ValueError(f"parts hold {offset} bytes, not the {size} expected")
    os.ftruncate(fd, size)  # the last write's padding


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    """A short direct write (the disk filled up mid-call) ends at a block
    boundary the filesystem chose; the rest is written from there."""
    while len(view):
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.EIO, "a direct write wrote nothing")
        if written % ALIGNMENT:
            raise OSError(errno.EINVAL, "a direct write ended off a block boundary")
        view = view[written:]
        offset += written
