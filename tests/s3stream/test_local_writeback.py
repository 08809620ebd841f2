"""The local object store writes an object out a MiB at a time without a
sync (wal/writeback.py), then makes it durable with one fsync: the WAL's
syncs on the same disk queue behind at most a MiB of it, and behind none
of the journal commits and cache flushes a sync per MiB cost."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from s3stream.store.local import LocalStore
from tests.buffered_puts import without_direct_writes
from wal import writeback

MiB = 1 << 20


def test_an_object_is_written_out_a_mib_at_a_time_and_synced_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_direct_writes(monkeypatch)
    ranges: list[tuple[int, int]] = []
    fdatasyncs: list[int] = []
    real = writeback.sync_file_range
    assert real is not None, "Linux with glibc: sync_file_range is there"

    def recorded(fd: int, offset: int, length: int, flags: int) -> int:
        ranges.append((offset, length))
        return real(fd, offset, length, flags)

    monkeypatch.setattr(writeback, "sync_file_range", recorded)
    monkeypatch.setattr(os, "fdatasync", fdatasyncs.append)
    store = LocalStore(tmp_path / "objects")
    parts = [os.urandom(MiB // 2) for _ in range(7)]  # 3.5 MiB in parts
    store.put("objects/a", parts)
    assert ranges == [(0, MiB), (MiB, MiB), (2 * MiB, MiB)]  # the last half: the fsync's
    assert fdatasyncs == []
    assert store.get("objects/a") == b"".join(parts)
