"""Why an engine refused to open, said in one line: what, where, what to do.

``tidelog serve`` and ``tidelog recover`` print this instead of a traceback
when the data directory, its WAL, the object store or the config stops them.
"""

from __future__ import annotations

from engine.errors import EngineError
from s3stream import ObjectStoreError, S3StreamError
from wal import CorruptSegment, LogLocked, NoRoomForSegment, PermissionDenied, WalError

REFUSALS: tuple[type[BaseException], ...] = (
    WalError,
    S3StreamError,
    ObjectStoreError,
    EngineError,
    OSError,
    ValueError,
)
"""What an open can fail with that is the operator's to fix, not a bug."""


def describe(error: BaseException, data_dir: str) -> str:
    """One line: the failure with its facts, and what to do about it."""
    if isinstance(error, CorruptSegment):
        return (
            f"the write-ahead log in {data_dir} is damaged: {error}. "
            f"Run `tidelog recover {data_dir}` to see the damage, and "
            f"`tidelog recover --accept-data-loss {data_dir}` to keep every readable record "
            "and drop the damaged bytes"
        )
    if isinstance(error, LogLocked):
        return (
            f"the data directory {data_dir} is in use by another tidelog process "
            f"({error.path} is locked). Stop that process, or choose another --data-dir"
        )
    if isinstance(error, NoRoomForSegment):
        return f"{error} (the config's [store] wal_segment_bytes)"
    if isinstance(error, PermissionDenied):
        return f"{error}. Give this user read and write access to {data_dir}"
    if isinstance(error, ObjectStoreError):
        failed = f"the object store failed while opening {data_dir}: {error}"
        if error.misconfigured:
            return f"{failed}. Check its URL, endpoint and credentials, and that it is reachable"
        if error.transient:  # a timeout, a 5xx: nothing to change, only to wait for
            return f"{failed}. The failure may pass: start again once the store answers"
        return failed
    if isinstance(error, (FileExistsError, NotADirectoryError)):
        return (
            f"{error.filename or data_dir} is not a directory: choose a --data-dir (and"
            " object store) that is one, or that does not exist yet"
        )
    text = str(error) or type(error).__name__
    return text
