"""StreamStore.submit_then settles the caller's own DurableCall: the object
itself is the WAL's waiter (nothing of the store's is made between them),
settled once per append on the loop, in offset order, with None once the
append is durable (its stream's end past it) or the store's error, and a
failed WAL group gives every append of it its error."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from s3stream import LOCAL, REMOTE, AppendOptions, DurableCall, StoreFailed, StreamStore
from s3stream.store import MemoryStore
from tests.s3stream.test_remote_cadence import TIMEOUT, opened
from wal import WriteAheadLog, group_commit

APPENDS = 32


class _Noted(DurableCall):
    """Notes its offset, its error and the stream's end when settled."""

    __slots__ = ("_noted", "_offset", "_store", "_stream")

    def __init__(
        self,
        store: StreamStore,
        stream: int,
        offset: int,
        noted: list[tuple[int, BaseException | None, int]],
    ) -> None:
        self._store = store
        self._stream = stream
        self._offset = offset
        self._noted = noted

    def settle(self, error: BaseException | None) -> None:
        self._noted.append((self._offset, error, self._store.end_offset(self._stream)))


def _appended(
    store: StreamStore, options: AppendOptions = LOCAL
) -> tuple[list[DurableCall], list[tuple[int, BaseException | None, int]]]:
    """APPENDS one-record appends of a new stream, queued in one WAL group,
    and what each call noted once all were settled."""
    stream = store.create_stream()
    store.open_stream(stream, 1)
    noted: list[tuple[int, BaseException | None, int]] = []
    calls: list[DurableCall] = []

    async def appends() -> None:
        with store.gathered():
            for offset in range(APPENDS):
                call = _Noted(store, stream, offset, noted)
                calls.append(call)
                store.submit_then(call, stream, offset, offset, b"r%d" % offset, options)
        assert noted == []  # never before submit_then returns
        for _ in range(int(TIMEOUT * 100)):
            if len(noted) == APPENDS:
                return
            await asyncio.sleep(0.01)

    asyncio.run(appends())
    return calls, noted


@pytest.mark.parametrize("options", [LOCAL, REMOTE])
def test_the_callers_call_is_the_wals_waiter_settled_in_order_once_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: AppendOptions
) -> None:
    waiters: list[object] = []
    submit_to = WriteAheadLog.submit_to

    def noted_waiter(self: WriteAheadLog, waiter: object, *args: object) -> None:
        waiters.append(waiter)
        submit_to(self, waiter, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(WriteAheadLog, "submit_to", noted_waiter)
    store = opened(tmp_path / "data", MemoryStore())
    try:
        calls, noted = _appended(store, options)
    finally:
        store.close()
    assert [waiter is call for waiter, call in zip(waiters, calls, strict=True)] == [True] * APPENDS
    assert [offset for offset, _, _ in noted] == list(range(APPENDS))
    assert [error for _, error, _ in noted] == [None] * APPENDS
    # Settled once durable: the stream's end (what readers see) past it.
    assert all(end > offset for offset, _, end in noted)


def test_a_failed_wal_group_settles_every_call_with_the_stores_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> bytes:
        raise ValueError("a defect in the writer")

    store = opened(tmp_path / "data", MemoryStore())
    try:
        monkeypatch.setattr(group_commit, "encode_placed_record_header", broken)
        _, noted = _appended(store)
    finally:
        monkeypatch.undo()
        store.close()
    assert [offset for offset, _, _ in noted] == list(range(APPENDS))
    assert all(isinstance(error, StoreFailed) for _, error, _ in noted)
