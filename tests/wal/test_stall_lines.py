"""The WAL's tidelog.stalls lines (docs/operations.md): a slow sync, a roll
(into a prepared segment or one the roll made) and a spare (zero-filled or
from a free file) are each logged at DEBUG with what they were."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from wal import WriteAheadLog, syncer
from wal.format import RECORD_HEADER_SIZE

SEGMENT = 256 * 1024


def _stalls(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tidelog.stalls"]


def test_a_sync_as_slow_as_the_threshold_is_logged_with_its_segment(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(syncer, "SLOW_SYNC_S", 0.0)  # every sync is slow enough
    with (
        caplog.at_level(logging.DEBUG, logger="tidelog.stalls"),
        WriteAheadLog(tmp_path / "wal", segment_bytes=SEGMENT) as log,
    ):
        position = log.append(b"record")
    syncs = [m for m in _stalls(caplog) if m.startswith("WAL sync")]
    assert syncs and syncs[0].startswith(f"WAL sync of segment {position.segment} took ")


def test_no_sync_below_the_threshold_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(syncer, "SLOW_SYNC_S", float("inf"))
    with (
        caplog.at_level(logging.DEBUG, logger="tidelog.stalls"),
        WriteAheadLog(tmp_path / "wal", segment_bytes=SEGMENT) as log,
    ):
        log.append(b"record")
    assert [m for m in _stalls(caplog) if m.startswith("WAL sync")] == []


def test_rolls_and_spares_are_logged_with_how_each_was_made(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record = b"x" * (SEGMENT // 4)
    with (
        caplog.at_level(logging.DEBUG, logger="tidelog.stalls"),
        WriteAheadLog(tmp_path / "wal", segment_bytes=SEGMENT) as log,
    ):
        for _ in range(4):  # past the first segment: no spare yet
            log.append(record)
        first_roll = [m for m in _stalls(caplog) if m.startswith("WAL rolled")]
        log._spare_maker.join()  # type: ignore[union-attr]  # the spare the roll asked for
        for _ in range(4):  # past the second: into that spare
            log.append(record)
    lines = _stalls(caplog)
    assert first_roll == [first_roll[0]] and first_roll[0].endswith("(made by the roll)")
    rolled, spare = "WAL rolled into segment 3 ", "WAL spare for segment 3 "
    assert any(m.startswith(rolled) and m.endswith("(prepared)") for m in lines)
    assert any(m.startswith(spare) and m.endswith("(zero-filled)") for m in lines)


def test_a_slow_sync_says_how_many_bytes_it_covered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(syncer, "SLOW_SYNC_S", 0.0)  # every sync is slow enough
    record = b"r" * 10240
    with (
        caplog.at_level(logging.DEBUG, logger="tidelog.stalls"),
        WriteAheadLog(tmp_path / "wal", segment_bytes=SEGMENT) as log,
    ):
        log.append(record)  # one group, one sync: the record and its header
    syncs = [m for m in _stalls(caplog) if m.startswith("WAL sync")]
    covered = re.fullmatch(
        r"WAL sync of segment \d+ took [\d.]+ ms, ([\d.]+) KiB written in (\d+) groups", syncs[0]
    )
    assert covered is not None, syncs[0]
    framed = len(record) + RECORD_HEADER_SIZE
    assert float(covered[1]) == round(framed / 1024, 1) and covered[2] == "1"
