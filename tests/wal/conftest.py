from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from wal import WriteAheadLog

SMALL_SEGMENT = 4096


@pytest.fixture
def open_log(tmp_path: Path) -> Iterator[Callable[..., WriteAheadLog]]:
    """Opens logs in tmp_path (small segments by default) and closes them after."""
    opened: list[WriteAheadLog] = []

    def opener(**options: object) -> WriteAheadLog:
        options.setdefault("segment_bytes", SMALL_SEGMENT)
        log = WriteAheadLog(tmp_path / "wal", **options)  # type: ignore[arg-type]
        opened.append(log)
        return log

    yield opener
    for log in opened:
        log.close()


def segment_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith(".wal") and p.name[0].isdigit())


def crash_image(directory: Path, copy: Path) -> Path:
    """A copy of an open log's directory: what a kill -9 at this moment leaves
    (every write so far is in the page cache; the close's seal is not)."""
    copy.mkdir()
    for segment in segment_files(directory):
        shutil.copyfile(segment, copy / segment.name)
    return copy


def payloads(log: WriteAheadLog) -> list[bytes]:
    return [bytes(entry.payload) for entry in log.replay()]


__all__ = ["SMALL_SEGMENT", "crash_image", "os", "payloads", "segment_files"]
