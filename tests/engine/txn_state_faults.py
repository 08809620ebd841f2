"""Faults in the transaction coordinator's writes, for the tests of what a
failed write leaves: the store refusing a record of the "transactions"
state log or a partition's marker (nothing accepted), for room (NoRoom:
past its headroom, it takes the record once uploads resume), for good
(StoreFailed) or with an I/O error, and the WAL's write failing after the
store accepted it (the store then fails with the WAL)."""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest

from engine.engine import Engine
from s3stream import NoRoom, StoreFailed
from wal.segment import SegmentWriter


class RefusedStateWrites:
    """Refuses the transactions state log's appends whose record names one
    of ``states`` (a TxnState's value, or "del" for a deletion), each as
    many times as ``refusals`` says, with ``make(stream_id)``."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        e: Engine,
        refusals: dict[str, int],
        make: Callable[[int], BaseException],
    ) -> None:
        self._lock = threading.Lock()
        self._left = dict(refusals)
        self.refused: list[str] = []
        state_log = e.transactions._log
        submit = state_log.store.submit

        def refusing(stream_id: int, *args: Any, **kwargs: Any) -> Future[int]:
            if stream_id == state_log.stream_id:
                payload = bytes(args[2])
                with self._lock:
                    for state, left in self._left.items():
                        if left > 0 and _names(payload, state):
                            self._left[state] = left - 1
                            self.refused.append(state)
                            raise make(stream_id)
            return submit(stream_id, *args, **kwargs)

        monkeypatch.setattr(state_log.store, "submit", refusing)

    def heal(self) -> None:
        with self._lock:
            self._left.clear()


class WrittenButFailed:
    """The transactions state log's next ``times`` appends whose record
    names ``state`` are written (durable, so a restart reads them) but
    answered with ``make(stream_id)``: a write whose outcome the caller
    cannot know, as one that reached the WAL before the store failed."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        e: Engine,
        state: str,
        times: int,
        make: Callable[[int], BaseException],
    ) -> None:
        self._lock = threading.Lock()
        self._left = times
        self.failed = 0
        state_log = e.transactions._log
        submit = state_log.store.submit

        def failing(stream_id: int, *args: Any, **kwargs: Any) -> Future[int]:
            written = submit(stream_id, *args, **kwargs)
            if stream_id != state_log.stream_id or not _names(bytes(args[2]), state):
                return written
            with self._lock:
                if self._left <= 0:
                    return written
                self._left -= 1
                self.failed += 1
            answered: Future[int] = Future()

            def fail(done: Future[int]) -> None:
                done.exception()  # waited for: the record is durable (or failed) first
                answered.set_exception(make(stream_id))

            written.add_done_callback(fail)
            return answered

        monkeypatch.setattr(state_log.store, "submit", failing)


class RefusedMarkers:
    """Refuses the first ``times`` markers (control batches) written to the
    partition ``tp`` with ``make(stream_id)``, nothing accepted; every
    other write goes through. ``refused`` counts the refusals."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        e: Engine,
        tp: tuple[str, int],
        times: int,
        make: Callable[[int], BaseException],
    ) -> None:
        self._lock = threading.Lock()
        self._left = times
        self.refused = 0
        partition = e.partition(*tp)
        store, stream = partition.store, partition.stream_id
        submit = store.submit

        def refusing(stream_id: int, *args: Any, **kwargs: Any) -> Future[int]:
            if stream_id == stream and _is_control(bytes(args[2])):
                with self._lock:
                    if self._left > 0:
                        self._left -= 1
                        self.refused += 1
                        raise make(stream_id)
            return submit(stream_id, *args, **kwargs)

        monkeypatch.setattr(store, "submit", refusing)

    def heal(self) -> None:
        with self._lock:
            self._left = 0


def _is_control(batch: bytes) -> bool:
    """A record batch v2's control flag: bit 5 of its attributes (int16 at 21)."""
    return len(batch) > 22 and bool(batch[22] & 0x20)


def _names(payload: bytes, state: str) -> bool:
    if state == "del":
        return payload[1:5] == b"\xa3del"  # ["del", [...]]: a msgpack fixarray of 2
    return state.encode() in payload


def no_room(stream_id: int) -> BaseException:
    return NoRoom(stream_id, 1 << 30, 1 << 20)


def store_failed(stream_id: int) -> BaseException:
    return StoreFailed(OSError(errno.EIO, "the object store is down"))


def io_error(stream_id: int) -> BaseException:
    """A write that fails before the store accepts it, for a cause that is
    not the store's (it goes on serving)."""
    return OSError(errno.EIO, f"stream {stream_id}: Input/output error")


def fail_wal_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The WAL's next write fails before a byte reaches the file: the
    append was accepted, and the store fails with the WAL."""

    def failing_write(self: SegmentWriter, buffers: list[bytes | memoryview]) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(SegmentWriter, "write", failing_write)
