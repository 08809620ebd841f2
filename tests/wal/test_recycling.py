"""A recycled segment's old bytes are never replayed.

Trimmed segment files are reused for later segments: renamed, given a new
header, and overwritten from the start, so past the live tail lie records
of the file's previous life, each valid by its own CRC. Every record holds
its segment's sequence under that CRC, and a new life always has a higher
sequence, so recovery stops at (and never resynchronises on) an old record.

The runs here trim after every burst, so every roll reuses a trimmed file;
a crash is then taken at any point of the journal (as in
test_recovery_rule.py: a power loss keeps any subset of unsynced sectors,
which uncovers old records under lost new ones), and possibly in the middle
of a recycle (the file renamed to its temporary name, its new header
written or not; or the next segment prepared ahead under its own temporary
name). Recovery must replay exactly a prefix of what was
appended, in order, with every synced record in it.
"""

from __future__ import annotations

import os
import random
import shutil
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wal.log
import wal.segment
from tests.wal.test_recovery_rule import (
    EXAMPLES,
    SEGMENT,
    Journal,
    _image,
    _recovered,
    _synced_records,
    _write_image,
    journal,
)
from wal import Position, WriteAheadLog
from wal.format import SEGMENT_HEADER_SIZE, SEGMENT_MADE_AHEAD, encode_segment_header
from wal.segment import SegmentWriter
from wal.survey import survey_bytes, written_end

__all__ = ["journal"]  # the fixture, shared with test_recovery_rule.py


def _run_trimming_log(
    directory: Path, bursts: list[int], recycle: int, rng: random.Random
) -> tuple[list[bytes], list[Position]]:
    """Appends in bursts and trims everything before the active segment after
    each; returns the payloads and positions in log order."""
    payloads: list[bytes] = []
    positions: list[Position] = []
    with WriteAheadLog(directory, segment_bytes=SEGMENT, recycle_segments=recycle) as log:
        for burst in bursts:
            batch = [b"%06d" % len(payloads) + rng.randbytes(rng.randrange(300, 700))]
            batch += [b"%06d" % (len(payloads) + i) + rng.randbytes(300) for i in range(1, burst)]
            futures = [log.submit(p) for p in batch]
            payloads += batch
            positions += [future.result(timeout=30) for future in futures]
            log.trim(positions[-1])
    return payloads, positions


def _recycled_creates(journal: Journal) -> int:
    """Segments created from a file holding bytes of an earlier life."""
    return sum(
        1
        for kind, _, _, data in journal.events
        if kind == "create" and written_end(data[SEGMENT_HEADER_SIZE:]) > 0
    )


@pytest.fixture
def no_spares(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every roll then reuses a trimmed file (a zero-filled spare would be taken first)."""
    monkeypatch.setattr(WriteAheadLog, "_make_spare", lambda self: None)


@settings(
    max_examples=max(1, EXAMPLES // 2),  # each run rolls through many segments
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    bursts=st.lists(st.integers(8, 12), min_size=6, max_size=10),
    recycle=st.sampled_from([1, 2, 4]),
    crash=st.floats(0, 1),
    mode=st.sampled_from(["power", "kill"]),
    sector=st.sampled_from([512, 4096]),
    mid_recycle=st.sampled_from(["no", "renamed", "header written", "prepared ahead"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_old_records_of_a_recycled_segment_are_never_replayed(
    tmp_path_factory: pytest.TempPathFactory,
    journal: Journal,
    no_spares: None,
    bursts: list[int],
    recycle: int,
    crash: float,
    mode: str,
    sector: int,
    mid_recycle: str,
    seed: int,
) -> None:
    journal.events.clear()
    rng = random.Random(seed)
    work = tmp_path_factory.mktemp("run")
    try:
        payloads, positions = _run_trimming_log(work / "wal", bursts, recycle, rng)
        assert _recycled_creates(journal) > 0, "no segment reused a trimmed file"
        point = round(crash * len(journal.events))
        files = _image(journal, point, mode, sector, rng)
        _write_image(files, work / "crashed")
        if mid_recycle != "no" and files:
            # The next roll had begun: a file of an earlier life renamed to the
            # next segment's temporary name, its new header written or not.
            old = max(files.values(), key=lambda data: written_end(bytes(data)))
            following = max(int(Path(path).name[:20]) for path in files) + 1
            recycled = bytearray(old)
            if mid_recycle != "renamed":
                recycled[:SEGMENT_HEADER_SIZE] = encode_segment_header(following)
            suffix = ".prepared.tmp" if mid_recycle == "prepared ahead" else ".tmp"
            (work / "crashed" / f"{following:020d}.wal{suffix}").write_bytes(recycled)
        synced = _synced_records(journal, point, positions)
        recovered = _recovered(work / "crashed")
        assert recovered == payloads[: len(recovered)], "an old record came back, or order broke"
        assert len(recovered) >= synced, "a synced (possibly acknowledged) record was lost"
        assert not list((work / "crashed").glob("*.tmp")), "an unfinished recycle was left"
        assert _recovered(work / "crashed") == recovered  # a second open agrees
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_a_recycled_segment_holds_valid_old_records_past_its_tail_and_replays_none(
    tmp_path: Path, no_spares: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The situation the property above is about, shown once: old records,
    valid by their CRC, sit right after the new life's records. Each write
    is followed by zeros to the end of its page; a power loss that drops
    those sectors leaves the old records there, as writes without them do."""
    monkeypatch.setattr(wal.segment, "PAGE_BYTES", 1)
    rng = random.Random(7)
    payloads, positions = _run_trimming_log(tmp_path / "wal", [10] * 8, 2, rng)
    last = max(position.segment for position in positions)
    path = tmp_path / "wal" / f"{last:020d}.wal"
    data = path.read_bytes()
    survey = survey_bytes(data, str(path), last)
    assert survey.sealed
    assert written_end(data) > survey.tail, "nothing of an earlier life follows the seal"
    with WriteAheadLog(tmp_path / "wal", segment_bytes=SEGMENT) as log:
        first = log.segments[0]
        replayed = [bytes(entry.payload) for entry in log.replay()]
    kept = [p for p, position in zip(payloads, positions, strict=True) if position.segment >= first]
    assert replayed == kept


def test_a_roll_goes_into_the_segment_prepared_ahead_and_close_keeps_it_free(
    tmp_path: Path,
) -> None:
    """The file of the next segment is made ready in the background (header
    synced under a temporary name, then its final name); the roll only opens
    it. (The first is made at the first roll or trim, not at open:
    tests/wal/test_spare.py.)"""
    directory = tmp_path / "wal"
    log = WriteAheadLog(directory, segment_bytes=SEGMENT)
    try:
        assert log._prepared is None and log._spare_maker is None
        written = []
        while log.segments[-1] < 2:  # the first roll, which has the next segment prepared
            written.append(b"%04d" % len(written) + b"." * 500)
            log.append(written[-1])
        assert log._spare_maker is not None
        log._spare_maker.join(timeout=30)
        assert log._prepared is not None
        sequence, path, _ = log._prepared
        assert sequence == log.segments[-1] + 1
        assert path == str(directory / f"{sequence:020d}.wal")
        header = encode_segment_header(sequence, SEGMENT_MADE_AHEAD)
        assert Path(path).read_bytes()[:SEGMENT_HEADER_SIZE] == header
        inode = os.stat(path).st_ino
        while log.segments[-1] < sequence:
            written.append(b"%04d" % len(written) + b"." * 500)
            log.append(written[-1])
        assert os.stat(directory / f"{sequence:020d}.wal").st_ino == inode
        # A close stops a spare still being filled: let the one this roll
        # asked for finish, to see it kept.
        assert log._spare_maker is not None
        log._spare_maker.join(timeout=30)
        assert not log._spare_maker.is_alive(), "the spare was not made in time"
    finally:
        log.close()
    assert not list(directory.glob("*.tmp")), "a prepared file was left under a temporary name"
    assert list(directory.glob("free-*.wal")), "the next segment's file was not kept for reuse"
    with WriteAheadLog(directory, segment_bytes=SEGMENT) as reopened:
        assert [bytes(entry.payload) for entry in reopened.replay()] == written


def test_a_roll_into_the_segment_made_ahead_syncs_no_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The made-ahead segment's name was made durable by the spare maker:
    the writer's roll into it writes the seal and opens the file, and no
    acknowledgement waits for a directory sync."""
    rolling = threading.local()
    synced_while_rolling: list[str] = []
    roll, sync_directory = WriteAheadLog._roll, wal.segment.sync_directory

    def watched_roll(self: WriteAheadLog, segment: SegmentWriter) -> SegmentWriter:
        rolling.now = True
        try:
            return roll(self, segment)
        finally:
            rolling.now = False

    def watched_sync(directory: str) -> None:
        if getattr(rolling, "now", False):
            synced_while_rolling.append(directory)
        sync_directory(directory)

    monkeypatch.setattr(WriteAheadLog, "_roll", watched_roll)
    monkeypatch.setattr(wal.log, "sync_directory", watched_sync)
    monkeypatch.setattr(wal.segment, "sync_directory", watched_sync)
    with WriteAheadLog(tmp_path / "wal", segment_bytes=SEGMENT) as log:
        written = 0
        while log.segments[-1] < 2:  # the first roll makes its segment itself
            written += 1
            log.append(b"." * 500)
        assert log._spare_maker is not None
        log._spare_maker.join(timeout=30)
        assert log._prepared is not None and log._prepared.name_durable
        synced_while_rolling.clear()
        while log.segments[-1] < 3:
            written += 1
            log.append(b"." * 500)
        assert synced_while_rolling == []
        assert len(list(log.replay())) == written
