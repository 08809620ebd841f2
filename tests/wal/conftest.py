from __future__ import annotations

import os
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


def payloads(log: WriteAheadLog) -> list[bytes]:
    return [bytes(entry.payload) for entry in log.replay()]


__all__ = ["SMALL_SEGMENT", "os", "payloads", "segment_files"]
