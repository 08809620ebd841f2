"""Typed errors of the write-ahead log; each carries the facts of its failure."""

from __future__ import annotations


class WalError(Exception):
    """Base of every write-ahead log error."""


class LogLocked(WalError):
    """Another writer (this process or another) holds the directory's lock."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path} is locked by another writer: one log per directory")
        self.path = path


class PermissionDenied(WalError):
    """The log directory or one of its files cannot be opened or written."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"permission denied on {path}: {reason}")
        self.path = path


class CorruptSegment(WalError):
    """Acknowledged data is damaged: a bad record that is not the torn tail.

    Nothing was changed. Opening with ``accept_data_loss=True`` keeps every
    readable record and drops the damaged bytes.
    """

    def __init__(
        self,
        path: str,
        offset: int,
        reason: str,
        *,
        bytes_beyond: int = 0,
        records_beyond: int = 0,
        later_segments: int = 0,
    ) -> None:
        beyond = f"{bytes_beyond} bytes holding {records_beyond} readable records lie beyond it"
        if later_segments:
            beyond += f", and {later_segments} later segments"
        super().__init__(
            f"corrupt write-ahead log segment {path} at byte {offset}: {reason}; {beyond}; "
            "nothing was changed (accepting data loss salvages the readable records)"
        )
        self.path = path
        self.offset = offset
        self.reason = reason
        self.bytes_beyond = bytes_beyond
        self.records_beyond = records_beyond
        self.later_segments = later_segments


class NoRoomForSegment(WalError):
    """A new segment file could not be given its full size."""

    def __init__(self, path: str, needed: int, free: int, error: OSError) -> None:
        super().__init__(
            f"cannot preallocate write-ahead log segment {path}: it needs {needed} bytes, "
            f"{free} bytes are free on its file system ({error.strerror}); free some space "
            "or lower the segment size"
        )
        self.path = path
        self.needed = needed
        self.free = free
        self.errno = error.errno


class DiskFull(WalError):
    """A write or sync failed with ENOSPC; the log stops accepting appends."""

    def __init__(self, path: str) -> None:
        super().__init__(f"no space left on device writing {path}; the log is now read-only")
        self.path = path


class LogFailed(WalError):
    """An earlier write or sync failed; no append is accepted after that."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"the log failed earlier and accepts no appends: {cause}")
        self.cause = cause


class LogDefect(LogFailed):
    """A write or sync raised something other than an OSError: a defect, not
    the disk's answer. Its groups fail with it and the log fails as after a
    failed fsync, since nothing written since the last good sync can be
    vouched for."""

    def __init__(self, operation: str, path: str, cause: Exception) -> None:
        WalError.__init__(
            self,
            f"{operation} {path} raised {cause!r}, a defect rather than an I/O error; "
            "the log accepts no appends (reopen it to go on)",
        )
        self.cause = cause
        self.path = path


class LogIOError(WalError):
    """A file operation failed with an I/O error other than a full disk."""

    def __init__(self, operation: str, path: str, error: OSError) -> None:
        super().__init__(f"{operation} {path} failed: {error}")
        self.path = path
        self.errno = error.errno


class LogClosed(WalError):
    """The log was closed."""

    def __init__(self) -> None:
        super().__init__("the write-ahead log is closed")


class RecordTooLarge(WalError):
    """A payload cannot fit in one segment (records never span segments)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"a {size}-byte payload exceeds the segment's limit of {limit} bytes")
        self.size = size
        self.limit = limit
