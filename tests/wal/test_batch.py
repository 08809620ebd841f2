"""Batch appends: many records in one call, one future for all of them.

The records of a batch land back to back, in the order given, in one group
(one write, one sync), and the future resolves to every position once the
sync covering them is done, or fails with the group's error.
"""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.wal.conftest import payloads
from wal import (
    Append,
    DiskFull,
    LogFailed,
    LogIOError,
    Outcome,
    Position,
    RecordTooLarge,
    WriteAheadLog,
    group_commit,
)
from wal import segment as segment_module
from wal.format import FLAG_SYNCED, RECORD_HEADER_SIZE, decode_record_header, segment_name

OpenLog = Callable[..., WriteAheadLog]


def test_a_batch_is_written_back_to_back_in_order_in_one_group_and_one_sync(
    open_log: OpenLog,
) -> None:
    log = open_log(segment_bytes=1 << 20)
    log.append(b"before")
    groups, syncs = log.stats.groups, log.stats.syncs
    batch = [b"record %d" % i + b"." * i for i in range(100)]
    positions = log.append_many(Append(p) for p in batch)
    assert log.stats.groups - groups == 1
    assert log.stats.syncs - syncs == 1
    assert len({p.segment for p in positions}) == 1
    for previous, position, payload in zip(positions, positions[1:], batch, strict=False):
        assert position.offset == previous.offset + RECORD_HEADER_SIZE + len(payload)
    assert payloads(log) == [b"before", *batch]


def test_every_field_of_a_batch_record_is_kept(open_log: OpenLog) -> None:
    log = open_log()
    log.append_many(
        [
            Append(b"one", stream_id=3, start_offset=10, end_offset=12, record_type=7),
            Append(bytearray(b"two"), stream_id=4, start_offset=-1, end_offset=0, prefix=b"px:"),
            Append(memoryview(b"three")),
        ]
    )
    entries = [
        (bytes(e.payload), e.stream_id, e.start_offset, e.end_offset, e.type) for e in log.replay()
    ]
    assert entries == [(b"one", 3, 10, 12, 7), (b"px:two", 4, -1, 0, 1), (b"three", 0, 0, 0, 1)]


def test_a_batch_spanning_a_roll_keeps_its_order(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=4096)
    batch = [bytes([i]) * 500 for i in range(20)]
    positions = log.append_many(Append(p) for p in batch)
    assert positions == sorted(positions)
    assert len({p.segment for p in positions}) > 1
    assert payloads(log) == batch


@pytest.mark.parametrize(
    ("bad", "error"),
    [(Append(b"x", record_type=255), ValueError), (Append(b"x" * 8192), RecordTooLarge)],
)
def test_a_bad_record_refuses_the_whole_batch_and_queues_nothing(
    open_log: OpenLog, bad: Append, error: type[Exception]
) -> None:
    log = open_log()
    with pytest.raises(error):
        log.submit_many([Append(b"fine"), bad, Append(b"also fine")])
    log.append(b"after")
    assert payloads(log) == [b"after"]
    assert log.stats.appends == 1


def test_an_empty_batch_resolves_at_once(open_log: OpenLog) -> None:
    log = open_log()
    assert log.append_many([]) == []
    assert log.stats.groups == 0


def test_tags_of_a_batch_reach_the_commit_hook_each_with_its_position(open_log: OpenLog) -> None:
    reported: list[tuple[object, Outcome]] = []
    log = open_log(
        on_commit=lambda tags, outcomes: reported.extend(zip(tags, outcomes, strict=True))
    )
    positions = log.append_many([Append(b"a", tag="A"), Append(b"b"), Append(b"c", tag="C")])
    assert reported == [("A", positions[0]), ("C", positions[2])]


def test_a_failed_sync_fails_the_batch_and_acknowledges_none_of_it(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    reported: list[Outcome] = []
    log = open_log(on_commit=lambda tags, outcomes: reported.extend(outcomes))
    log.append(b"fine")

    def failing_sync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(segment_module.os, "fdatasync", failing_sync)
    future = log.submit_many([Append(b"x", tag=1), Append(b"y", tag=2)])
    with pytest.raises(LogIOError):
        future.result(timeout=30)
    assert len(reported) == 2 and all(isinstance(o, LogIOError) for o in reported)
    with pytest.raises(LogFailed):
        log.submit_many([Append(b"refused")])


def test_batches_from_many_tasks_are_each_contiguous_and_all_durable(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=1 << 20)

    async def main() -> list[list[Position]]:
        async def task(number: int) -> list[Position]:
            batch = [Append(b"%02d-%03d" % (number, i)) for i in range(50)]
            return await log.append_many_async(batch)

        return await asyncio.gather(*(task(n) for n in range(16)))

    results = asyncio.run(main())
    replayed = payloads(log)
    assert len(replayed) == 16 * 50
    for number, positions in enumerate(results):
        first = replayed.index(b"%02d-000" % number)
        assert replayed[first : first + 50] == [b"%02d-%03d" % (number, i) for i in range(50)]
        assert positions == sorted(positions)


def test_a_cancelled_wait_does_not_stop_the_batch(open_log: OpenLog) -> None:
    log = open_log()

    async def main() -> None:
        waiter = log.submit_many_async([Append(b"kept 1"), Append(b"kept 2")])
        waiter.cancel()
        await asyncio.sleep(0)

    asyncio.run(main())
    log.close()
    assert payloads(open_log()) == [b"kept 1", b"kept 2"]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    work=st.lists(st.lists(st.integers(1, 6), min_size=1, max_size=6), min_size=1, max_size=4),
)
def test_batches_and_single_appends_from_threads_interleave_only_between_batches(
    tmp_path_factory: pytest.TempPathFactory, work: list[list[int]]
) -> None:
    """Each thread appends its batches (a size of 1 is a plain append); in
    the log every batch is contiguous and every thread's records in order."""
    directory = tmp_path_factory.mktemp("wal")
    with WriteAheadLog(directory, segment_bytes=8192) as log:

        def appender(thread: int, sizes: list[int]) -> None:
            for number, size in enumerate(sizes):
                records = [b"%d:%d:%d" % (thread, number, i) + b"." * 200 for i in range(size)]
                if size == 1:
                    log.append(records[0])
                else:
                    log.append_many(Append(r) for r in records)

        threads = [threading.Thread(target=appender, args=t) for t in enumerate(work)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        replayed = [p.split(b".")[0] for p in payloads(log)]
    assert len(replayed) == sum(sum(sizes) for sizes in work)
    for thread, sizes in enumerate(work):
        mine = [r for r in replayed if r.startswith(b"%d:" % thread)]
        assert mine == [
            b"%d:%d:%d" % (thread, n, i) for n, size in enumerate(sizes) for i in range(size)
        ]
        for number, size in enumerate(sizes):
            first = replayed.index(b"%d:%d:0" % (thread, number))
            assert replayed[first : first + size] == [
                b"%d:%d:%d" % (thread, number, i) for i in range(size)
            ]


def test_appends_made_one_by_one_in_a_gathered_block_share_one_group(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_commit, "HOLD_LIMIT_S", 30.0)  # the block, not the limit, ends it
    log = open_log(segment_bytes=1 << 20)
    log.append(b"before")
    groups, syncs = log.stats.groups, log.stats.syncs
    with log.gathered():
        futures = []
        for i in range(5):
            futures.append(log.submit(b"part %d" % i))
            time.sleep(0.002)  # time enough for an unheld writer to take each alone
    positions = [future.result(timeout=30) for future in futures]
    assert log.stats.groups - groups == 1
    assert log.stats.syncs - syncs == 1
    assert positions == sorted(positions)
    assert payloads(log) == [b"before", *(b"part %d" % i for i in range(5))]


def test_a_gathered_block_that_lasts_does_not_hold_appends_back_for_long(
    open_log: OpenLog,
) -> None:
    """The writer takes what waits once the hold's limit passes, block or not."""
    log = open_log()
    with log.gathered():
        written = log.submit(b"made inside a long block")
        written.result(timeout=30)  # would wait for the block's end without the limit
    assert payloads(log) == [b"made inside a long block"]


def test_a_lone_asyncio_appenders_batches_each_take_one_group_in_call_order(
    open_log: OpenLog,
) -> None:
    """One task awaiting each batch before the next (the benchmark's lone
    appender): each batch is one group and one sync, the records counted one
    by one, and every record lands after the previous call's."""
    log = open_log(segment_bytes=1 << 20)

    async def main() -> list[list[Position]]:
        return [
            await log.append_many_async([Append(b"%d-%d" % (call, i)) for i in range(30)])
            for call in range(5)
        ]

    results = asyncio.run(main())
    flat = [position for positions in results for position in positions]
    assert flat == sorted(flat) and len(set(flat)) == 150
    assert (log.stats.groups, log.stats.syncs, log.stats.appends) == (5, 5, 150)
    assert log.stats.group_appends.count == 5
    assert payloads(log) == [b"%d-%d" % (call, i) for call in range(5) for i in range(30)]


def test_a_failed_sync_fails_an_asyncio_batch_with_its_error_and_the_log_then_refuses(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log()

    def failing_sync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    async def main() -> list[Position]:
        acknowledged = await log.append_many_async([Append(b"kept 1"), Append(b"kept 2")])
        monkeypatch.setattr(segment_module.os, "fdatasync", failing_sync)
        with pytest.raises(LogIOError):
            await log.append_many_async([Append(b"x"), Append(b"y"), Append(b"z")])
        with pytest.raises(LogFailed):
            await log.append_many_async([Append(b"refused")])
        return acknowledged

    acknowledged = asyncio.run(main())
    assert len(acknowledged) == 2
    monkeypatch.undo()
    log.close()
    assert payloads(open_log())[:2] == [b"kept 1", b"kept 2"]


def test_a_full_disk_fails_the_batch_with_disk_full(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log()
    log.append(b"before")

    def full_disk(fd: int, buffers: list[bytes], offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(segment_module.os, "pwritev", full_disk)
    with pytest.raises(DiskFull):
        log.append_many([Append(b"a"), Append(b"b")])
    with pytest.raises(LogFailed):
        log.append_many([Append(b"c")])


def test_tags_of_batches_and_single_appends_sharing_a_group_each_reach_the_hook(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_commit, "HOLD_LIMIT_S", 30.0)  # the block, not the limit, ends it
    reported: list[tuple[object, Outcome]] = []
    log = open_log(
        segment_bytes=1 << 20,
        on_commit=lambda tags, outcomes: reported.extend(zip(tags, outcomes, strict=True)),
    )
    groups = log.stats.groups
    with log.gathered():
        single = log.submit(b"one", tag="S1")
        batch = log.submit_many([Append(b"b0", tag="B0"), Append(b"b1"), Append(b"b2", tag="B2")])
        untagged = log.submit_many([Append(b"u0"), Append(b"u1")])
        last = log.submit(b"two", tag="S2")
    batch_positions = batch.result(timeout=30)
    assert log.stats.groups - groups == 1
    assert reported == [
        ("S1", single.result(timeout=30)),
        ("B0", batch_positions[0]),
        ("B2", batch_positions[2]),
        ("S2", last.result(timeout=30)),
    ]
    assert len(untagged.result(timeout=30)) == 2
    assert payloads(log) == [b"one", b"b0", b"b1", b"b2", b"u0", b"u1", b"two"]


def test_a_batch_larger_than_a_segment_fills_several_each_starting_synced(
    open_log: OpenLog,
) -> None:
    """A batch's records never span two segments; the first record of each
    segment it rolls into claims SYNCED (the roll synced everything before)."""
    log = open_log(segment_bytes=4096)
    batch = [bytes([i]) * 700 for i in range(24)]
    positions = log.append_many(Append(p) for p in batch)
    segments = sorted({p.segment for p in positions})
    assert len(segments) >= 4
    for segment in segments[1:]:
        first = min(p for p in positions if p.segment == segment)
        with open(os.path.join(log.directory, segment_name(segment)), "rb") as file:
            file.seek(first.offset)
            assert decode_record_header(file.read(RECORD_HEADER_SIZE), 0).flags == FLAG_SYNCED
    assert payloads(log) == batch


def test_a_batch_payload_may_change_once_the_call_returns(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The records are copied when the batch is queued: a bytearray changed
    before the writer takes the queue (held here) is written as it was."""
    monkeypatch.setattr(group_commit, "HOLD_LIMIT_S", 30.0)  # the block, not the limit, ends it
    log = open_log()
    payload = bytearray(b"as given")
    with log.gathered():
        future = log.submit_many([Append(payload)])
        payload[:] = b"changed!"
    future.result(timeout=30)
    assert payloads(log) == [b"as given"]
