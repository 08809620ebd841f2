"""Temp files that crashed writers left in a local directory store, and
their removal (docs/design/0041).

A put writes ".tmp-<uuid>" beside its target, syncs it and renames it into
place (local.py); a process that dies in between leaves the temp file
behind, and nothing else would ever remove it. Several processes may share
the directory, and any of them may be writing a temp file of its own at
this moment, so one is removed only once it cannot be in flight: when its
mtime is more than ``TEMP_FILE_GRACE_S`` in the past. A writer's every
write moves its file's mtime to the present and the put stamps it again
(never earlier than now) just before its last sync and the rename, so a
live writer's file is seconds old. One stalled for longer than the grace
(a stopped process) finds its file gone at the rename: its put fails with a
transient error and is retried, as any put may be; no object is lost, since
the put had not returned.

A sweep reads every directory of the store, so it runs on open and then at
most once per ``interval`` (an hour by default, the grace), not in every
compaction pass (:class:`SweepCadence`): a file left just after a sweep is
not yet past the grace at the next one, and goes at the one after, so a
crash's temp files stay up to the grace plus one interval.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
from collections.abc import Callable
from typing import NamedTuple

log = logging.getLogger("tidelog.s3stream")

TEMP_PREFIX = ".tmp-"
"""The name a put's file has until it is renamed over its target."""
TEMP_FILE_GRACE_S = 3600
"""How old a temp file's mtime must be before it is taken for abandoned: an
hour, against writes that take seconds (an object is tens of MiB, written
and synced at the disk's rate)."""


class SweepCadence:
    """Whether a sweep is due, for the compaction thread: once
    ``interval_s`` has passed since the last sweep that finished (the one
    on open, if ``swept_on_open``; else at once). A sweep that fails is
    not one: the next pass tries again, rather than an interval later."""

    def __init__(
        self,
        interval_s: float,
        swept_on_open: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._next = clock() + interval_s if swept_on_open else clock()

    def due(self) -> bool:
        return self._clock() >= self._next

    def swept(self) -> None:
        """Notes a sweep that finished: the next is due ``interval_s`` from now."""
        self._next = self._clock() + self._interval_s


class Removed(NamedTuple):
    """What one sweep removed."""

    files: int
    bytes: int


def remove_abandoned_temp_files(
    root: str, now_ns: int, grace_ns: int = TEMP_FILE_GRACE_S * 1_000_000_000
) -> Removed:
    """Removes every temp file under ``root`` whose mtime is more than
    ``grace_ns`` before ``now_ns``; raises the OSError of a removal that
    fails for another reason than the file being gone already."""
    files = size = 0
    # A directory that vanishes or cannot be read mid-walk is passed over:
    # its temp files, if any, are for a later sweep.
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
        for name in names:
            if not name.startswith(TEMP_PREFIX):
                continue
            path = os.path.join(directory, name)
            try:
                status = os.lstat(path)
            except FileNotFoundError:
                continue  # renamed into place (or removed) since the listing
            if not stat.S_ISREG(status.st_mode) or now_ns - status.st_mtime_ns <= grace_ns:
                continue
            # Removes the name only: were the file renamed into place since
            # the lstat, the name would be gone and the object untouched.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                files += 1
                size += status.st_size
    if files:
        log.info(
            "removed %d temp files (%d bytes) that writers which can no longer finish left in %s",
            files,
            size,
            root,
        )
    return Removed(files, size)
