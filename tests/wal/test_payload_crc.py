"""An append (one, or a record of a batch) whose payload CRC the caller
gives: the record's checksum is combined from it (with the prefix's), the
payload is not read for it, and the record is what a read of every byte
would have made: replay after a reopen and after a crash checks it against
the bytes on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wal.log
from native import crc32c, crc32c_combine
from native.buffers import BytesLike
from tests.wal.conftest import SMALL_SEGMENT, crash_image
from wal import Append, WriteAheadLog
from wal.format import RECORD_HEADER_SIZE, decode_record_header, segment_name

appends = st.lists(st.tuples(st.binary(max_size=40), st.binary(max_size=1500)), max_size=6)


@settings(max_examples=50, deadline=None)
@given(appends)
def test_records_with_a_given_crc_replay_after_a_reopen_and_a_crash(
    tmp_path_factory: pytest.TempPathFactory, parts: list[tuple[bytes, bytes]]
) -> None:
    directory = tmp_path_factory.mktemp("given-crc")
    log = WriteAheadLog(str(directory), segment_bytes=SMALL_SEGMENT)
    try:
        for prefix, payload in parts:
            log.submit(bytearray(payload), prefix=prefix, payload_crc=crc32c(payload)).result()
        crashed = crash_image(directory, tmp_path_factory.mktemp("crashed") / "wal")
    finally:
        log.close()
    expected = [p + b for p, b in parts]
    for opened in (directory, crashed):
        with WriteAheadLog(str(opened), segment_bytes=SMALL_SEGMENT) as reopened:
            assert [bytes(e.payload) for e in reopened.replay()] == expected


PAYLOAD, PREFIX = bytes(range(256)) * 64, b"header"


def counted_crc_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, the bytes each CRC32C the log computes reads, in order."""
    read: list[int] = []
    real = wal.log.crc32c

    def counted(data: BytesLike, crc: int = 0) -> int:
        read.append(memoryview(data).nbytes)
        return real(data, crc)

    monkeypatch.setattr(wal.log, "crc32c", counted)
    return read


def test_a_payload_with_a_given_crc_is_not_read_for_the_checksum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with WriteAheadLog(str(tmp_path / "wal")) as log:
        read = counted_crc_reads(monkeypatch)
        log.submit(PAYLOAD, prefix=PREFIX, payload_crc=crc32c(PAYLOAD)).result()
        log.submit(PAYLOAD, payload_crc=crc32c(PAYLOAD)).result()
        assert read == [len(PREFIX)]
        log.submit(PAYLOAD).result()  # without one, the payload is read
        assert read == [len(PREFIX), len(PAYLOAD)]


def test_a_batch_record_is_checksummed_from_the_crc_given_not_from_its_bytes(
    tmp_path: Path,
) -> None:
    """A batch's records are framed in one native call: a wrong CRC given
    (which recovery would refuse) shows that the payload was not read for it."""
    directory = tmp_path / "wal"
    given = crc32c(b"not the payload")
    with WriteAheadLog(str(directory)) as log:
        (position,) = log.append_many([Append(PAYLOAD, prefix=PREFIX, payload_crc=given)])
        with open(directory / segment_name(position.segment), "rb") as segment:
            segment.seek(position.offset)
            header = segment.read(RECORD_HEADER_SIZE)
    from_given = crc32c_combine(crc32c(PREFIX), given, len(PAYLOAD))
    assert decode_record_header(header, 0).crc == crc32c(header[4:], from_given)


def test_batch_records_with_a_given_crc_replay(tmp_path: Path) -> None:
    directory = str(tmp_path / "wal")
    with WriteAheadLog(directory) as log:
        log.append_many(
            [
                Append(PAYLOAD, prefix=PREFIX, payload_crc=crc32c(PAYLOAD)),
                Append(PAYLOAD, payload_crc=crc32c(PAYLOAD)),
            ]
        )
    with WriteAheadLog(directory) as reopened:
        assert [bytes(e.payload) for e in reopened.replay()] == [PREFIX + PAYLOAD, PAYLOAD]
