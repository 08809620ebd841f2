"""Hedged requests: a second copy of a slow object-store request, where a
second copy cannot change what the first one does.

An object store's latency has a long tail: most requests answer in a few
milliseconds, a few stall for tens. A remote acknowledgement waits for
three requests in a row (the object's PUT, the manifest's create-if-absent,
a HEAD of the version before it), so its p99 is set by those stalls. A
request that has not answered after ``after`` times the recent median of
its kind (never sooner than ``floor_s``) is sent again; the first good
answer is the caller's, and the other request is left to finish on its own
(botocore cannot cancel a request in flight). Which requests may be sent
twice (docs/durability.md, "Hedged requests"):

- ``put`` of a data object or a checkpoint: every key is written once, with
  the same bytes, so the second write lands the same object (same ETag).
  The caller must not change the bytes until the put returns, which the
  uploader does not; the loser may still be sending them afterwards, and
  keeps them alive by its reference. Objects above ``max_bytes`` (the S3
  store's multipart threshold) are not hedged: their time is the link's
  bandwidth, not a stall, and a second copy would double it;
- ``put_if_absent`` (the manifest's next version): the copy that loses the
  race gets 412, and a 412 answered first is settled by the manifest the
  way it already settles a retry's 412 (``Manifest._put_version`` reads the
  version back: its own record byte for byte is its write; anything else
  is another writer's and fences it);
- ``head`` and ``get_versioned``: reads.

Never hedged: ``delete``, ``put_if_version`` (a late copy could replace a
newer version), ``list``, and ``get``: the ranged GETs of catch-up reads run
on threads kept at a lower priority on purpose (wal/thread_priority.py),
which a hand-off to this module's threads would undo, and they are not on
the path of an acknowledgement.

The extra load is bounded: one hedge at most per request, and hedges spend
tokens that requests earn at ``max_share`` each (at most 10 saved up), so
a store slow for everyone gets at most that share more requests, not twice
as many. Until a kind has ``_MIN_SAMPLES`` latencies, its requests run on
the caller's thread and are never hedged.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TypeVar

from s3stream.store.base import (
    ObjectBuffer,
    ObjectData,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    PreconditionFailed,
)
from wal.thread_priority import NORMAL

_T = TypeVar("_T")

_MIN_SAMPLES = 8
"""Latencies of a kind seen before its requests may be hedged."""
_WINDOW = 64
"""How many recent latencies of a kind its median is taken over."""
_MAX_TOKENS = 10.0
"""The most hedges a quiet spell saves up."""
_WORKERS = 16
"""Threads sending hedged requests and their first copies: more than the
writers that ask at once (uploader, its put-ahead, manifest, its cleanup,
compactor), each with one first copy and one hedge in flight. When losers
still out fill them all, requests go unhedged from their callers' threads."""
ANSWER_TIMEOUT_S = 600.0
"""How long a caller waits for either copy; the backend's own timeouts and
retries (botocore's) end each request well before."""
_START_TIMEOUT_S = 10.0
"""How long opening waits for the hedging threads to start."""
_ANSWERS = (ObjectNotFound, PreconditionFailed)


@dataclass(frozen=True)
class HedgePolicy:
    """When a request is sent again (``[store] hedge_*``)."""

    after: float = 2.0
    """A request is sent again after this many times the recent median
    latency of its kind (0: never)."""
    floor_s: float = 0.005
    """... and never sooner than this."""
    max_share: float = 0.1
    """Hedges are at most this share of requests (and 10 more)."""

    def __post_init__(self) -> None:
        if self.after < 0 or self.after != self.after:
            raise ValueError(f"hedge_after must be 0 (off) or at least 1, not {self.after}")
        if self.after and self.after < 1:
            raise ValueError(f"hedge_after below 1 ({self.after}) would hedge most requests")
        if self.floor_s < 0:
            raise ValueError(f"hedge_floor_ms must not be negative, not {self.floor_s * 1000}")
        if not 0 <= self.max_share <= 1:
            raise ValueError(f"hedge_max_share must be within [0, 1], not {self.max_share}")

    @property
    def enabled(self) -> bool:
        return self.after > 0 and self.max_share > 0


class HedgeStats:
    """Hedges sent, and won (the hedge's answer was the one returned), by operation."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        self.won: Counter[str] = Counter()
        self.capped = 0
        """Requests slow enough to hedge that the share cap held back."""
        self._lock = threading.Lock()

    def note(self, operation: str, *, won: bool | None = None) -> None:
        """One hedge sent (``won`` None), or its outcome."""
        with self._lock:
            if won is None:
                self.sent[operation] += 1
            elif won:
                self.won[operation] += 1

    def note_capped(self) -> None:
        with self._lock:
            self.capped += 1

    def snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        """Hedges sent and won by operation, copied under the lock."""
        with self._lock:
            return dict(self.sent), dict(self.won)


class _Latencies:
    """The recent latencies of one kind of request, kept sorted for the median."""

    def __init__(self) -> None:
        self.recent: deque[float] = deque()
        self.ordered: list[float] = []

    def observe(self, seconds: float) -> None:
        if len(self.recent) == _WINDOW:
            oldest = self.recent.popleft()
            del self.ordered[bisect.bisect_left(self.ordered, oldest)]
        self.recent.append(seconds)
        bisect.insort(self.ordered, seconds)

    def median(self) -> float | None:
        count = len(self.ordered)
        return None if count < _MIN_SAMPLES else self.ordered[count // 2]


class HedgedStore(ObjectStore):
    """``inner`` with its slow idempotent requests sent twice (see the module docstring)."""

    def __init__(
        self, inner: ObjectStore, policy: HedgePolicy, *, max_bytes: int | None = None
    ) -> None:
        self.inner = inner
        self.policy = policy
        self.max_bytes = max_bytes
        self.url = inner.url
        self.conditional_writes = inner.conditional_writes
        self.checks_its_own_conditions = inner.checks_its_own_conditions
        self.stats = HedgeStats()
        self._latencies: dict[str, _Latencies] = {}
        self._tokens = 1.0
        self._lock = threading.Lock()
        # Started now, by the opener: at its priority, whoever asks first.
        self._pool: ThreadPoolExecutor | None = (
            NORMAL.started_pool(_WORKERS, "s3stream-hedge", _START_TIMEOUT_S)
            if policy.enabled
            else None
        )
        self._busy = 0
        """Copies handed to the hedging threads and not finished yet."""

    # -- hedged -------------------------------------------------------------------

    def put(self, key: str, data: ObjectData) -> str:
        size = _size_of(data)
        if self.max_bytes is not None and size > self.max_bytes:
            return self.inner.put(key, data)
        return self._hedged(
            f"put/{_size_class(size)}", "put", key, lambda: self.inner.put(key, data)
        )

    def put_if_absent(self, key: str, data: ObjectBuffer) -> str:
        size = memoryview(data).nbytes
        return self._hedged(
            f"put_if_absent/{_size_class(size)}",
            "put_if_absent",
            key,
            lambda: self.inner.put_if_absent(key, data),
        )

    def head(self, key: str) -> ObjectInfo:
        return self._hedged("head", "head", key, lambda: self.inner.head(key))

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        return self._hedged(
            "get_versioned", "get_versioned", key, lambda: self.inner.get_versioned(key)
        )

    # -- passed on ----------------------------------------------------------------

    def put_if_version(self, key: str, data: ObjectBuffer, version: str) -> str:
        return self.inner.put_if_version(key, data, version)

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        return self.inner.get(key, start, end)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def delete_many(self, keys: Sequence[str]) -> None:
        self.inner.delete_many(keys)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        return self.inner.list(prefix)

    def remove_abandoned_writes(self) -> int:
        return self.inner.remove_abandoned_writes()

    def close(self) -> None:
        self.stop()
        self.inner.close()

    def stop(self) -> None:
        """Stops hedging (requests run on the callers' threads from now on)
        and lets the hedging threads end, leaving ``inner`` open."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            # A loser may still be in flight: it is not waited for here (its
            # answer is no one's); its thread ends when it does, within the
            # backend's own timeouts.
            pool.shutdown(wait=False)

    # -- the mechanism ------------------------------------------------------------

    def _hedged(self, kind: str, operation: str, key: str, call: Callable[[], _T]) -> _T:
        delay = self._delay(kind)
        first = None if delay is None else self._submit(kind, call, room=2)
        if delay is None or first is None:
            return self._timed(kind, call)
        wait([first], timeout=delay)
        if first.done() or not self._take_token():
            return _result(first, operation, key)
        hedge = self._submit(kind, call, room=1)
        if hedge is None:
            return _result(first, operation, key)
        self.stats.note(operation)
        winner = _first_answer(first, hedge, operation, key)
        self.stats.note(operation, won=winner is hedge)
        return winner.result()

    def _delay(self, kind: str) -> float | None:
        """How long a request of ``kind`` may take before it is hedged; None: never."""
        if not self.policy.enabled:
            return None
        with self._lock:
            self._tokens = min(_MAX_TOKENS, self._tokens + self.policy.max_share)
            latencies = self._latencies.get(kind)
            median = None if latencies is None else latencies.median()
        if median is None:
            return None
        return max(self.policy.floor_s, self.policy.after * median)

    def _take_token(self) -> bool:
        with self._lock:
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
        self.stats.note_capped()
        return False

    def _timed(self, kind: str, call: Callable[[], _T]) -> _T:
        started = time.monotonic()
        try:
            result = call()
        except _ANSWERS:
            self._observe(kind, time.monotonic() - started)
            raise
        self._observe(kind, time.monotonic() - started)
        return result

    def _observe(self, kind: str, seconds: float) -> None:
        with self._lock:
            latencies = self._latencies.get(kind)
            if latencies is None:
                latencies = self._latencies[kind] = _Latencies()
            latencies.observe(seconds)

    def _submit(self, kind: str, call: Callable[[], _T], room: int) -> Future[_T] | None:
        """``call`` running on a hedging thread, if ``room`` of them are idle
        (a first copy asks for two: its own and its hedge's); else None
        (losers still out fill them: the caller then sends the request
        itself, unhedged, rather than queue behind them), or if hedging stopped."""
        with self._lock:
            if self._pool is None or self._busy + room > _WORKERS:
                return None
            self._busy += 1
            pool = self._pool
        try:
            return pool.submit(self._run, kind, call)
        except RuntimeError:  # stopped meanwhile, or the interpreter is exiting
            self._done()
            return None

    def _run(self, kind: str, call: Callable[[], _T]) -> _T:
        try:
            return self._timed(kind, call)
        finally:
            self._done()

    def _done(self) -> None:
        with self._lock:
            self._busy -= 1


def hedged(store: ObjectStore, policy: HedgePolicy) -> HedgedStore | None:
    """``store`` with its requests hedged by ``policy``, or None if the
    policy is off or the store is not one a hedge helps (``hedgeable``)."""
    if not policy.enabled or not store.hedgeable:
        return None
    # A multipart object's time is the link's, not a stall's (module docstring).
    return HedgedStore(store, policy, max_bytes=getattr(store, "multipart_threshold", None))


def _first_answer(first: Future[_T], hedge: Future[_T], operation: str, key: str) -> Future[_T]:
    """The copy whose answer the caller gets: the first to succeed or to
    give a definite answer (not found, a failed condition). A failure
    waits for the other copy; if both fail, the first copy's error stands."""
    pending = {first, hedge}
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ObjectStoreError(operation, key, f"no answer in {ANSWER_TIMEOUT_S:.0f} s")
        done, pending = wait(pending, timeout=remaining, return_when=FIRST_COMPLETED)
        for future in (first, hedge):  # the first copy's answer first when both are in
            if future in done:
                error = future.exception()
                if error is None or isinstance(error, _ANSWERS):
                    return future
    return first


def _result(future: Future[_T], operation: str, key: str) -> _T:
    try:
        return future.result(timeout=ANSWER_TIMEOUT_S)
    except TimeoutError:
        raise ObjectStoreError(operation, key, f"no answer in {ANSWER_TIMEOUT_S:.0f} s") from None


def _size_of(data: ObjectData) -> int:
    if isinstance(data, bytes | bytearray | memoryview):
        return memoryview(data).nbytes
    return sum(memoryview(part).nbytes for part in data)


def _size_class(size: int) -> int:
    """Requests within a factor of 8 in size share a median (below 128 KiB: class 0)."""
    return max(0, (size.bit_length() - 15) // 3)
