"""Directories in memory for tests whose claims do not rest on the disk.

A stateful model test opens an engine or a store hundreds of times and each
open, append and upload fsyncs its files: on a disk shared with other test
runs the fsyncs were most of such a test's time (tests/engine/test_model.py,
docs/testing.md's "twelfth pass"). Its crashes are closes without a flush in
the same process, which the page cache survives as a tmpfs does, so an fsync
there buys the test nothing. Tests of what reaches the device (torn writes,
fsync failures, kill -9) keep pytest's tmp_path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MEMORY_FS = Path("/dev/shm")
ROOM_NEEDED = 512 << 20
"""Free bytes the tmpfs must have: the model tests' directories (a few MiB at
most, three workers at once) fit many times over. A container's /dev/shm is
often 64 MiB: such a machine gets the disk rather than a full tmpfs."""


def memory_root() -> str | None:
    """/dev/shm where the machine has it writable and roomy (Linux); None
    elsewhere, which puts the directory in the usual temporary directory."""
    if not (MEMORY_FS.is_dir() and os.access(MEMORY_FS, os.W_OK)):
        return None
    room = os.statvfs(MEMORY_FS)
    return str(MEMORY_FS) if room.f_bavail * room.f_frsize >= ROOM_NEEDED else None


@contextmanager
def memory_backed_dir(prefix: str) -> Iterator[Path]:
    """A new empty directory on a tmpfs if there is one, removed on exit."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=memory_root()))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
