"""A WAL directory's exclusive lock: one writer per directory, held by an
open file description of its LOCK file with flock, and never by a process
forked from the holder.

A child forked without exec (os.fork, multiprocessing's fork start
method) inherits the descriptor, and with it the lock: flock belongs to
the open file description, which stays locked while any descriptor of it
is open. The child would hold the directory until it exits, however long
after the parent closed its log, and the parent's next open would be
refused with LogLocked. So each process forked from one holding locks
closes its copies at once (os.register_at_fork). Closing a copy never
unlocks the description while the parent's descriptor is open; an
explicit ``flock(LOCK_UN)`` would, for the parent too, so a lock is only
ever released by closing. O_CLOEXEC does the same for a child that execs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import weakref

from wal.errors import LogIOError, LogLocked, PermissionDenied


class DirectoryLock:
    """A directory's lock, held until ``release``."""

    def __init__(self, directory: str, fd: int) -> None:
        self.directory = directory
        self._fd = fd
        _held.add(self)

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def release(self) -> None:
        """Gives the directory back; again, or in a forked child (whose copy
        was closed at the fork), it does nothing."""
        fd, self._fd = self._fd, -1  # taken first: the number may be another file's later
        _held.discard(self)
        if fd >= 0:
            os.close(fd)

    def _forget_in_child(self) -> None:
        """In a forked child: closes this process's copy of the descriptor,
        which leaves the parent's lock as it is (see the module's note)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


_held: weakref.WeakSet[DirectoryLock] = weakref.WeakSet()
"""The locks this process holds: what a child forked from it lets go."""


def _after_fork_in_child() -> None:
    # The child runs one thread: no lock is taken here (another thread may
    # have held one at the fork, for ever in the child).
    for lock in list(_held):
        lock._forget_in_child()
    _held.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def lock_directory(directory: str) -> DirectoryLock:
    """Takes the directory's exclusive lock; one writer per directory:
    LogLocked if another open file description holds it (another process,
    or another log of this one)."""
    lock_path = os.path.join(directory, "LOCK")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)  # record data: its owner's only
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except PermissionError as error:
        raise PermissionDenied(error.filename or directory, str(error)) from error
    except OSError as error:
        raise LogIOError("opening", directory, error) from error
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(fd)
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise LogLocked(directory) from error
        raise LogIOError("locking", lock_path, error) from error
    return DirectoryLock(directory, fd)
