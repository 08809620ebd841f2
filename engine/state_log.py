"""A keyed state log: the latest value per key, kept in one stream.

The group coordinator (committed offsets, group metadata) and the
transaction coordinator (transactional ids) keep their state here. Each
change is one msgpack record, ``["put", [[key, value], ...]]`` or
``["del", [key, ...]]``, appended through the WAL like record data and
uploaded with it, so a restart, or a fresh machine with only the bucket,
reads the state back.

The stream is compacted the way Kafka compacts ``__consumer_offsets``, by
key, but in one step: once the records since the last compaction outnumber
the live keys (and ``COMPACT_AFTER``), every live key is written again
after a ``["compact"]`` record and, once those are durable, the stream is
trimmed to that record. A crash half way leaves the older records in
place; replaying them and then the rewritten ones gives the same state.
The record formats are in docs/engine-format.md.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Hashable
from concurrent.futures import CancelledError, Future
from typing import Any, NamedTuple

import msgpack

from engine import clock
from engine.catalog import read_payloads
from s3stream import UNPACED, S3StreamError, StreamStore, check_fits

log = logging.getLogger("tidelog.engine")

COMPACT_AFTER = 1024
"""Records since the last compaction before one is considered."""
COMPACT_CHUNK = 256
"""Live keys per record when compacting (records stay small)."""
COMPACT_TIMEOUT_S = 60.0
"""How long a compaction waits for its rewrite to be durable, and compact()
for a compaction already running."""


_ABSENT = object()
"""A key's value before a record that made it."""


class _Unsettled(NamedTuple):
    """A record accepted by the store: its write, and each key it changed
    with the value before it (``_ABSENT``: none), to undo it if the write
    fails."""

    written: Future[int]
    before: dict[Hashable, Any]

    def failed(self) -> bool:
        """Its write ended and failed (asked only once it is done): one look
        at the future, which takes its lock each time (on every update)."""
        try:
            return self.written.exception(0) is not None
        except CancelledError:
            return True


def _pack(record: list[Any]) -> bytes:
    packed: bytes = msgpack.packb(record, use_bin_type=True)
    return packed


RECORD_FRAMING = 16
"""More than a put record's bytes beside its entries (its kind and the
lengths of its arrays): with ``put_entry_bytes``, a bound on its size."""


def put_entry_bytes(key: Hashable, value: Any) -> int:
    """The bytes one key's put adds to a put record: a writer that bounds
    the records it will write (a transaction's completion) sums these."""
    return len(_pack([key, value]))


def _rewrite(live: list[tuple[Hashable, Any]], limit: int) -> list[bytes]:
    """A compaction's put records of ``live``, each within ``limit``
    bytes: halved until each fits, as COMPACT_CHUNK keys whose values
    each came in a record of its own may together pass it. A single
    key's record fits: it is no larger than the one that put it."""
    payload = _pack(["put", [[k, v] for k, v in live]])
    if len(payload) <= limit or len(live) == 1:
        return [payload]
    half = len(live) // 2
    return _rewrite(live[:half], limit) + _rewrite(live[half:], limit)


def _key(raw: Any) -> Hashable:
    """msgpack gives lists back; keys are compared as tuples."""
    return tuple(_key(k) for k in raw) if isinstance(raw, list) else raw


class StateLog:
    """The live state of one stream of put/del records; thread safe.

    Keys are msgpack-able scalars or tuples of them; values are anything
    msgpack can carry. A change is applied in memory at once and is durable
    when the returned future resolves.
    """

    def __init__(self, store: StreamStore, stream_id: int) -> None:
        self.store = store
        self.stream_id = stream_id
        self._lock = threading.Lock()
        self._state: dict[Hashable, Any] = {}
        self._since_compaction = 0
        self._compacting = False
        self._compaction_done = threading.Condition(self._lock)
        self._unsettled: deque[_Unsettled] = deque()
        """Records accepted by the store, in log order, from the first that
        was not durable at the last update."""

    @classmethod
    def open(cls, store: StreamStore, stream_id: int) -> StateLog:
        """Reads the stream (already open in ``store``) into memory."""
        log = cls(store, stream_id)
        for payload in read_payloads(store, stream_id):
            log._apply(msgpack.unpackb(payload, raw=False, strict_map_key=False))
            log._since_compaction += 1
        return log

    def _apply(self, record: list[Any]) -> dict[Hashable, Any]:
        """Applies ``record``; returns each key's value before it
        (``_ABSENT`` for a key it did not have)."""
        kind = record[0]
        before: dict[Hashable, Any] = {}
        if kind == "put":
            for raw, value in record[1]:
                key = _key(raw)
                before.setdefault(key, self._state.get(key, _ABSENT))
                self._state[key] = value
        elif kind == "del":
            for raw in record[1]:
                key = _key(raw)
                before.setdefault(key, self._state.pop(key, _ABSENT))
        elif kind != "compact":
            raise ValueError(f"stream {self.stream_id}: unknown state record {kind!r}")
        return before

    # -- reading -----------------------------------------------------------------

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            self._settle_locked(everything=True)
            return self._state.get(key, default)

    def items(self) -> list[tuple[Hashable, Any]]:
        """A copy of every live key and value."""
        with self._lock:
            self._settle_locked(everything=True)
            return list(self._state.items())

    def keys(self) -> list[Hashable]:
        with self._lock:
            self._settle_locked(everything=True)
            return list(self._state)

    def __len__(self) -> int:
        return len(self._state)

    # -- changing ----------------------------------------------------------------

    def put(self, key: Hashable, value: Any) -> Future[int]:
        return self.update(puts={key: value})

    def delete(self, key: Hashable) -> Future[int]:
        return self.update(deletes=[key])

    def update(
        self,
        puts: dict[Hashable, Any] | None = None,
        deletes: list[Hashable] | None = None,
    ) -> Future[int]:
        """Applies puts, then deletes, as one atomic record each; the future
        resolves when both are durable. Store errors raise here or through
        the future.

        A record is applied once the store has accepted it: one it refuses
        (the error raised here) changes nothing. One it accepts and then
        fails is undone before the state is next read or written (the
        WAL's thread, which fails it, is not held up), so that what is read
        is what a restart reads back, plus the records still being
        written, and a compaction never writes a change that did not make
        it."""
        records: list[list[Any]] = []
        if puts:
            records.append(["put", [[k, v] for k, v in puts.items()]])
        if deletes:
            records.append(["del", list(deletes)])
        # Packed first: a value msgpack refuses changes nothing, and nor
        # does a record larger than the store takes (AppendTooLarge), the
        # deletes' as well as the puts': refused before either is appended.
        payloads = [_pack(record) for record in records]
        check_fits(self.stream_id, payloads, self.store.max_append_bytes)
        with self._lock:
            self._settle_locked(everything=False)
            last: Future[int] | None = None
            for record, payload in zip(records, payloads, strict=True):
                last = self._append_locked(payload)
                self._unsettled.append(_Unsettled(last, self._apply(record)))
            compact = not self._compacting and self._since_compaction >= max(
                COMPACT_AFTER, 2 * len(self._state)
            )
            if compact:
                self._compacting = True
        if compact:  # off the caller's thread: it may be an event loop
            threading.Thread(target=self._compact_quietly, name="state-log-compact").start()
        if last is None:
            done: Future[int] = Future()
            done.set_result(self.store.end_offset(self.stream_id))
            return done
        return last

    def _settle_locked(self, everything: bool) -> None:
        """Lets go of the records durable from the first one on, and undoes
        those whose write failed: from the first one on (each update), or
        wherever they are (before the state is read)."""
        unsettled = self._unsettled
        while unsettled and unsettled[0].written.done():
            if unsettled[0].failed():
                self._undo_locked(0)
            else:
                unsettled.popleft()
        if everything:
            for entry in [u for u in unsettled if u.written.done() and u.failed()]:
                self._undo_locked(unsettled.index(entry))

    def _undo_locked(self, index: int) -> None:
        """The record at ``index`` failed to write: its change is undone key
        by key. A key a later record changed too is that record's to put
        back: its undo now goes back to before this one, and if it is
        durable, its value stays."""
        unsettled = self._unsettled[index]
        del self._unsettled[index]
        later = list(itertools.islice(self._unsettled, index, None))
        for key, value in unsettled.before.items():
            successor = next((u for u in later if key in u.before), None)
            if successor is not None:
                successor.before[key] = value
            elif value is _ABSENT:
                self._state.pop(key, None)
            else:
                self._state[key] = value
        log.warning(
            "state stream %d: a record failed to write and was undone (%d keys)",
            self.stream_id,
            len(unsettled.before),
        )

    def _append_locked(self, payload: bytes) -> Future[int]:
        offset = self.store.next_offset(self.stream_id)
        self._since_compaction += 1
        # Never waits for room: a state record is small, and its writer
        # holds this lock and its own (the group coordinator's, on the
        # server's event loop), which an outage of the object store would
        # otherwise hold until it ends. Refused (NoRoom) past the headroom
        # instead, before anything changes.
        return self.store.submit(self.stream_id, offset, offset, payload, UNPACED)

    def compact(self, timeout: float = COMPACT_TIMEOUT_S) -> None:
        """Rewrites the live keys and trims what came before them; returns
        once the stream starts at the rewrite. A compaction already running
        (one that changes started in the background) is waited for first:
        the live keys may have changed since it took them. TimeoutError if
        that one or the rewrite takes longer than ``timeout`` seconds."""
        deadline = clock.monotonic() + timeout
        with self._lock:
            while self._compacting:
                left = deadline - clock.monotonic()
                if left <= 0 or not self._compaction_done.wait(left):
                    raise TimeoutError(
                        f"state stream {self.stream_id}: a compaction still running "
                        f"after {timeout:g} s"
                    )
            self._compacting = True
        self._compact(max(0.0, deadline - clock.monotonic()))

    def _compact_quietly(self) -> None:
        try:
            self._compact(COMPACT_TIMEOUT_S)
        except (S3StreamError, TimeoutError) as error:  # the next change tries again
            log.warning("compacting state stream %d failed: %s", self.stream_id, error)

    def _compact(self, timeout: float) -> None:
        try:
            with self._lock:
                self._settle_locked(everything=True)
                start = self.store.next_offset(self.stream_id)
                written = [self._append_locked(_pack(["compact"]))]
                live = list(self._state.items())
                limit = self.store.max_append_bytes
                for i in range(0, len(live), COMPACT_CHUNK):
                    chunk = live[i : i + COMPACT_CHUNK]
                    written.extend(self._append_locked(p) for p in _rewrite(chunk, limit))
                self._since_compaction = len(written)
            deadline = clock.monotonic() + timeout
            for future in written:
                future.result(max(0.0, deadline - clock.monotonic()))
            self.store.trim(self.stream_id, start)
        finally:
            with self._lock:
                self._compacting = False
                self._compaction_done.notify_all()
