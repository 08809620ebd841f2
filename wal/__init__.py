"""The local write-ahead log: segments, group commit, recovery and trim.

The on-disk format is specified in docs/wal-format.md.
"""

from wal.errors import (
    CorruptSegment,
    DiskFull,
    LogClosed,
    LogDefect,
    LogFailed,
    LogIOError,
    LogLocked,
    NoRoomForSegment,
    PermissionDenied,
    RecordTooLarge,
    WalError,
)
from wal.group_commit import CommitHook, Durability, Outcome, Waiter, WalStats
from wal.log import DATA, DEFAULT_SEGMENT_BYTES, Append, WriteAheadLog
from wal.loop_call import LoopCall, WalOutcome
from wal.recovery import Damage, Inspection, RecoveryReport, inspect
from wal.segment import Entry, Position

__all__ = [
    "DATA",
    "DEFAULT_SEGMENT_BYTES",
    "Append",
    "CommitHook",
    "CorruptSegment",
    "Damage",
    "DiskFull",
    "Durability",
    "Entry",
    "Inspection",
    "LogClosed",
    "LogDefect",
    "LogFailed",
    "LogIOError",
    "LogLocked",
    "LoopCall",
    "NoRoomForSegment",
    "Outcome",
    "PermissionDenied",
    "Position",
    "RecordTooLarge",
    "RecoveryReport",
    "Waiter",
    "WalError",
    "WalOutcome",
    "WalStats",
    "WriteAheadLog",
    "inspect",
]
