"""Damage in each place a WAL can be hit: recovered with nothing acknowledged
lost, or refused with the place named, changing nothing; and with data loss
accepted, salvaged with the loss logged, into a log that opens normally."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.wal.conftest import crash_image
from wal import CorruptSegment, Position, WriteAheadLog
from wal.format import RECORD_HEADER_SIZE

SEGMENT = 4096


@dataclass
class Written:
    directory: Path
    payloads: list[bytes]
    positions: list[Position]

    def file(self, sequence: int) -> Path:
        return self.directory / f"{sequence:020d}.wal"

    def in_segment(self, sequence: int) -> list[int]:
        return [i for i, p in enumerate(self.positions) if p.segment == sequence]


def _write(tmp_path: Path, count: int, size: int, *, crashed: bool, segment: int) -> Written:
    payloads = [b"%04d" % i + bytes([i % 256]) * size for i in range(count)]
    with WriteAheadLog(tmp_path / "wal", segment_bytes=segment) as log:
        positions = [log.append(p) for p in payloads]
        if crashed:  # what a kill -9 after the last acknowledgement leaves
            crash_image(tmp_path / "wal", tmp_path / "crashed")
            return Written(tmp_path / "crashed", payloads, positions)
    return Written(tmp_path / "wal", payloads, positions)


def _flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x5A
    path.write_bytes(raw)


def _open(directory: Path, **options: object) -> list[bytes]:
    with WriteAheadLog(directory, segment_bytes=SEGMENT, **options) as log:  # type: ignore[arg-type]
        return [bytes(entry.payload) for entry in log.replay()]


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.name != "LOCK"}


def test_a_torn_tail_is_cut_and_every_acknowledged_record_kept(tmp_path: Path) -> None:
    payloads = [b"%04d" % i + b"." * 300 for i in range(8)]
    with WriteAheadLog(tmp_path / "wal", segment_bytes=SEGMENT) as log:
        for payload in payloads:
            log.append(payload)
        crashed = crash_image(tmp_path / "wal", tmp_path / "crashed")
        unacked = log.append(b"never acknowledged" * 20)  # its write is torn in the crash
        tail = crashed / f"{unacked.segment:020d}.wal"
        whole = (tmp_path / "wal" / tail.name).read_bytes()
    raw = bytearray(tail.read_bytes())
    half = unacked.offset + RECORD_HEADER_SIZE + 100
    raw[unacked.offset : half] = whole[unacked.offset : half]
    tail.write_bytes(raw)
    with WriteAheadLog(crashed, segment_bytes=SEGMENT) as log:
        assert [bytes(e.payload) for e in log.replay()] == payloads
        assert log.recovery.torn
        assert log.recovery.tail_path == str(tail)


def test_flipped_bytes_mid_last_segment_refuse_the_open_naming_what_lies_beyond(
    tmp_path: Path,
) -> None:
    # 100 acknowledged records in one segment; damage at the 60th used to cut the last 40.
    written = _write(tmp_path, 100, 200, crashed=False, segment=1 << 20)
    victim = written.positions[59]
    path = written.file(victim.segment)
    _flip(path, victim.offset + RECORD_HEADER_SIZE + 100)
    before = _files(written.directory)
    with pytest.raises(CorruptSegment) as raised:
        WriteAheadLog(written.directory, segment_bytes=1 << 20)
    error = raised.value
    assert (error.path, error.offset, error.records_beyond) == (str(path), victim.offset, 40)
    record_size = RECORD_HEADER_SIZE + 204
    assert error.bytes_beyond == 41 * record_size + RECORD_HEADER_SIZE  # to the seal's end
    assert str(path) in str(error) and f"at byte {victim.offset}" in str(error)
    assert _files(written.directory) == before, "a refused open changed the log"


@dataclass(frozen=True)
class Case:
    name: str
    crashed: bool
    damage: Callable[[Written], tuple[Path, int, list[int]]]
    """Damages the log; returns the file and offset the error must name, and
    the indexes of the records a salvage loses."""
    reason: str


def _mid_last_segment(written: Written) -> tuple[Path, int, list[int]]:
    last = written.positions[-1].segment
    index = written.in_segment(last)[0]
    position = written.positions[index]
    _flip(written.file(last), position.offset + RECORD_HEADER_SIZE + 3)
    return written.file(last), position.offset, [index]


def _middle_segment(written: Written) -> tuple[Path, int, list[int]]:
    index = written.in_segment(2)[1]
    position = written.positions[index]
    _flip(written.file(2), position.offset + 22)  # the stream id, which the CRC covers
    return written.file(2), position.offset, [index]


def _segment_header(written: Written) -> tuple[Path, int, list[int]]:
    _flip(written.file(2), 20)  # the sequence
    return written.file(2), 0, []


def _seal(written: Written) -> tuple[Path, int, list[int]]:
    last_record = written.positions[written.in_segment(2)[-1]]
    size = RECORD_HEADER_SIZE + len(written.payloads[written.in_segment(2)[-1]])
    _flip(written.file(2), last_record.offset + size + 1)
    return written.file(2), last_record.offset + size, []


def _missing_segment(written: Written) -> tuple[Path, int, list[int]]:
    written.file(2).unlink()
    return written.file(2), 0, written.in_segment(2)


CASES = [
    Case("mid last segment, crashed", True, _mid_last_segment, "CRC32C"),
    Case("mid last segment, closed", False, _mid_last_segment, "CRC32C"),
    Case("a middle segment", False, _middle_segment, "CRC32C"),
    Case("a segment header", False, _segment_header, "header"),
    Case("a seal", True, _seal, "seal"),
    Case("a missing segment", False, _missing_segment, "missing"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_damage_is_refused_unchanged_then_salvaged_with_the_loss_logged(
    tmp_path: Path, case: Case, caplog: pytest.LogCaptureFixture
) -> None:
    written = _write(tmp_path, 50, 300, crashed=case.crashed, segment=SEGMENT)
    assert written.positions[-1].segment >= 4
    path, offset, lost = case.damage(written)
    before = _files(written.directory)
    with pytest.raises(CorruptSegment) as raised:
        _open(written.directory)
    assert (raised.value.path, raised.value.offset) == (str(path), offset)
    assert case.reason in raised.value.reason
    assert _files(written.directory) == before, "a refused open changed the log"

    with caplog.at_level(logging.WARNING, logger="tidelog.wal"):
        salvaged = _open(written.directory, accept_data_loss=True)
    expected = [p for i, p in enumerate(written.payloads) if i not in lost]
    assert salvaged == expected
    dropped = [r.getMessage() for r in caplog.records if "damage dropped" in r.getMessage()]
    assert len(dropped) == 1 and str(path) in dropped[0] and f"bytes {offset}.." in dropped[0]
    assert _open(written.directory) == expected  # the salvaged log opens normally


def test_a_lost_sector_of_a_torn_write_is_cut_with_its_fragments_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Under durability "none" nothing after the first record is proven
    synced: a sector lost from the middle reads as zeros, and the valid
    records past it are fragments of the same unsynced writes."""
    payloads = [b"%04d" % i + b"." * 300 for i in range(6)]
    with WriteAheadLog(tmp_path / "wal", segment_bytes=SEGMENT, durability="none") as log:
        positions = [log.append(p) for p in payloads]
        crashed = crash_image(tmp_path / "wal", tmp_path / "crashed")
    tail = crashed / f"{positions[2].segment:020d}.wal"
    raw = bytearray(tail.read_bytes())
    raw[positions[2].offset : positions[3].offset] = bytes(
        positions[3].offset - positions[2].offset
    )
    tail.write_bytes(raw)
    with (
        caplog.at_level(logging.WARNING, logger="tidelog.wal"),
        WriteAheadLog(crashed, segment_bytes=SEGMENT) as log,
    ):
        assert [bytes(e.payload) for e in log.replay()] == payloads[:2]
        assert log.recovery.torn and log.recovery.torn_records == 3
    assert any("torn write was cut" in r.getMessage() for r in caplog.records)
