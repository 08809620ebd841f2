"""What a remote acknowledgement waited on, upload by upload.

``UploadTrace`` records, for each upload, when its batching window opened
(the first append of its block to ask for remote durability, or the end of
the commit before, whichever was later), when as many appends waited on it
as the commit before answered (its batch complete), when its block was sealed, the
streams' end offsets it commits, when its commit ended and when its
waiters were answered; and every object-store request the stream store
made, with its start and end. A stream store records nothing of this
unless asked (``StreamStore.trace_uploads``): the uploader and the metered
store each test one attribute that is None. Asked, an upload costs a few
monotonic timestamps, its streams' end offsets and a tuple per request,
never anything per record. The wait for the WAL to make the whole block
durable before its commit (uploader.py, ``_wait_ready``) is recorded as a
span of its own: the local disk's, not the object store's nor the cadence's.

``ack_waits`` joins the trace with the appends' own times (each append's
stream, end offset, when it was made and when its acknowledgement reached
its caller) into what each acknowledgement waited on: how many uploads
ended while it waited (the one in flight when it asked, if any, and its
own: docs/durability.md, "Remote mode's cost and tuning"), what was left of
the one in flight, its own upload's batching window, the time its
uploads' store requests and WAL waits took while it waited, and the hand-back from the
upload thread to its caller (docs/design/0151).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from s3stream.manifest_records import delta_key


class Request(NamedTuple):
    """One object-store request, as the metered store timed it (monotonic)."""

    operation: str
    key: str
    started: float
    ended: float


@dataclass
class UploadTimes:
    """One upload's times (monotonic seconds) and what it committed."""

    block_id: int
    window_opened: float
    """When its batching window opened; 0.0 if no append of it asked for
    remote durability before it was sealed (an interval's or a flush's)."""
    sealed: float
    """When its block was sealed; 0.0 if not by the uploader (recovery)."""
    due: float
    """When the cadence asked for the seal: the window's end, or its batch
    complete if that came first; 0.0 if no append asked (an interval's
    or a flush's seal)."""
    ends: dict[int, int]
    """Per stream, the end offset the upload commits."""
    object_keys: frozenset[str]
    version: int
    """The manifest version its commit wrote."""
    committed: float
    answered: float
    """When the upload thread began to answer the appends its commit covers."""
    wal_wait: tuple[float, float] = (0.0, 0.0)
    """When the upload began and ended waiting for the WAL to make its
    block durable (all of it, before the commit)."""
    requests: list[Request] = field(default_factory=list)
    """The store requests it made (filled in as the upload is recorded)."""


class Append(NamedTuple):
    """An append with ``REMOTE`` options, as its caller timed it (monotonic)."""

    stream_id: int
    end_offset: int
    asked: float
    acknowledged: float


class AckWait(NamedTuple):
    """What one acknowledgement waited on (seconds)."""

    latency: float
    uploads_waited: int
    """Uploads answered between the append and its acknowledgement, its
    own included: 1 if none was in flight when it asked, 2 if one was."""
    in_flight_left: float
    """What was left of the upload before its own when it asked (0: none)."""
    window: float
    """Its own upload's batching window: from its opening to the seal."""
    seal_late: float
    """How long after it was due the window ended (the seal waiting for
    its thread to run; 0 if no window)."""
    requests: float
    """Time within the wait during which a request of an upload it waited
    for was in flight (overlapping requests counted once)."""
    wal: float
    """Time within the wait during which an upload it waited for waited
    for the WAL's sync and no request of those uploads was in flight."""
    hand_back: float
    """From its upload's answer on the upload thread to its acknowledgement."""

    @property
    def own_share(self) -> float:
        """The time spent waiting on neither the object store nor the WAL:
        window, layout, the commit's encoding, the threads' hand-offs."""
        return self.latency - self.requests - self.wal


class UploadTrace:
    """The record above, filled in by the uploader and the metered store."""

    def __init__(self, linger_s: float) -> None:
        self._linger_s = linger_s
        self._lock = threading.Lock()
        self._complete: dict[int, float] = {}
        self._sealed: dict[int, tuple[float, float, float]] = {}
        self._wal_waits: dict[int, tuple[float, float]] = {}
        self._uploads: list[UploadTimes] = []
        self._requests: list[Request] = []
        """Requests a sealed block not yet uploaded may still claim: those
        started since the oldest such seal. Any other (a fetch's GET, a
        request while no block waits to be uploaded) belongs to no upload
        and is not kept, so what is held is bounded by one upload's span,
        not by the run's length."""

    def complete(self, block_id: int, now: float) -> None:
        """The appends waiting on the active block ``block_id`` are a complete batch."""
        with self._lock:
            self._complete.setdefault(block_id, now)

    def sealed(self, block_id: int, window_opened: float, now: float) -> None:
        with self._lock:
            due = 0.0
            if window_opened:
                due = window_opened + self._linger_s
                complete = self._complete.pop(block_id, None)
                if complete is not None:
                    due = min(due, max(complete, window_opened))
            self._sealed[block_id] = (window_opened, now, due)

    def wal_waited(self, block_id: int, started: float, ended: float) -> None:
        with self._lock:
            self._wal_waits[block_id] = (started, ended)

    def request(self, operation: str, key: str, started: float, ended: float) -> None:
        with self._lock:
            # Blocks are sealed in order, so the first pending seal is the oldest.
            oldest = next(iter(self._sealed.values()), None)
            if oldest is not None and started >= oldest[1]:
                self._requests.append(Request(operation, key, started, ended))

    def uploaded(
        self,
        block_id: int,
        ends: dict[int, int],
        object_keys: Iterable[str],
        version: int,
        committed: float,
        answered: float,
    ) -> None:
        with self._lock:
            window_opened, sealed, due = self._sealed.pop(block_id, (0.0, 0.0, 0.0))
            upload = UploadTimes(
                block_id,
                window_opened,
                sealed,
                due,
                ends,
                frozenset(object_keys),
                version,
                committed,
                answered,
                self._wal_waits.pop(block_id, (0.0, 0.0)),
            )
            version_keys = {delta_key(version), delta_key(version - 1)}
            upload.requests = [
                request
                for request in self._requests
                if (request.key in upload.object_keys or request.key in version_keys)
                and request.operation != "delete"
                and sealed <= request.started
                and request.ended <= committed
            ]
            # A later upload's block was sealed after this one's: what
            # started before this seal can be none of its requests.
            self._requests = [r for r in self._requests if r.started >= sealed]
            self._uploads.append(upload)

    def uploads(self) -> list[UploadTimes]:
        """The uploads so far, in commit order, each with its requests: its
        objects' PUTs and its version's create-if-absent, read-back and
        HEAD of the version before (docs/object-format.md), those made
        between its seal and its commit's end."""
        with self._lock:
            return list(self._uploads)


def ack_waits(uploads: Sequence[UploadTimes], appends: Iterable[Append]) -> list[AckWait]:
    """What each append's acknowledgement waited on; an append no upload
    in ``uploads`` covers (answered at once, or not traced) is left out."""
    waits = []
    for append in appends:
        own = next(
            (
                index
                for index, upload in enumerate(uploads)
                if upload.ends.get(append.stream_id, -1) >= append.end_offset
            ),
            None,
        )
        if own is None:
            continue
        mine = uploads[own]
        waited = [u for u in uploads[: own + 1] if u.answered > append.asked]
        before = [u for u in waited if u is not mine]
        in_flight_left = max((u.answered for u in before), default=append.asked) - append.asked
        spans = [clipped(r.started, r.ended, append) for u in waited for r in u.requests]
        syncs = [clipped(*u.wal_wait, append) for u in waited]
        requests = covered(spans)
        window = mine.sealed - mine.window_opened if mine.window_opened else 0.0
        seal_late = max(0.0, mine.sealed - mine.due) if mine.due else 0.0
        waits.append(
            AckWait(
                latency=append.acknowledged - append.asked,
                uploads_waited=len(waited),
                in_flight_left=in_flight_left,
                window=window,
                seal_late=seal_late,
                requests=requests,
                wal=covered(spans + syncs) - requests,
                hand_back=append.acknowledged - mine.answered,
            )
        )
    return waits


def clipped(start: float, end: float, append: Append) -> tuple[float, float]:
    """The part of ``[start, end)`` within the append's wait."""
    return max(start, append.asked), min(end, append.acknowledged)


def covered(spans: Iterable[tuple[float, float]]) -> float:
    """The length of the union of ``spans`` (empty ones ignored)."""
    total = 0.0
    reach = -float("inf")
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total
