"""The log keeps no payload once its append is settled: the writer and the
sync thread drop the group they last handled before they wait for the
next, so that an idle log does not keep a whole group's bytes alive after
the caller (the stream store's log cache) has let them go."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import cast

import pytest

from wal import Durability, LogFailed, Position, WriteAheadLog
from wal.group_commit import Queued, QueuedOutcome, WalStats
from wal.segment import SegmentWriter
from wal.syncer import Syncer, WrittenGroup

APPENDS = 200


class _Counted(bytes):
    """A payload that counts itself freed, and says when all are."""

    lock = threading.Lock()
    freed = 0
    all_freed = threading.Event()

    def __del__(self) -> None:
        with _Counted.lock:
            _Counted.freed += 1
            if _Counted.freed == APPENDS:
                _Counted.all_freed.set()


@pytest.mark.parametrize("durability", [Durability.FSYNC, Durability.NONE])
def test_a_settled_appends_payload_is_not_kept_by_the_log(
    open_log: Callable[..., WriteAheadLog], durability: Durability
) -> None:
    _Counted.freed = 0
    _Counted.all_freed.clear()
    log = open_log(durability=durability, segment_bytes=1 << 20)
    # Submitted together: groups of several, some handed to the sync thread.
    waiters = [log.submit(_Counted(b"p" * 64)) for _ in range(APPENDS)]
    for waiter in waiters:
        waiter.result(timeout=30)
    del waiters
    # Freed by the log's threads as they go idle: waited for, not timed.
    assert _Counted.all_freed.wait(30), f"{APPENDS - _Counted.freed} payloads still held"


class _Segment:
    """Stands in for the segment the sync thread syncs: nothing to write."""

    sequence = 1
    write_offset = 0

    def sync(self) -> None:
        pass


def test_the_sync_thread_keeps_no_group_it_has_settled() -> None:
    _Counted.freed = APPENDS - 1  # one payload watched here
    _Counted.all_freed.clear()
    settled = threading.Event()

    def settle(group: list[Queued], outcomes: Sequence[QueuedOutcome]) -> None:
        settled.set()

    syncer = Syncer(
        cast(SegmentWriter, _Segment()),
        settle,
        lambda error, segment: LogFailed(error),
        lambda failure: None,
        WalStats(),
    )
    try:
        group = cast("list[Queued]", [_Counted(b"p" * 64)])
        syncer.hand_over(WrittenGroup(group, [Position(1, 0)], 64, 1))
        del group
        assert settled.wait(30)
        assert _Counted.all_freed.wait(30), "the sync thread still holds its last group"
    finally:
        syncer.stop()
