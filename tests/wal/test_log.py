"""Appending, replaying, rolling, trimming and reopening the log."""

from __future__ import annotations

import array
import asyncio
import mmap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.wal.conftest import SMALL_SEGMENT, payloads, segment_files
from wal import (
    Append,
    Durability,
    LogClosed,
    LogFailed,
    Position,
    RecordTooLarge,
    WriteAheadLog,
    group_commit,
)

OpenLog = Callable[..., WriteAheadLog]


def test_append_returns_increasing_positions_and_replay_returns_the_records(
    open_log: OpenLog,
) -> None:
    log = open_log()
    positions = [
        log.append(f"record {i}".encode(), stream_id=i % 3, start_offset=i, end_offset=i + 1)
        for i in range(10)
    ]
    assert positions == sorted(positions)
    assert len(set(positions)) == 10
    entries = list(log.replay())
    assert [bytes(e.payload) for e in entries] == [f"record {i}".encode() for i in range(10)]
    assert [(e.stream_id, e.start_offset, e.end_offset) for e in entries] == [
        (i % 3, i, i + 1) for i in range(10)
    ]
    assert [e.position for e in entries] == positions


def test_records_survive_close_and_reopen_with_their_metadata(open_log: OpenLog) -> None:
    log = open_log()
    log.append(b"a", stream_id=7, start_offset=100, end_offset=104, record_type=9)
    log.append(b"", stream_id=8)
    log.close()
    reopened = open_log()
    entries = list(reopened.replay())
    assert [(bytes(e.payload), e.stream_id, e.type) for e in entries] == [
        (b"a", 7, 9),
        (b"", 8, 1),
    ]
    assert (entries[0].start_offset, entries[0].end_offset) == (100, 104)
    assert reopened.recovery.records == 2
    assert reopened.recovery.segments == 1
    assert not reopened.recovery.torn  # only unwritten, preallocated space was cut


def test_segments_roll_when_full_and_every_record_stays_readable(
    open_log: OpenLog, tmp_path: Path
) -> None:
    log = open_log()
    data = [bytes([i % 256]) * 700 for i in range(40)]
    positions = [log.append(d) for d in data]
    assert len({p.segment for p in positions}) > 5
    assert log.stats.segments_rolled == len(log.segments) - 1
    assert all(f.stat().st_size <= SMALL_SEGMENT for f in segment_files(tmp_path / "wal"))
    log.close()
    assert payloads(open_log()) == data


def test_replay_from_a_position_skips_earlier_records(open_log: OpenLog) -> None:
    log = open_log()
    positions = [log.append(bytes([i]) * 300) for i in range(30)]
    from_middle = list(log.replay(positions[17]))
    assert [e.position for e in from_middle] == positions[17:]


def test_trim_drops_whole_segments_before_the_position_only(open_log: OpenLog) -> None:
    log = open_log()
    positions = [log.append(bytes([i]) * 500) for i in range(40)]
    keep_from = positions[25]
    dropped = log.trim(keep_from)
    assert dropped == keep_from.segment - positions[0].segment
    remaining = list(log.replay())
    # Records of the position's own segment survive even if before it.
    assert remaining[0].position.segment == keep_from.segment
    assert [e.position for e in remaining if e.position >= keep_from] == positions[25:]
    log.close()
    assert next(e.position for e in open_log().replay()).segment == keep_from.segment


def test_trim_never_drops_the_active_segment(open_log: OpenLog) -> None:
    log = open_log()
    position = log.append(b"x")
    assert log.trim(Position(position.segment + 100, 0)) == 0
    assert payloads(log) == [b"x"]


def test_recycled_segments_never_bring_back_stale_records(open_log: OpenLog) -> None:
    log = open_log(recycle_segments=4)
    old = [b"old-%03d" % i + b"." * 600 for i in range(30)]
    positions = [log.append(d) for d in old]
    dropped = log.trim(positions[-1])
    assert dropped > 0
    names = {p.name for p in Path(log.directory).iterdir()}
    assert f"free-{positions[0].segment:020d}.wal" in names
    new = [b"new-%03d" % i for i in range(3)]
    for d in new:
        log.append(d)
    log.close()
    reopened = open_log(recycle_segments=4)
    recovered = payloads(reopened)
    assert recovered[-3:] == new
    assert set(recovered) <= set(old) | set(new)
    assert [r for r in recovered if r.startswith(b"old")] == old[len(old) - len(recovered) + 3 :]


@pytest.mark.parametrize("durability", list(Durability))
def test_every_durability_policy_keeps_records_across_a_clean_close(
    open_log: OpenLog, durability: Durability
) -> None:
    log = open_log(durability=durability, sync_interval_ms=5)
    for i in range(50):
        log.append(b"%d" % i)
    syncs = log.stats.syncs
    log.close()
    if durability is Durability.FSYNC:
        assert syncs == log.stats.groups
    elif durability is Durability.NONE:
        assert syncs == 0
    assert payloads(open_log()) == [b"%d" % i for i in range(50)]


def test_an_endless_sync_interval_acknowledges_appends_and_syncs_at_close(
    open_log: OpenLog,
) -> None:
    """An interval of inf is the ``none`` policy in all but name: the
    writer's wait for it once ended the writer thread, and the second
    append was never answered."""
    log = open_log(durability=Durability.INTERVAL, sync_interval_ms=float("inf"))
    positions = [log.submit(b"%d" % i).result(timeout=30) for i in range(3)]
    assert len(set(positions)) == 3
    log.close()
    assert payloads(open_log()) == [b"0", b"1", b"2"]


@pytest.mark.parametrize("interval", [float("nan"), -1.0])
def test_a_sync_interval_that_is_not_a_duration_is_refused(
    open_log: OpenLog, interval: float
) -> None:
    with pytest.raises(ValueError, match="sync_interval_ms"):
        open_log(durability=Durability.INTERVAL, sync_interval_ms=interval)


def test_append_after_close_raises(open_log: OpenLog) -> None:
    log = open_log()
    log.close()
    with pytest.raises(LogClosed):
        log.append(b"late")


def test_a_payload_that_cannot_fit_a_segment_is_refused_and_the_log_goes_on(
    open_log: OpenLog,
) -> None:
    log = open_log()
    with pytest.raises(RecordTooLarge) as raised:
        log.append(b"x" * SMALL_SEGMENT)
    assert raised.value.size == SMALL_SEGMENT
    assert raised.value.limit < SMALL_SEGMENT
    largest = b"y" * raised.value.limit
    log.append(largest)
    assert payloads(log) == [largest]


@pytest.mark.parametrize("batched", [False, True], ids=["append", "append_many"])
def test_a_payload_longer_than_the_length_field_is_refused_in_a_segment_above_4_gib(
    open_log: OpenLog, tmp_path: Path, batched: bool
) -> None:
    """A record header states its payload's length in 32 bits: in a segment
    that could hold more, a payload of 2^32 bytes is refused with
    RecordTooLarge when it is appended, and the log goes on (it is neither
    written with its length cut short nor left to fail the writer). The
    payload is a sparse file's mapping: nothing of it is allocated."""
    log = open_log(segment_bytes=2**33, preallocate=False)
    with (tmp_path / "payload").open("wb") as file:
        file.truncate(2**32)
    with (tmp_path / "payload").open("rb") as file:
        huge = memoryview(mmap.mmap(file.fileno(), 2**32, access=mmap.ACCESS_READ))
    with pytest.raises(RecordTooLarge) as raised:
        if batched:
            log.submit_many([Append(huge, payload_crc=0)]).result(timeout=30)
        else:
            log.submit(huge, payload_crc=0).result(timeout=30)
    assert (raised.value.size, raised.value.limit) == (2**32, 2**32 - 1)
    log.append(b"after")
    assert payloads(log) == [b"after"]


@pytest.mark.parametrize("record_type", [0, 255, 300])
def test_reserved_record_types_are_refused(open_log: OpenLog, record_type: int) -> None:
    with pytest.raises(ValueError, match="record_type"):
        open_log().append(b"x", record_type=record_type)


def test_async_appends_from_many_tasks_are_all_durable(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=1 << 20)

    async def main() -> list[Position]:
        return await asyncio.gather(*(log.append_async(b"task %d" % i) for i in range(200)))

    positions = asyncio.run(main())
    assert len(set(positions)) == 200
    assert sorted(payloads(log)) == sorted(b"task %d" % i for i in range(200))
    assert log.stats.syncs < log.stats.appends


def test_bytearray_and_memoryview_payloads_are_written_as_given(open_log: OpenLog) -> None:
    log = open_log()
    log.append(bytearray(b"from a bytearray"))
    log.append(memoryview(b"__from a view__")[2:-2])
    assert payloads(log) == [b"from a bytearray", b"from a view"]


def _wide_views() -> list[memoryview]:
    """Views whose len() counts items or rows, not bytes."""
    return [
        memoryview(array.array("I", range(1, 5))),  # 16 bytes, 4 items
        memoryview(bytes(range(12))).cast("B", (3, 4)),  # 12 bytes, 3 rows
        memoryview(array.array("d", [0.5, 1.5])),
    ]


@pytest.mark.parametrize("way", ["append", "append_async", "submit with a prefix"])
def test_a_payload_view_of_wider_items_is_written_as_its_bytes(open_log: OpenLog, way: str) -> None:
    """A record's length is its payload's bytes, not its view's items: taken
    as 4 for 16 bytes, the record's header and CRC disagreed with what was
    written, the next record overwrote its tail, and the reopened log
    refused the acknowledged records as damaged."""
    log = open_log(segment_bytes=1 << 20)
    views = _wide_views()
    if way == "append":
        for view in views:
            log.append(view)
    elif way == "append_async":

        async def main() -> None:
            for view in views:
                await log.append_async(view)

        asyncio.run(main())
    else:
        for view in views:
            log.submit(view, prefix=b"p:").result(timeout=30)
    log.append(b"after")
    log.close()
    prefix = b"p:" if way == "submit with a prefix" else b""
    expected = [prefix + view.tobytes() for view in views] + [b"after"]
    assert payloads(open_log(segment_bytes=1 << 20)) == expected


def test_a_payload_view_is_measured_in_bytes_against_the_size_limit(open_log: OpenLog) -> None:
    log = open_log()
    items = SMALL_SEGMENT // 8  # few items, more bytes than a segment holds
    with pytest.raises(RecordTooLarge) as raised:
        log.append(memoryview(array.array("Q", range(items))))
    assert raised.value.size == items * 8


@given(parts=st.lists(st.tuples(st.binary(max_size=40), st.binary(max_size=400)), max_size=20))
@settings(max_examples=25)
def test_a_prefix_is_written_before_its_payload_as_one_record(
    tmp_path_factory: pytest.TempPathFactory, parts: list[tuple[bytes, bytes]]
) -> None:
    directory = tmp_path_factory.mktemp("prefixed")
    with WriteAheadLog(str(directory), segment_bytes=SMALL_SEGMENT) as log:
        for prefix, payload in parts:
            log.submit(bytearray(payload), prefix=prefix).result()
    with WriteAheadLog(str(directory), segment_bytes=SMALL_SEGMENT) as log:
        # Reopening checks every record's CRC, which covers the prefix too.
        assert [bytes(e.payload) for e in log.replay()] == [p + b for p, b in parts]


def test_a_prefix_counts_toward_the_record_size_limit(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=SMALL_SEGMENT)
    with pytest.raises(RecordTooLarge):
        log.submit(b"x" * (SMALL_SEGMENT // 2), prefix=b"y" * SMALL_SEGMENT).result()
    log.append(b"after")
    assert [bytes(e.payload) for e in log.replay()] == [b"after"]


BAD_FIELDS = [
    ({"stream_id": -1}, OverflowError),
    ({"stream_id": 2**64}, OverflowError),
    ({"start_offset": 2**63}, OverflowError),
    ({"end_offset": -(2**63) - 1}, OverflowError),
    ({"payload_crc": 2**32}, OverflowError),
    ({"payload_crc": -1}, OverflowError),
    ({"stream_id": 1.5}, TypeError),
]


@pytest.mark.parametrize(("fields", "error"), BAD_FIELDS, ids=str)
def test_an_append_whose_header_fields_do_not_fit_is_refused_and_the_log_goes_on(
    open_log: OpenLog, fields: dict[str, Any], error: type[Exception]
) -> None:
    """A field a record header cannot hold is refused when the append is
    made, with the error a batch append gives for it, and the log goes on:
    found by the writer, it would stop the writer thread and leave this
    append, and every one after it, unanswered."""
    log = open_log()
    with pytest.raises(error):
        log.append_many([Append(b"x", **fields)])
    with pytest.raises(error):
        log.submit(b"x", **fields)
    assert log.submit(b"after").result(timeout=30) is not None
    assert payloads(log) == [b"after"]


def test_a_writer_that_fails_for_any_reason_fails_the_log_and_answers_every_append(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception on the writer thread that is not the disk's (a defect)
    fails the log as a failed write does: the group it was writing and
    every append after it get LogFailed, none is left waiting."""
    log = open_log()
    assert log.submit(b"before").result(timeout=30) is not None

    def broken(*args: object, **kwargs: object) -> bytes:
        raise ValueError("a defect in the writer")

    monkeypatch.setattr(group_commit, "encode_placed_record_header", broken)
    with pytest.raises(LogFailed):
        log.submit(b"during").result(timeout=30)
    with pytest.raises(LogFailed):
        log.submit(b"after").result(timeout=30)
