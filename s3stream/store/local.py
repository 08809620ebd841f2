"""An object store in a local directory: the embedded default (``file:///path``).

Keys map to files under the root ("a/b" is root/a/b). A put writes a temp
file (".tmp-<uuid>") beside the target, fsyncs it, renames it over the target
and fsyncs the directory, so an object is either wholly there or not at all,
even across a power cut; the directory's own entry is synced too, the first
time the store puts into it, whoever made it. The rename happens under a
threading lock plus an flock on root/.lock, and a conditional put checks its
condition under them too, so threads and processes sharing the directory see
one winner; writing and syncing the data happens outside the lock. A temp
file a crashed writer left is removed by ``remove_abandoned_writes`` once
it is an hour old, whichever process sweeps (abandoned.py).

An object of a MiB or more is written past the page cache (O_DIRECT,
direct_writes.py, docs/design/0130) where the filesystem allows it.
Otherwise writes end on the file's MiB boundaries (wal/write_spans.py), and
once written out an object's pages leave the page cache
(``_release_pages``): both keep the kernel from taking memory that a
virtual machine's host took back (docs/design/0023-produce-cpu-breakdown.md).
Readers go through the block cache.

A version is the file's inode, mtime and size. A rename always brings a new
inode, but filesystems reuse freed inodes at once (ext4 cycles through a
handful) and keep mtimes at the clock tick (4 ms), so a write stamps its file
with a nanosecond mtime later than the one it replaces: a version does not
come back, and a stale put_if_version cannot succeed by coincidence.

Limits, unlike S3: a key cannot be both an object and the "directory" of
other keys ("a" and "a/b"); writing one over the other is a permanent error.
Emptied sub-directories are left in place. Errors that retrying cannot fix
(permissions, a full or read-only disk, a file where a directory should be)
are ObjectStoreErrors with ``transient`` False; other I/O errors are transient.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence

from native.buffers import BytesLike
from s3stream.store.abandoned import TEMP_PREFIX, remove_abandoned_temp_files
from s3stream.store.base import (
    ObjectBuffer,
    ObjectData,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    PreconditionFailed,
)
from s3stream.store.direct_writes import write_direct
from wal.interrupts import released_contextmanager
from wal.write_spans import write_spans
from wal.writeback import write_back

_LOCK_NAME = ".lock"
_PERMANENT = {
    errno.EACCES,
    errno.EPERM,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.ENAMETOOLONG,
}
# Errors that point at the store's path: permissions, a file where the directory should be.
_MISCONFIGURED = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR}
# Why a conditional put would fail, and the test the current file must pass.
_Condition = tuple[str, Callable[[os.stat_result | None], bool]]
# A path component that is a file, or a key that is a directory: no such object.
_ABSENT = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR}


class LocalStore(ObjectStore):
    """Objects as files under ``root``; shareable by threads and processes."""

    checks_its_own_conditions = True  # under the threading lock and the flock

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.url = f"file://{self.root}"
        os.makedirs(self.root, mode=0o700, exist_ok=True)  # record data: its owner's only
        self._lock = threading.Lock()
        self._durable_directories: set[str] = set()
        """Directories whose entries this store has synced (``_make_directories``)."""
        self.bytes_written_direct = 0
        """Bytes of objects written past the page cache (direct_writes.py)."""
        self._counting = threading.Lock()

    def _count_direct(self, size: int) -> None:
        with self._counting:
            self.bytes_written_direct += size

    def _path(self, key: str) -> str:
        parts = key.split("/")
        if not key or any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"object key {key!r} is empty, absolute or has empty or '..' parts")
        if any(part.startswith(".") for part in parts):
            raise ValueError(f"object key {key!r} has a part starting with '.' (reserved)")
        return os.path.join(self.root, *parts)

    # -- writing ----------------------------------------------------------------

    def put(self, key: str, data: ObjectData) -> str:
        return self._write(key, data, None)

    def put_if_absent(self, key: str, data: ObjectBuffer) -> str:
        return self._write(key, data, ("exists", lambda found: found is None))

    def put_if_version(self, key: str, data: ObjectBuffer, version: str) -> str:
        def at_version(found: os.stat_result | None) -> bool:
            return found is not None and _version(found) == version

        return self._write(key, data, (f"version is not {version}", at_version))

    def _write(self, key: str, data: ObjectData, condition: _Condition | None) -> str:
        """Writes and syncs a temp file, then renames it into place under the lock.

        Only the check and the rename hold the lock, so a slow write blocks no
        one; plain puts take it too, or one could land between a conditional
        put's check and its rename.
        """
        path = self._path(key)
        if condition is not None and not condition[1](self._stat(key, path)):
            raise PreconditionFailed(key, condition[0])  # lost already: write nothing
        directory = os.path.dirname(path)
        temp = os.path.join(directory, f"{TEMP_PREFIX}{uuid.uuid4().hex}")
        try:
            self._make_directories(directory)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                released = _write_all(fd, data)
                stamp = max(time.time_ns(), _mtime_ns(path) + 1)
                os.utime(fd, ns=(stamp, stamp))
                os.fsync(fd)
                if released == _WRITTEN_DIRECT:
                    self._count_direct(os.fstat(fd).st_size)
                else:
                    _release_pages(fd, released, 0)
                with self._exclusive(key):
                    if condition is not None and not condition[1](self._stat(key, path)):
                        raise PreconditionFailed(key, condition[0])
                    replaced = _mtime_ns(path)
                    if replaced >= stamp:  # a later write landed meanwhile: be later still
                        os.utime(fd, ns=(replaced + 1, replaced + 1))
                        os.fsync(fd)
                    os.rename(temp, path)
                version = _version(os.fstat(fd))  # a rename keeps inode, mtime and size
            finally:
                os.close(fd)
            _sync_directory(directory)
            return version
        except BaseException as error:
            _remove_quietly(temp)  # gone already if the rename happened
            if isinstance(error, OSError):
                raise _store_error("put", key, error) from error
            raise

    def _make_directories(self, directory: str) -> None:
        """Creates ``directory`` and its missing parents, each entry made
        durable before a put in it returns.

        A directory found already there may be another writer's (a thread
        or a process sharing the directory) that has not synced its parent
        yet: a put that returned into it could then lose its object,
        renamed and synced into place, with the directory's entry. So each
        directory this store has not yet made durable itself has its
        parent synced once, whoever made it."""
        if directory == self.root or directory in self._durable_directories:
            return
        parent = os.path.dirname(directory)
        self._make_directories(parent)
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
        _sync_directory(parent)
        self._durable_directories.add(directory)

    def remove_abandoned_writes(self) -> int:
        """Removes the temp files of puts that writers, of any process, can
        no longer finish: those whose mtime is older than the grace
        (abandoned.py, docs/design/0041); a live writer's are kept."""
        try:
            return remove_abandoned_temp_files(self.root, time.time_ns()).files
        except OSError as error:
            raise _store_error("remove_abandoned_writes", TEMP_PREFIX, error) from error

    @released_contextmanager
    def _exclusive(self, key: str) -> Iterator[None]:
        # The threading lock queues this process's threads; the flock excludes
        # other processes writing to the same directory. Both are given back
        # through a second Ctrl-C too (wal/interrupts.py).
        with self._lock:
            try:
                fd = os.open(
                    os.path.join(self.root, _LOCK_NAME),
                    os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                    0o600,
                )
            except OSError as error:
                raise _store_error("lock", key, error) from error
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock

    # -- reading ----------------------------------------------------------------

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        if start < 0 or (end is not None and end < 0):
            raise ValueError(f"negative range [{start}, {end}) for {key!r}")
        path = self._path(key)
        try:
            with open(path, "rb", buffering=0) as file:
                size = os.fstat(file.fileno()).st_size
                if start > size:
                    raise ObjectNotFound(key)
                end = size if end is None else min(end, size)
                return _pread_all(file.fileno(), start, end)
        except OSError as error:
            raise _read_error("get", key, error) from error

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        path = self._path(key)
        try:
            with open(path, "rb", buffering=0) as file:
                # The open file is the version we stat: a rename cannot change it.
                status = os.fstat(file.fileno())
                return _pread_all(file.fileno(), 0, status.st_size), _version(status)
        except OSError as error:
            raise _read_error("get", key, error) from error

    def head(self, key: str) -> ObjectInfo:
        status = self._stat(key, self._path(key))
        if status is None:
            raise ObjectNotFound(key)
        return ObjectInfo(key, status.st_size, _version(status))

    def _stat(self, key: str, path: str) -> os.stat_result | None:
        """The object's file status, or None if there is no such object."""
        try:
            status = os.stat(path)
        except OSError as error:
            if error.errno in _ABSENT:
                return None
            raise _store_error("head", key, error) from error
        return status if stat.S_ISREG(status.st_mode) else None

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except OSError as error:
            if error.errno not in _ABSENT:
                raise _store_error("delete", key, error) from error

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        # Walk only the deepest directory the prefix names in full.
        directory = prefix.rpartition("/")[0]
        parts = directory.split("/") if directory else []
        if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
            return []  # no key has such a part, and the walk must not leave the root

        def fail(error: OSError) -> None:
            if error.errno not in _ABSENT:  # gone or a file: nothing listed there
                raise _store_error("list", prefix, error)

        found: list[ObjectInfo] = []
        for walked, subdirectories, files in os.walk(os.path.join(self.root, *parts), onerror=fail):
            subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
            relative = os.path.relpath(walked, self.root).replace(os.sep, "/")
            for name in files:
                if name.startswith("."):
                    continue  # temp files and the lock
                key = name if relative == "." else f"{relative}/{name}"
                if not key.startswith(prefix):
                    continue
                status = self._stat(key, os.path.join(walked, name))
                if status is not None:  # else deleted while we walked
                    found.append(ObjectInfo(key, status.st_size, _version(status)))
        found.sort()
        return found


def _version(status: os.stat_result) -> str:
    return f"{status.st_ino:x}-{status.st_mtime_ns:x}-{status.st_size:x}"


def _write_all(fd: int, data: ObjectData) -> int:
    """Writes one buffer, or parts with writev (which releases the GIL for
    the whole write, where joining them first would hold it for the copy).

    Every ``_SYNC_EVERY`` bytes are written out as they are written: the
    WAL shares the disk, and its fsyncs should wait behind at most a MiB of
    object data, not behind a whole object flushed at the end (measured on
    the wire server at 50 MB/s: produce p99 15-16 ms with 4 MiB steps, 9 ms
    with 1 MiB steps). Written out without a sync (wal/writeback.py): the
    caller's fsync makes the object durable, where a sync per MiB flushed
    the disk's cache 32 times for an object of 32 MiB.

    A large object is written past the page cache instead (direct_writes.py),
    where the filesystem allows it: no pages to write out or give back.

    Returns where the pages it gave back end (``_release_pages``), or
    ``_WRITTEN_DIRECT``.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        parts = [_byte_view(data)]
    else:
        parts = [_byte_view(part) for part in data if len(part)]
    if write_direct(fd, parts, sum(map(len, parts))):
        return _WRITTEN_DIRECT
    position = released = 0
    unsynced = 0
    # A call per MiB of the file, never one across a whole 2 MiB: that would
    # take a 2 MiB folio, several times the CPU (wal/write_spans.py).
    for call in write_spans(parts, 0):
        size = sum(map(len, call))
        written = os.writev(fd, call)
        if written != size:  # a short write: the disk filled up mid-call
            _write_rest(fd, call, written)
        position += size
        unsynced += size
        if unsynced >= _SYNC_EVERY:
            write_back(fd, position - unsynced, unsynced)
            released = _release_pages(fd, released, position)
            unsynced = 0
    return released


_WRITTEN_DIRECT = -1
"""``_write_all``'s answer for an object written past the page cache."""


def _write_rest(fd: int, call: Sequence[BytesLike], skip: int) -> None:
    rest = memoryview(b"".join(call))[skip:]
    while len(rest):
        rest = rest[os.write(fd, rest) :]


def _release_pages(fd: int, start: int, end: int) -> int:
    """Lets the kernel free the page-cache pages of ``fd`` from ``start``
    (where the last release ended) to ``end`` (0: the file's end), which
    are written out and so clean; returns where the pages freed end.

    Kept, objects' pages pile up until memory runs short, and every new
    page is cut from free memory; on a virtual machine that hands free
    memory back to its host (virtio-balloon's free page reporting), once
    the guest's own small free blocks are used up that is memory the host
    must back again at its first write: 3.3-3.7 ms of CPU per MiB written
    against 0.19-0.24 with each object's pages given back, and a server
    producing 3 GiB spent 3.1-3.3 ms/MiB against 1.6
    (docs/design/0023-produce-cpu-breakdown.md). Freed a MiB at a time,
    they are what the next MiB, the WAL and the next request's buffer are
    given. Readers of an object go through the block cache, which holds
    what they read."""
    if _FADVISE is None:
        return start
    if end == 0:
        _FADVISE(fd, start, 0, os.POSIX_FADV_DONTNEED)
        return start
    whole_pages = end - end % mmap.PAGESIZE
    if whole_pages > start:
        # Only pages not given back yet: a walk of the new MiB, not of the
        # whole file so far (older kernels also drained every CPU's page
        # lists, a call on each, when a range held fewer pages than it
        # spans). And never the page ``end`` is inside: Linux would drop it
        # at the file's end, and the next write, which continues it, would
        # first read it back from the disk.
        _FADVISE(fd, start, whole_pages - start, os.POSIX_FADV_DONTNEED)
        return whole_pages
    return start


_FADVISE = getattr(os, "posix_fadvise", None)
"""Not on macOS: there the pages stay cached."""
_SYNC_EVERY = 1 * 1024 * 1024


def _byte_view(data: BytesLike) -> memoryview:
    view = memoryview(data)
    if not view.c_contiguous:  # os.write takes only contiguous buffers
        view = memoryview(view.tobytes())
    return view.cast("B")


def _mtime_ns(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0  # nothing to be later than; a real failure shows in the rename


def _pread_all(fd: int, start: int, end: int) -> bytes:
    # One pread returns at most ~2 GiB on Linux; loop for the rest.
    chunks: list[bytes] = []
    while start < end:
        chunk = os.pread(fd, end - start, start)
        if not chunk:
            break  # truncated under us; cannot happen to files we rename into place
        chunks.append(chunk)
        start += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _sync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _read_error(operation: str, key: str, error: OSError) -> ObjectStoreError:
    if error.errno in _ABSENT:
        return ObjectNotFound(key)
    return _store_error(operation, key, error)


def _store_error(operation: str, key: str, error: OSError) -> ObjectStoreError:
    failure = ObjectStoreError(operation, key, f"{error.strerror or error} ({error.filename})")
    failure.transient = error.errno not in _PERMANENT
    failure.misconfigured = error.errno in _MISCONFIGURED
    return failure
