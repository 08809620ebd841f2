"""The recovery rule: a torn write is cut, damage to synced data is refused.

A journal records every write and sync the log makes while it runs. A crash
at any point of the journal is then replayed onto fresh files the way a real
crash leaves them: every write before a file's last sync is on disk; of the
later ones, a power loss keeps any subset of sectors, in any order, and a
kill -9 keeps everything but possibly the end of the write in progress.
Recovery must open every such image and keep every record that was synced
(which includes every acknowledged one). Flipping a byte of synced data
instead must be refused at the damaged record, unless data loss is accepted.

TIDELOG_WAL_EXAMPLES sets the examples per property (60 by default).
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wal.log
from tests.wal.conftest import crash_image, segment_files
from wal import Append, CorruptSegment, Position, WriteAheadLog
from wal.segment import SegmentWriter
from wal.survey import written_end

SEGMENT = 4096
EXAMPLES = int(os.environ.get("TIDELOG_WAL_EXAMPLES", "60"))


@dataclass
class Journal:
    """Every create, write and sync of segment files, in order."""

    events: list[tuple[str, str, int, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, path: str, offset: int = 0, data: bytes = b"") -> int:
        with self.lock:
            self.events.append((kind, path, offset, data))
            return len(self.events)

    def __len__(self) -> int:
        with self.lock:
            return len(self.events)


@pytest.fixture
def journal(monkeypatch: pytest.MonkeyPatch) -> Iterator[Journal]:
    recorded = Journal()
    create, write, sync = SegmentWriter.create, SegmentWriter.write, SegmentWriter.sync
    name_prepared = wal.log.name_prepared_segment

    def recording_create(*args: Any, **kwargs: Any) -> SegmentWriter:
        segment = create(*args, **kwargs)
        # Created whole (header synced, then renamed): the file as it stands.
        recorded.add("create", segment.path, 0, Path(segment.path).read_bytes())
        return segment

    def recording_name_prepared(temporary: str) -> str:
        # A segment made ahead appears under its final name (header synced)
        # while the writer still fills the one before: a crash from here on
        # finds it, holding no record, beside an unsealed predecessor.
        final = name_prepared(temporary)
        recorded.add("create", final, 0, Path(final).read_bytes())
        return final

    # A write is journaled once it has returned, and a sync with the number of
    # events journaled when it began: under the pipelined fsync policy the
    # writer writes while the sync thread syncs, and a sync covers only the
    # writes that had returned before it began.
    def recording_write(self: SegmentWriter, buffers: list[bytes | memoryview]) -> None:
        offset = self.write_offset
        write(self, buffers)
        recorded.add("write", self.path, offset, b"".join(bytes(b) for b in buffers))

    def recording_sync(self: SegmentWriter) -> None:
        began = len(recorded)
        sync(self)
        recorded.add("sync", self.path, began)

    monkeypatch.setattr(SegmentWriter, "create", staticmethod(recording_create))
    monkeypatch.setattr(wal.log, "name_prepared_segment", recording_name_prepared)
    monkeypatch.setattr(SegmentWriter, "write", recording_write)
    monkeypatch.setattr(SegmentWriter, "sync", recording_sync)
    yield recorded


def _payload(index: int, rng: random.Random) -> bytes:
    return b"%06d" % index + rng.randbytes(rng.randrange(0, 700))


def _run_log(
    directory: Path,
    bursts: list[int],
    rng: random.Random,
    crashed: Path | None = None,
    durability: str = "fsync",
    spare_first: bool = False,
    batched: bool = False,
) -> tuple[list[bytes], list[Position]]:
    """Appends in bursts (a burst queues together, so groups of many records
    form) and returns the payloads and their positions, in log order. With
    ``crashed``, a copy of the directory taken before the close is left
    there: what a kill -9 after the last acknowledgement leaves. With
    ``spare_first``, each burst waits for the spare maker first, so the
    next segment is made ahead before most rolls. With ``batched``, each
    burst is one batch append (framed whole, stamped by the writer)."""
    payloads: list[bytes] = []
    positions: list[Position] = []
    with WriteAheadLog(
        directory, segment_bytes=SEGMENT, durability=durability, sync_interval_ms=1
    ) as log:
        for burst in bursts:
            if spare_first and log._spare_maker is not None:
                log._spare_maker.join(timeout=30)
            batch = [_payload(len(payloads) + i, rng) for i in range(burst)]
            payloads += batch
            if batched:
                positions += log.submit_many(Append(p) for p in batch).result(timeout=30)
            else:
                futures = [log.submit(p) for p in batch]
                positions += [future.result(timeout=30) for future in futures]
        if crashed is not None:
            crash_image(directory, crashed)
    order = sorted(range(len(payloads)), key=lambda i: positions[i])
    return [payloads[i] for i in order], [positions[i] for i in order]


def _image(
    journal: Journal, point: int, mode: str, sector: int, rng: random.Random
) -> dict[str, bytearray]:
    """The segment files as a crash after ``point`` journal events leaves them."""
    events = journal.events[:point]
    files: dict[str, bytearray] = {}
    # A sync covers the writes journaled before it began (its offset field).
    covered = {path: began for kind, path, began, _ in events if kind == "sync"}
    unsynced = [
        (i, path, offset, data)
        for i, (kind, path, offset, data) in enumerate(events)
        if kind == "write" and i >= covered.get(path, 0)
    ]
    for i, (kind, path, offset, data) in enumerate(events):
        if kind == "create":
            files[path] = bytearray(data)
        elif kind == "write" and i < covered.get(path, 0):
            files[path][offset : offset + len(data)] = data
    for number, (_, path, offset, data) in enumerate(unsynced):
        if mode == "kill":  # the page cache survives; only the last write may be cut short
            keep = len(data) if number < len(unsynced) - 1 else rng.randrange(len(data) + 1)
            files[path][offset : offset + keep] = data[:keep]
            continue
        start = offset
        while start < offset + len(data):  # power loss: any subset of sectors reaches the disk
            end = min((start // sector + 1) * sector, offset + len(data))
            if rng.random() < 0.5:
                files[path][start:end] = data[start - offset : end - offset]
            start = end
    return files


def _write_image(files: dict[str, bytearray], directory: Path) -> None:
    directory.mkdir()
    for path, data in files.items():
        (directory / os.path.basename(path)).write_bytes(data)


def _synced_records(journal: Journal, point: int, positions: list[Position]) -> int:
    """How many records (a prefix, in log order) a sync covered before ``point``."""
    events = journal.events[:point]
    synced_to: dict[str, int] = {}
    for kind, path, began, _ in events:
        if kind == "sync":  # everything written before the sync began
            ends = [o + len(d) for k, p, o, d in events[:began] if k == "write" and p == path]
            synced_to[path] = max(ends, default=0)
    count = 0
    for position in positions:
        name = f"{position.segment:020d}.wal"
        done = {os.path.basename(p): end for p, end in synced_to.items()}
        if position.offset < done.get(name, 0):
            count += 1
        else:
            break
    return count


def _recovered(directory: Path, **options: Any) -> list[bytes]:
    with WriteAheadLog(directory, segment_bytes=SEGMENT, **options) as log:
        return [bytes(entry.payload) for entry in log.replay()]


def _made_ahead(journal: Journal) -> int:
    """Segments named before the writer reached them."""
    created = [path for kind, path, _, _ in journal.events if kind == "create"]
    return sum(1 for index, path in enumerate(created) if path in created[index + 1 :])


@pytest.mark.parametrize("spare_first", [False, True], ids=["as it comes", "made ahead"])
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    bursts=st.lists(st.integers(1, 6), min_size=1, max_size=12),
    crash=st.floats(0, 1),
    mode=st.sampled_from(["power", "kill"]),
    sector=st.sampled_from([512, 4096]),
    durability=st.sampled_from(["fsync", "interval", "none"]),
    seed=st.integers(0, 2**32 - 1),
    batched=st.booleans(),
)
def test_every_crash_image_opens_with_every_synced_record(
    tmp_path_factory: pytest.TempPathFactory,
    journal: Journal,
    spare_first: bool,
    bursts: list[int],
    crash: float,
    mode: str,
    sector: int,
    durability: str,
    seed: int,
    batched: bool,
) -> None:
    """``made ahead``: the spare maker runs before each burst, so a crash
    falls anywhere around rolls into segments made ahead: the segment named
    beside an unsealed predecessor, between the seal and the first write
    into it, and after records went into it. ``batched``: each burst is
    one batch append, so batches span rolls too."""
    journal.events.clear()
    rng = random.Random(seed)
    work = tmp_path_factory.mktemp("run")
    if spare_first:
        bursts = bursts + [6] * 12  # enough records for several rolls
    try:
        payloads, positions = _run_log(
            work / "wal",
            bursts,
            rng,
            durability=durability,
            spare_first=spare_first,
            batched=batched,
        )
        if spare_first:
            assert _made_ahead(journal) > 0, "no roll went into a segment made ahead"
        point = round(crash * len(journal.events))
        files = _image(journal, point, mode, sector, rng)
        _write_image(files, work / "crashed")
        synced = _synced_records(journal, point, positions)
        recovered = _recovered(work / "crashed")
        assert recovered == payloads[: len(recovered)], "records out of order or invented"
        assert len(recovered) >= synced, "a synced (possibly acknowledged) record was lost"
        assert _recovered(work / "crashed") == recovered  # a second open agrees
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _flags_at(data: bytes, offset: int) -> int:
    return data[offset + 17]


def _length_at(data: bytes, offset: int) -> int:
    return int(struct.unpack_from("<I", data, offset + 4)[0])


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    bursts=st.lists(st.integers(1, 6), min_size=1, max_size=12),
    close=st.booleans(),
    victim=st.floats(0, 1),
    where=st.floats(0, 1),
    xor=st.integers(1, 255),
    seed=st.integers(0, 2**32 - 1),
)
def test_damage_to_synced_data_is_refused_where_it_is_unless_loss_is_accepted(
    tmp_path_factory: pytest.TempPathFactory,
    bursts: list[int],
    close: bool,
    victim: float,
    where: float,
    xor: int,
    seed: int,
) -> None:
    rng = random.Random(seed)
    work = tmp_path_factory.mktemp("run")
    try:
        directory = work / "wal" if close else work / "crashed"
        payloads, positions = _run_log(work / "wal", bursts, rng, None if close else directory)
        index = min(int(victim * len(payloads)), len(payloads) - 1)
        hit = positions[index]
        # Not a segment made ahead that the writer never reached (it holds nothing).
        reached = max(position.segment for position in positions)
        files = [f for f in segment_files(directory) if int(f.name[:20]) <= reached]
        path = next(f for f in files if f.name == f"{hit.segment:020d}.wal")
        raw = bytearray(path.read_bytes())
        size = 44 + _length_at(bytes(raw), hit.offset)
        raw[hit.offset + min(int(where * size), size - 1)] ^= xor
        path.write_bytes(raw)
        same_file = [i for i, p in enumerate(positions) if p.segment == hit.segment]
        after = [i for i in same_file if i > index]
        # Proof that the victim was synced: its segment is not the last, or a
        # SYNCED record (a later group's first, or the close's seal) follows
        # it, or a PRIOR_SYNCED one does with another group's first between.
        seal_follows = close or path != files[-1]
        flags = [_flags_at(bytes(raw), positions[i].offset) for i in after]
        flagged_follows = any(f & 1 for f in flags) or any(
            f & 2 and any(earlier & 3 for earlier in flags[:n]) for n, f in enumerate(flags)
        )
        if seal_follows or flagged_follows:
            with pytest.raises(CorruptSegment) as raised:
                _recovered(directory)
            assert raised.value.path == str(path)
            assert raised.value.offset == hit.offset
            assert raised.value.records_beyond == len(after)
            assert raised.value.later_segments == len(files) - files.index(path) - 1
            assert path.read_bytes() == raw, "a refused open changed the file"
            salvaged = _recovered(directory, accept_data_loss=True)
            assert salvaged == payloads[:index] + payloads[index + 1 :]
            assert _recovered(directory) == salvaged  # opens normally afterwards
        else:  # the last group of a crashed log: indistinguishable from a torn write
            assert _recovered(directory) == payloads[:index]
    finally:
        shutil.rmtree(work, ignore_errors=True)


@given(
    size=st.integers(0, 3 * (1 << 20)),
    marks=st.lists(st.floats(0, 1), max_size=3),
)
def test_written_end_is_just_past_the_last_byte_that_is_not_zero(
    size: int, marks: list[float]
) -> None:
    data = bytearray(size)
    for mark in marks:
        if size:
            data[min(int(mark * size), size - 1)] = 7
    assert written_end(bytes(data)) == len(bytes(data).rstrip(b"\0"))
