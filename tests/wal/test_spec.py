"""docs/wal-format.md is enough to write a reader and a writer.

Segments are built here from the document's tables alone (with a CRC32C
written from its definition, not the project's), and the log must read
them; the log's own files must parse by the document's rules.
"""

from __future__ import annotations

import struct
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from native import _pure
from tests import docspec
from tests.native.conftest import C_IMPL
from wal import DATA, Append, CorruptSegment, Position, WriteAheadLog

SYNCED = 0x01
PRIOR_SYNCED = 0x02
SEAL = 255
MADE_AHEAD = 0x01


def crc32c(data: bytes, running: int = 0) -> int:
    """CRC32C (Castagnoli, reflected 0x82F63B78), in the doc's continuation form."""
    crc = running ^ 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def segment_header(sequence: int, flags: int = 0) -> bytes:
    body = b"TLWALSEG" + struct.pack("<IIQI", 1, flags, sequence, 0)  # bytes 0..28
    return body + struct.pack("<I", crc32c(body))


def record(
    sequence: int,
    payload: bytes,
    *,
    record_type: int = DATA,
    flags: int = 0,
    stream_id: int = 0,
    start: int = 0,
    end: int = 0,
) -> bytes:
    covered = struct.pack(
        "<IQBB2xQqq", len(payload), sequence, record_type, flags, stream_id, start, end
    )
    return struct.pack("<I", crc32c(covered, crc32c(payload))) + covered + payload


def seal(sequence: int) -> bytes:
    return record(sequence, b"", record_type=SEAL, flags=SYNCED)


def test_the_documented_crc32c_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283


HEADER_TABLE = docspec.table("wal-format.md", "offset", "size", "field", "value")
RECORD_TABLE = docspec.table("wal-format.md", "offset", "size", "field", "meaning")


def by_table(rows: list[dict[str, str]], values: dict[str, Any]) -> bytes:
    """Fixed-size fields laid out at the table's offsets: integers little
    endian, signed where the table says so; byte strings as they are."""
    out = bytearray()
    for row in rows:
        offset, size, name = int(row["offset"]), row["size"], row["field"]
        if not size.isdigit():  # the payload, after the fixed fields
            continue
        assert offset == len(out), f"{name} at {offset}, after {len(out)} bytes"
        value = values[name]
        if isinstance(value, bytes):
            assert len(value) == int(size)
            out += value
        else:
            signed = "(signed)" in row.get("meaning", "")
            out += value.to_bytes(int(size), "little", signed=signed)
    return bytes(out)


@given(st.integers(0, 2**64 - 1), st.sampled_from([0, MADE_AHEAD]))
def test_the_header_builder_is_the_documents_table(sequence: int, flags: int) -> None:
    assert HEADER_TABLE[0]["value"].strip("`") == "TLWALSEG"
    assert "`MADE_AHEAD`" in HEADER_TABLE[2]["value"]
    values = {"magic": b"TLWALSEG", "version": 1, "flags": flags, "sequence": sequence}
    values["padding"] = 0
    values["crc"] = 0
    covered = by_table(HEADER_TABLE, values)[:-4]
    values["crc"] = crc32c(covered)
    assert by_table(HEADER_TABLE, values) == segment_header(sequence, flags)


@given(
    st.binary(max_size=64),
    st.integers(0, 2**64 - 1),
    st.integers(1, 254),
    st.integers(0, 1),
    st.integers(0, 2**64 - 1),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-(2**63), 2**63 - 1),
)
def test_the_record_builder_is_the_documents_table(
    payload: bytes, sequence: int, kind: int, flags: int, stream: int, start: int, end: int
) -> None:
    values: dict[str, Any] = {
        "crc": 0, "length": len(payload), "segment": sequence, "type": kind, "flags": flags,
        "reserved": 0, "stream id": stream, "start offset": start, "end offset": end,
    }  # fmt: skip
    header = by_table(RECORD_TABLE, values)
    values["crc"] = crc32c(header[4:], crc32c(payload))
    built = record(
        sequence, payload, record_type=kind, flags=flags, stream_id=stream, start=start, end=end
    )
    assert by_table(RECORD_TABLE, values) + payload == built


def test_the_log_reads_segments_built_from_the_document(tmp_path: Path) -> None:
    directory = tmp_path / "wal"
    directory.mkdir()
    first = (
        segment_header(1)
        + record(1, b"alpha", flags=SYNCED, stream_id=7, start=0, end=3)
        + record(1, b"beta", record_type=9, stream_id=7, start=3, end=4)
        + seal(1)
    )
    (directory / "00000000000000000001.wal").write_bytes(first)
    second = segment_header(2) + record(2, b"gamma", flags=SYNCED, stream_id=8, start=-1, end=5)
    (directory / "00000000000000000002.wal").write_bytes(second + bytes(300))
    with WriteAheadLog(directory, segment_bytes=4096) as log:
        entries = [
            (bytes(e.payload), e.type, e.stream_id, e.start_offset, e.end_offset, e.position)
            for e in log.replay()
        ]
    assert [entry[:5] for entry in entries] == [
        (b"alpha", DATA, 7, 0, 3),
        (b"beta", 9, 7, 3, 4),
        (b"gamma", DATA, 8, -1, 5),
    ]
    assert [(p.segment, p.offset) for *_, p in entries] == [(1, 32), (1, 32 + 44 + 5), (2, 32)]


@pytest.mark.parametrize("flags", [0, SYNCED])
def test_a_bad_record_is_damage_exactly_when_a_synced_record_follows(
    tmp_path: Path, flags: int
) -> None:
    directory = tmp_path / "wal"
    directory.mkdir()
    bad = bytearray(record(1, b"will be damaged"))
    bad[-1] ^= 0x01
    data = (
        segment_header(1)
        + record(1, b"kept", flags=SYNCED)
        + bytes(bad)
        + record(1, b"later", flags=flags)
    )
    (directory / "00000000000000000001.wal").write_bytes(data)
    if flags & SYNCED:  # written after a sync covering the bad record: damage
        with pytest.raises(CorruptSegment) as raised:
            WriteAheadLog(directory, segment_bytes=4096)
        assert raised.value.offset == 32 + 44 + 4
        assert raised.value.records_beyond == 1
    else:  # possibly the same torn write: cut
        with WriteAheadLog(directory, segment_bytes=4096) as log:
            assert [bytes(e.payload) for e in log.replay()] == [b"kept"]
            assert log.recovery.torn_records == 1


@pytest.mark.parametrize("later_group", [False, True])
def test_a_prior_synced_record_proves_the_bytes_before_its_previous_group(
    tmp_path: Path, later_group: bool
) -> None:
    """Groups A (a1 a2), B (b1 b2) and, if ``later_group``, C (c1): b1 and c1
    were written while the previous group's sync ran (PRIOR_SYNCED). a2 is
    damaged. C proves every byte before B synced, so a2 is damage; with B
    alone a2 may be part of the pipelined writes a crash tore: cut."""
    directory = tmp_path / "wal"
    directory.mkdir()
    bad = bytearray(record(1, b"a2"))
    bad[-1] ^= 0x01
    data = (
        segment_header(1)
        + record(1, b"a1", flags=SYNCED)
        + bytes(bad)
        + record(1, b"b1", flags=PRIOR_SYNCED)
        + record(1, b"b2")
    )
    if later_group:
        data += record(1, b"c1", flags=PRIOR_SYNCED)
    (directory / "00000000000000000001.wal").write_bytes(data)
    if later_group:
        with pytest.raises(CorruptSegment) as raised:
            WriteAheadLog(directory, segment_bytes=4096)
        assert raised.value.offset == 32 + 44 + 2
        assert raised.value.records_beyond == 3
    else:
        with WriteAheadLog(directory, segment_bytes=4096) as log:
            assert [bytes(e.payload) for e in log.replay()] == [b"a1"]
            assert log.recovery.torn_records == 2


def test_damage_inside_the_previous_group_of_a_prior_synced_record_is_a_torn_write(
    tmp_path: Path,
) -> None:
    """b2 lies after B's first record: C vouches only for bytes before B."""
    directory = tmp_path / "wal"
    directory.mkdir()
    bad = bytearray(record(1, b"b2"))
    bad[-1] ^= 0x01
    data = (
        segment_header(1)
        + record(1, b"a1", flags=SYNCED)
        + record(1, b"b1", flags=PRIOR_SYNCED)
        + bytes(bad)
        + record(1, b"c1", flags=PRIOR_SYNCED)
    )
    (directory / "00000000000000000001.wal").write_bytes(data)
    with WriteAheadLog(directory, segment_bytes=4096) as log:
        assert [bytes(e.payload) for e in log.replay()] == [b"a1", b"b1"]


def _parse(path: Path) -> tuple[int, list[tuple[int, int, bytes]]]:
    """A segment by the document's reading rules: its sequence, and each valid
    record as (type, flags, payload), the seal included."""
    data = path.read_bytes()
    magic, version, flags, sequence, padding, crc = struct.unpack_from("<8sIIQII", data)
    assert (magic, version, padding) == (b"TLWALSEG", 1, 0)
    assert flags in (0, MADE_AHEAD)
    assert crc == crc32c(data[:28])
    assert path.name == f"{sequence:020d}.wal"
    records = []
    pos = 32
    while len(data) - pos >= 44:
        crc, length, segment, kind, flags, stream, start, end = struct.unpack_from(
            "<IIQBB2xQqq", data, pos
        )
        if segment != sequence or kind == 0 or length > len(data) - pos - 44:
            break
        payload = data[pos + 44 : pos + 44 + length]
        if crc != crc32c(data[pos + 4 : pos + 44], crc32c(payload)):
            break
        records.append((kind, flags, payload))
        pos += 44 + length
        if kind == SEAL:  # an empty payload and zero stream fields
            assert (length, stream, start, end) == (0, 0, 0, 0)
            break
    return sequence, records


def test_the_logs_own_files_parse_by_the_document(tmp_path: Path) -> None:
    directory = tmp_path / "wal"
    payloads = [bytes([i]) * (100 + 37 * i) for i in range(20)]
    with WriteAheadLog(directory, segment_bytes=2048) as log:
        for payload in payloads:
            log.append(payload, stream_id=3)
    files = sorted(p for p in directory.iterdir() if p.name[0].isdigit())
    assert len(files) > 2
    parsed = [_parse(path) for path in files]
    assert [sequence for sequence, _ in parsed] == list(range(1, len(files) + 1))
    read = [payload for _, records in parsed for kind, _, payload in records if kind != SEAL]
    assert read == payloads
    for index, (_, records) in enumerate(parsed, 1):  # every segment, the last after a close
        last = index == len(parsed)
        # A roll writes its seal unflagged before its one sync; a close syncs first.
        assert records[-1][:2] == (SEAL, SYNCED if last else 0)
        # each append was its own group: each record follows a sync
        assert all(flags == SYNCED for _, flags, _ in records[:-1])


def _unsealed_then_made_ahead(directory: Path, header_flags: int, following: bytes) -> None:
    """Segment 1 sealed, segment 2 with acknowledged records and no seal (a
    crash in the middle of a roll), and segment 3 under its final name
    holding ``following`` after its header."""
    directory.mkdir()
    (directory / "00000000000000000001.wal").write_bytes(
        segment_header(1) + record(1, b"alpha", flags=SYNCED) + seal(1)
    )
    (directory / "00000000000000000002.wal").write_bytes(
        segment_header(2) + record(2, b"beta", flags=SYNCED) + record(2, b"gamma", flags=SYNCED)
    )
    (directory / "00000000000000000003.wal").write_bytes(
        segment_header(3, header_flags) + following + bytes(512)
    )


def test_a_made_ahead_segment_without_records_makes_its_unsealed_predecessor_the_last(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "wal"
    # Records of an earlier life of the file (a lower sequence) may follow its header.
    _unsealed_then_made_ahead(directory, MADE_AHEAD, record(1, b"stale", flags=SYNCED))
    with WriteAheadLog(directory, segment_bytes=4096) as log:
        assert [bytes(e.payload) for e in log.replay()] == [b"alpha", b"beta", b"gamma"]
        assert log.segments == [1, 2, 3]  # 3 is the open's own new segment
        log.append(b"delta")
    with WriteAheadLog(directory, segment_bytes=4096) as log:
        assert [bytes(e.payload) for e in log.replay()] == [b"alpha", b"beta", b"gamma", b"delta"]


@pytest.mark.parametrize(
    ("header_flags", "following"),
    [(0, b""), (MADE_AHEAD, record(3, b"delta", flags=SYNCED))],
    ids=["not made ahead", "made ahead with a record"],
)
def test_a_missing_seal_before_any_other_last_segment_is_damage(
    tmp_path: Path, header_flags: int, following: bytes
) -> None:
    directory = tmp_path / "wal"
    _unsealed_then_made_ahead(directory, header_flags, following)
    before = _files(directory)
    with pytest.raises(CorruptSegment) as refused:
        WriteAheadLog(directory, segment_bytes=4096)
    assert refused.value.path.endswith("00000000000000000002.wal")
    assert _files(directory) == before


def _files(directory: Path) -> list[tuple[str, bytes]]:
    """The log's files and their bytes (the lock file aside)."""
    return sorted((p.name, p.read_bytes()) for p in directory.iterdir() if p.name != "LOCK")


def test_a_rolls_seal_kept_past_lost_bytes_before_an_empty_made_ahead_segment_is_a_torn_tail(
    tmp_path: Path,
) -> None:
    """A roll writes its seal, unflagged, right after the segment's last
    records and syncs once: a crash before that sync may keep the seal and
    lose a record before it. Nothing past the lost bytes was acknowledged."""
    directory = tmp_path / "wal"
    directory.mkdir()
    (directory / "00000000000000000001.wal").write_bytes(
        segment_header(1) + record(1, b"alpha", flags=SYNCED) + seal(1)
    )
    lost = bytearray(record(2, b"gamma"))
    lost[-1] ^= 0xFF
    (directory / "00000000000000000002.wal").write_bytes(
        segment_header(2)
        + record(2, b"beta", flags=SYNCED)
        + bytes(lost)
        + record(2, b"", record_type=SEAL)
    )
    (directory / "00000000000000000003.wal").write_bytes(segment_header(3, MADE_AHEAD) + bytes(512))
    with WriteAheadLog(directory, segment_bytes=4096) as log:
        assert [bytes(e.payload) for e in log.replay()] == [b"alpha", b"beta"]
        assert log.recovery.torn
        log.append(b"delta")
    with WriteAheadLog(directory, segment_bytes=4096) as log:
        assert [bytes(e.payload) for e in log.replay()] == [b"alpha", b"beta", b"delta"]


WAL_FRAMERS = [_pure] + ([C_IMPL] if C_IMPL else [])
batch_records = st.lists(
    st.tuples(
        st.binary(max_size=40),
        st.binary(max_size=8),
        st.integers(1, 254),
        st.integers(0, 2**64 - 1),
        st.integers(-(2**63), 2**63 - 1),
        st.integers(-(2**63), 2**63 - 1),
    ),
    min_size=1,
    max_size=8,
)


@pytest.mark.parametrize("impl", WAL_FRAMERS, ids=lambda m: m.__name__)
@given(batch_records, st.integers(1, 2**64 - 1), st.sampled_from([0, SYNCED, PRIOR_SYNCED]))
def test_a_framed_and_stamped_batch_is_the_documents_records(
    impl: ModuleType,
    records: list[tuple[bytes, bytes, int, int, int, int]],
    sequence: int,
    flags: int,
) -> None:
    """A batch append's records (native frame_wal_records, then
    stamp_wal_records once the segment is known) are the document's records,
    back to back, the first carrying the group's flag."""
    appends = [
        Append(payload, stream, start, end, kind, None, prefix)
        for payload, prefix, kind, stream, start, end in records
    ]
    frame = impl.frame_wal_records(appends, 1 << 20)
    end, positions = impl.stamp_wal_records(frame, 0, len(frame), sequence, 64, flags, Position)
    expected = b"".join(
        record(
            sequence,
            prefix + payload,
            record_type=kind,
            flags=flags if index == 0 else 0,
            stream_id=stream,
            start=start,
            end=end_offset,
        )
        for index, (payload, prefix, kind, stream, start, end_offset) in enumerate(records)
    )
    assert bytes(frame) == expected
    assert end == len(frame)
    starts = [0]
    for payload, prefix, *_ in records[:-1]:
        starts.append(starts[-1] + 44 + len(prefix) + len(payload))
    assert positions == [Position(sequence, 64 + start) for start in starts]
