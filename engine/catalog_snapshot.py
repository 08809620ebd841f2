"""Sending a catalog snapshot's records to the store, and where it runs.

A snapshot's records (one ``snapshot`` record, or the opening record of a
snapshot in parts and its parts: docs/engine-format.md) are submitted
back to back in one WAL group, so that they share its syncs instead of
waiting for one each. The catalog submits them under the locks that order
its changes and its appends, so nothing comes between them, and waits for
the last window of them with both released. What is in flight is bounded
(``IN_FLIGHT_BYTES``): past it, the records already submitted are waited
for before the next are.

A snapshot is never written on a thread that runs an event loop: a write
made there (a producer id's block, from InitProducerId) hands it to the
catalog's own worker, as the packing and the parts of a large catalog
would hold the loop, and every connection's requests behind it, for the
whole snapshot. Nor is one written by a producer id's block on any
thread: a transactional producer's id is taken under the transaction
coordinator's lock, which the loop takes too (Catalog.allocate_producer_id).

A write made off the loop pays for the snapshot it made due, but never
under a lock the loop takes: within ``waited_after`` (opened by the admin
thread's request, and by topic administration before it takes the
engine's lock) the snapshot goes to the worker too, and is waited for
when the outermost ``waited_after`` ends, every lock taken inside it
released (docs/design/0122).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import TYPE_CHECKING

from s3stream import UNPACED, S3StreamError

if TYPE_CHECKING:
    from s3stream import StreamStore

IN_FLIGHT_BYTES = 128 * 1024 * 1024
"""The bytes of a snapshot's records submitted and not yet durable, at
most (one record more than this when a record alone is larger). The WAL
writes a record from its own bytes (no copy), so this bounds the group
the WAL writes in one go, which others' appends queue behind, rather
than memory: the records are the parts the snapshot holds already, about
the state's bytes (docs/design/0110)."""


class SnapshotAbandoned(Exception):
    """A record of a snapshot was refused or failed: the snapshot is
    abandoned (not trimmed to; a reader skips its parts) and the log
    before it is whole."""

    def __init__(self, index: int, count: int, cause: BaseException) -> None:
        super().__init__(
            f"the catalog's snapshot was abandoned at its record {index} of {count}: {cause}"
        )
        self.index = index
        self.count = count
        self.cause = cause


def on_event_loop() -> bool:
    """Whether this thread is running an event loop (the server's)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _Owed(threading.local):
    """This thread's ``waited_after`` scopes open, and the snapshots its
    writes made due inside them, not yet waited for."""

    def __init__(self) -> None:
        self.depth = 0
        self.snapshots: list[Future[None]] = []


_owed = _Owed()


@contextmanager
def waited_after() -> Iterator[None]:
    """A snapshot made due by a catalog write inside this block is written
    on the catalog's worker and waited for as the outermost such block
    ends: open it before taking any lock the event loop takes, so the loop
    never waits for the snapshot, while the writer still pays for it."""
    _owed.depth += 1
    try:
        yield
    finally:
        _owed.depth -= 1
        if _owed.depth == 0:
            owed, _owed.snapshots = _owed.snapshots, []
            for snapshot in owed:
                # Never raises: the worker logs a snapshot's failure, and
                # the snapshot is tried again at the next write.
                snapshot.result()


def deferring() -> bool:
    """Whether this thread is inside ``waited_after``."""
    return _owed.depth > 0


def owe(snapshot: Future[None]) -> None:
    """Waits for ``snapshot`` as this thread's outermost ``waited_after`` ends."""
    _owed.snapshots.append(snapshot)


class Sent:
    """A snapshot's records, all submitted: ``wait`` for them to be durable."""

    def __init__(self, first: int, futures: list[Future[int]], done: int, size: int) -> None:
        self.first = first
        """The offset of the snapshot's first record."""
        self.count = len(futures)
        self.size = size
        """The bytes of its records."""
        self._futures = futures
        self._done = done
        """How many of the futures, from the first, were waited for already."""

    def wait(self) -> int:
        """The stream's end past the last record once every one is durable
        (the offset the writer expects is ``first + count``);
        SnapshotAbandoned naming the first that was not."""
        for index in range(self._done, self.count):
            _durable(self._futures, index, self.count)
        return self._futures[-1].result()


def send(store: StreamStore, stream_id: int, records: Sequence[bytes]) -> Sent:
    """Submits ``records`` at the stream's next offsets, in order, in WAL
    groups of at most IN_FLIGHT_BYTES, waiting for a group's records before
    the next group is submitted. Each is UNPACED (as a change record, it is
    written under a lock the event loop takes, so it never waits for room,
    and is refused past the headroom). A record refused (at its submit) or
    failed raises SnapshotAbandoned naming it, once the records submitted
    before it are settled (durable or failed); none after it is submitted."""
    futures: list[Future[int]] = []
    first = store.next_offset(stream_id)
    done = 0
    while done < len(records):
        window = _window(records, done)
        refused: S3StreamError | None = None
        with store.gathered():
            for record in records[done : done + window]:
                offset = store.next_offset(stream_id)
                try:
                    futures.append(store.submit(stream_id, offset, offset, record, UNPACED))
                except S3StreamError as error:
                    refused = error
                    break
        if refused is not None or done + window < len(records):
            # Settled before the next group (or the report): a record that
            # failed, and so the WAL with it, is the one abandoned at.
            for index in range(done, len(futures)):
                _durable(futures, index, len(records))
        if refused is not None:
            raise SnapshotAbandoned(len(futures), len(records), refused) from refused
        done += window
    return Sent(first, futures, done - window, sum(map(len, records)))


def _window(records: Sequence[bytes], start: int) -> int:
    """How many records from ``start`` make the next group: at least one."""
    size = len(records[start])
    end = start + 1
    while end < len(records) and size + len(records[end]) <= IN_FLIGHT_BYTES:
        size += len(records[end])
        end += 1
    return end - start


def _durable(futures: list[Future[int]], index: int, count: int) -> None:
    try:
        futures[index].result()
    except S3StreamError as error:
        raise SnapshotAbandoned(index, count, error) from error
