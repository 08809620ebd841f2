"""The write-ahead log: open (with recovery), append, replay, trim, close."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from types import TracebackType
from typing import NamedTuple

from native import FLAT_BUFFER_TYPES, crc32c, crc32c_combine, frame_wal_records
from native.buffers import BytesLike
from wal.closing import Closing
from wal.directory_lock import lock_directory
from wal.errors import LogClosed, PermissionDenied, RecordTooLarge
from wal.format import (
    CRC_FIELD,
    MAX_RECORD_LENGTH,
    MAX_USER_TYPE,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    encode_record_address,
    segment_name,
)
from wal.group_commit import (
    BatchTags,
    CommitHook,
    Durability,
    GroupCommitter,
    Waiter,
    WalStats,
    new_pending_append,
    new_pending_batch,
)
from wal.interrupts import released_contextmanager
from wal.loop_call import CallOnLoop, WalOutcome
from wal.recovery import FREE_PREFIX, RecoveryReport, recover
from wal.segment import (
    Entry,
    FillStopped,
    Position,
    SegmentWriter,
    name_prepared_segment,
    prepare_segment_file,
    scan_segment,
    sync_directory,
    zero_filled_file,
)
from wal.thread_priority import NORMAL, ThreadPriority

stalls = logging.getLogger("tidelog.stalls")
"""Rolls and spares, each at DEBUG with its duration: background work a
latency spike may be laid against (engine/server/loop_lag.py)."""

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
DATA = 1
"""The default record type; types 1-254 are the caller's to define."""


class Append(NamedTuple):
    """One append's description, from the caller to the check that queues
    it: a record of a batch append (``WriteAheadLog.submit_many``), or the
    arguments of ``submit`` gathered once. The fields mean what ``submit``'s
    arguments of the same names mean."""

    payload: BytesLike
    stream_id: int = 0
    start_offset: int = 0
    end_offset: int = 0
    record_type: int = DATA
    tag: object = None
    prefix: bytes = b""
    payload_crc: int | None = None


_TAG = operator.itemgetter(Append._fields.index("tag"))
"""An ``Append``'s tag, read in C over a batch."""


def _byte_view(payload: BytesLike) -> memoryview:
    """The payload as a flat view of its bytes. The writer counts a record's
    bytes with len(), which for a view of wider items (an array's, a 2-D
    one) counts items or rows: the header would state less than is written
    and the next record would land on its tail."""
    view = payload if isinstance(payload, memoryview) else memoryview(payload)
    if view.itemsize == 1 and view.ndim == 1:
        return view
    return view.cast("B")  # TypeError for a view that is not contiguous


class PreparedSegment(NamedTuple):
    """The segment after the active one, made ahead by the spare maker."""

    sequence: int
    path: str
    """Its final name."""
    name_durable: bool
    """Whether the directory was synced since it got that name."""


class WriteAheadLog:
    """A segmented, append-only, crash-safe log in one directory.

    Appends are durable (per ``durability``) when they return; records are
    replayed in append order, exactly once, after any crash.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        durability: Durability | str = Durability.FSYNC,
        sync_interval_ms: float = 10.0,
        preallocate: bool = True,
        recycle_segments: int = 2,
        on_commit: CommitHook | None = None,
        accept_data_loss: bool = False,
        spare_priority: ThreadPriority = NORMAL,
    ) -> None:
        """Opens the log, recovering it first (docs/wal-format.md).

        Damage to acknowledged data raises CorruptSegment and changes nothing;
        with ``accept_data_loss`` the damaged segments are salvaged instead:
        every readable record is kept, and each dropped byte range is logged
        and listed in ``recovery.dropped``.

        ``on_commit``, if given, is called on one of the log's own threads
        (the sync thread or the writer under ``fsync``, else the writer)
        once per group with
        the tags of the group's tagged appends (see ``submit``) and their
        outcomes, before their waiters wake: an owner that keeps
        its own state about appends can update it once per group rather
        than once per append.

        ``spare_priority`` is the priority of the thread that makes spare
        segments (nothing waits for it: a roll without a spare makes its
        segment itself); the writer and sync threads keep their creator's."""
        if segment_bytes < SEGMENT_HEADER_SIZE + 4 * RECORD_HEADER_SIZE:
            raise ValueError(f"segment_bytes {segment_bytes} is too small")
        if not sync_interval_ms >= 0:  # NaN too: the writer's wait could not be timed
            raise ValueError(f"sync_interval_ms {sync_interval_ms} is not a duration")
        self.directory = os.fspath(directory)
        self.segment_bytes = segment_bytes
        self._preallocate = preallocate
        self._recycle_segments = recycle_segments
        self._segments_lock = threading.Lock()
        self._closed = False
        self._closing = Closing("WriteAheadLog")
        self._spare_maker: threading.Thread | None = None
        self._spare_priority = spare_priority
        self._spares_made = 0
        self._prepared: PreparedSegment | None = None
        """The next segment, made ready by ``_make_spare``."""
        self._claimed = 0
        """The highest sequence a create took: the spare maker names only
        the one after it, so a roll never makes a segment that is named."""
        self._lock = lock_directory(self.directory)
        try:
            recovered = recover(self.directory, accept_data_loss=accept_data_loss)
            self.recovery: RecoveryReport = recovered.report
            self._sequences = recovered.sequences
            self._free_files = recovered.free_files
            first = self._create_segment(self._sequences[-1] + 1 if self._sequences else 1)
        except PermissionError as error:
            self._lock.release()
            raise PermissionDenied(error.filename or self.directory, str(error)) from error
        except BaseException:
            self._lock.release()
            raise
        # Room for the seal is reserved so a full segment can always be ended.
        limit = segment_bytes - RECORD_HEADER_SIZE
        # A segment above 4 GiB could hold a payload its header's length
        # field cannot state: refused here, on the appender's thread, not
        # found by the writer (which would fail the log) or cut short.
        self._max_payload = min(limit - SEGMENT_HEADER_SIZE - RECORD_HEADER_SIZE, MAX_RECORD_LENGTH)
        self._committer = GroupCommitter(
            first,
            self._roll,
            limit,
            Durability(durability),
            sync_interval_ms / 1000.0,
            on_commit,
        )
        # No spare yet: it is made at the first trim or roll (see _make_spare).

    @property
    def max_payload(self) -> int:
        """The largest payload (prefix included) one record takes: one
        segment less its header, the record's header and the seal's room.
        Larger ones are refused (RecordTooLarge) before anything is queued."""
        return self._max_payload

    @property
    def stats(self) -> WalStats:
        return self._committer.stats

    # -- appending ------------------------------------------------------

    def submit(
        self,
        payload: BytesLike,
        *,
        stream_id: int = 0,
        start_offset: int = 0,
        end_offset: int = 0,
        record_type: int = DATA,
        tag: object = None,
        prefix: bytes = b"",
        payload_crc: int | None = None,
    ) -> Future[Position]:
        """Queues an append; the future resolves to its position once durable.

        The payload is written as given, without a copy: a bytearray must not
        change until the future is done. A ``tag`` other than None is passed
        to the log's ``on_commit`` hook with the append's outcome. The
        record holds ``prefix`` then ``payload``, written one after the other
        rather than joined (a small header of the caller's before a large
        payload costs no copy of the payload).

        ``payload_crc`` is the payload's CRC32C when the caller has it
        already (``native.crc32c_batches`` of checked record batches reads
        only their headers): the record's CRC is then combined from it, and
        the payload is not read here. A wrong one makes a record that
        recovery refuses as damaged.
        """
        future: Future[Position] = Future()
        future.set_running_or_notify_cancel()  # an append cannot be taken back
        append = Append(
            payload, stream_id, start_offset, end_offset, record_type, tag, prefix, payload_crc
        )
        self.submit_to(future, *append)
        return future

    def append(
        self,
        payload: BytesLike,
        *,
        stream_id: int = 0,
        start_offset: int = 0,
        end_offset: int = 0,
        record_type: int = DATA,
        tag: object = None,
    ) -> Position:
        """Appends and returns the record's position once it is durable."""
        return self.submit(
            payload,
            stream_id=stream_id,
            start_offset=start_offset,
            end_offset=end_offset,
            record_type=record_type,
            tag=tag,
        ).result()

    def append_async(
        self,
        payload: BytesLike,
        *,
        stream_id: int = 0,
        start_offset: int = 0,
        end_offset: int = 0,
        record_type: int = DATA,
        tag: object = None,
    ) -> asyncio.Future[Position]:
        """Like append, for asyncio: queues the append at the call and
        returns the asyncio future of its position, for the caller to await
        without blocking the event loop.

        Cancelling the future (or the task awaiting it) stops the wait, not
        the append. A future rather than a coroutine: a coroutine's frame,
        made, started and finished around the future it awaited, was the
        loop's work per append for nothing (docs/design/0104).
        """
        # Queued through submit_to rather than submit_async: handing the keywords
        # on costs a call per append, a few percent of an append's CPU.
        waiter: asyncio.Future[Position] = asyncio.get_running_loop().create_future()
        self.submit_to(waiter, payload, stream_id, start_offset, end_offset, record_type, tag)
        return waiter

    def submit_async(
        self,
        payload: BytesLike,
        *,
        stream_id: int = 0,
        start_offset: int = 0,
        end_offset: int = 0,
        record_type: int = DATA,
        tag: object = None,
        prefix: bytes = b"",
        payload_crc: int | None = None,
    ) -> asyncio.Future[Position]:
        """Queues an append from a running event loop; the returned asyncio
        future resolves to its position once durable.

        Cancelling the future stops the wait, not the append. ``tag``,
        ``prefix`` and ``payload_crc`` are as for ``submit``.
        """
        waiter: asyncio.Future[Position] = asyncio.get_running_loop().create_future()
        self.submit_to(
            waiter,
            payload,
            stream_id,
            start_offset,
            end_offset,
            record_type,
            tag,
            prefix,
            payload_crc,
        )
        return waiter

    def submit_then(
        self,
        then: Callable[[WalOutcome], None],
        payload: BytesLike,
        *,
        stream_id: int = 0,
        start_offset: int = 0,
        end_offset: int = 0,
        record_type: int = DATA,
        tag: object = None,
        prefix: bytes = b"",
        payload_crc: int | None = None,
    ) -> None:
        """Queues an append from a running event loop, as ``submit_async``,
        and calls ``then`` on that loop with its position once it is durable
        (or with the WalError that failed it), in place of a future: no
        future to wake and no task awaiting it. ``then`` runs on the loop,
        never before this returns; an exception it raises goes to the
        loop's exception handler."""
        # Through submit_to, a frame more: the server's appends go to
        # submit_to with a LoopCall of their own, none through here.
        self.submit_to(
            CallOnLoop(asyncio.get_running_loop(), then),
            payload,
            stream_id=stream_id,
            start_offset=start_offset,
            end_offset=end_offset,
            record_type=record_type,
            tag=tag,
            prefix=prefix,
            payload_crc=payload_crc,
        )

    def submit_to(
        self,
        waiter: Waiter,
        payload: BytesLike,
        stream_id: int = 0,
        start_offset: int = 0,
        end_offset: int = 0,
        record_type: int = DATA,
        tag: object = None,
        prefix: bytes = b"",
        payload_crc: int | None = None,
    ) -> None:
        """Queues an append whose waiter the caller made, settled as the
        others' are: a concurrent future, set running (``submit``'s), an
        asyncio future of the running loop (``submit_async``'s), or a
        LoopCall of the running loop, the caller's own subclass, whose
        ``durable`` runs on that loop once the append is durable (or
        failed), never before this returns. For a caller with its own
        waiter or state to carry to that moment: no future, partial or
        bound method is made for it, and the caller's call is a plain one
        (the server's every Produce).

        Every append is queued here: it checks the append, computes its
        payload's CRC (on the caller's thread) or combines it from the one
        the caller gave, and queues it. It takes the fields one by one, and
        positionally too (an ``Append``'s, unpacked): the server's appends
        then build no ``Append`` only to take it apart again, match no
        keywords, and make one call here, where a second frame checked and
        queued."""
        if not 1 <= record_type <= MAX_USER_TYPE:
            raise ValueError(f"record_type {record_type} is not in 1..{MAX_USER_TYPE}")
        if type(payload) not in FLAT_BUFFER_TYPES:  # a stored payload's ByteSlice as it is
            payload = _byte_view(payload)
        length = len(prefix) + len(payload)
        if length > self._max_payload:
            raise RecordTooLarge(length, self._max_payload)
        if payload_crc is None:
            crc = crc32c(payload, crc32c(prefix)) if prefix else crc32c(payload)
        elif prefix:
            crc = crc32c_combine(crc32c(prefix), payload_crc, len(payload))
        else:
            crc = payload_crc
        try:
            # Packed once, here: the writer puts these bytes in the header.
            address = encode_record_address(stream_id, start_offset, end_offset)
            if payload_crc is not None:  # one computed here always fits
                CRC_FIELD.pack(crc)
        except struct.error:
            # Found by the writer, it would stop the log's only writer thread
            # and leave every append after it unanswered. The batch framer's
            # checks name the field at fault and raise what submit_many does.
            fields = Append(b"", stream_id, start_offset, end_offset, record_type, None)
            frame_wal_records([fields._replace(payload_crc=payload_crc)], 0)
            raise  # not reached: the framer refuses whatever struct does
        self._committer.submit(
            new_pending_append((waiter, record_type, address, payload, crc, length, tag, prefix))
        )

    # -- appending many at once -----------------------------------------

    @released_contextmanager
    def gathered(self) -> Iterator[None]:
        """Appends made inside the block (from any thread) share one group:
        the writer waits for the block to end before it takes the queue, but
        never longer than HOLD_LIMIT_S (5 ms) from the block's start.

        For callers that make several appends one by one that belong
        together (a produce request for many partitions): each is queued at
        once, in order with everyone else's, so only the writer waits.
        Appends whose records are all at hand use ``submit_many`` instead.
        The hold is given back through a second Ctrl-C too
        (wal/interrupts.py): left counted, every group would wait its limit.
        """
        self._committer.hold()
        try:
            yield
        finally:
            self._committer.release()

    def submit_many(self, appends: Iterable[Append]) -> Future[list[Position]]:
        """Queues many appends in one call; one future resolves to their
        positions, in the order given, once every one of them is durable.

        The records are queued together, so they are written back to back in
        one group and made durable by one sync; if that group fails, the
        future fails with its error and none of them is acknowledged. Every
        append is checked before any is queued: a bad one (a reserved type,
        a payload too large) raises and queues nothing. Tags go to the
        ``on_commit`` hook one by one, as for ``submit``.

        The records are copied into one buffer before this returns (one
        native call checks them, computes their CRCs and lays them out), so
        a bytearray payload may change as soon as the call returns.
        """
        future: Future[list[Position]] = Future()
        future.set_running_or_notify_cancel()  # appends cannot be taken back
        self._enqueue_many(future, appends)
        return future

    def append_many(self, appends: Iterable[Append]) -> list[Position]:
        """Appends many and returns their positions once all are durable."""
        return self.submit_many(appends).result()

    def submit_many_async(self, appends: Iterable[Append]) -> asyncio.Future[list[Position]]:
        """``submit_many`` from a running event loop: the asyncio future
        resolves to the positions once all are durable. Cancelling it stops
        the wait, not the appends."""
        waiter: asyncio.Future[list[Position]] = asyncio.get_running_loop().create_future()
        self._enqueue_many(waiter, appends)
        return waiter

    async def append_many_async(self, appends: Iterable[Append]) -> list[Position]:
        """Like append_many, for asyncio: waits without blocking the event loop."""
        return await self.submit_many_async(appends)

    def _enqueue_many(
        self,
        waiter: Future[list[Position]] | asyncio.Future[list[Position]],
        appends: Iterable[Append],
    ) -> None:
        batch = list(appends)
        # One C call checks and lays out every record (the writer only stamps
        # their segment): no Python object, CRC call or header per record.
        frame = frame_wal_records(batch, self._max_payload)
        if isinstance(frame, int):
            raise RecordTooLarge(frame, self._max_payload)
        if not batch:
            waiter.set_result([])
            return
        tags = list(map(_TAG, batch))  # no Python frame per record
        untagged = tags.count(None) == len(tags)
        self._committer.submit_batch(
            new_pending_batch((waiter, frame, len(batch), None if untagged else BatchTags(tags)))
        )

    # -- reading --------------------------------------------------------

    def replay(self, start: Position | None = None) -> Iterator[Entry]:
        """Every record at or after ``start``, in append order.

        Meant for rebuilding state after open; records still being written
        by a concurrent append are not returned.
        """
        with self._segments_lock:
            sequences = list(self._sequences)
        for sequence in sequences:
            if start is not None and sequence < start.segment:
                continue
            path = os.path.join(self.directory, segment_name(sequence))
            scan = scan_segment(path, sequence)
            if scan is None:
                continue
            for entry in scan.entries:
                if start is None or entry.position >= start:
                    yield entry

    @property
    def segments(self) -> list[int]:
        """Sequences of the segments on disk, oldest first."""
        with self._segments_lock:
            return list(self._sequences)

    # -- trimming -------------------------------------------------------

    def trim(self, position: Position) -> int:
        """Drops every segment wholly before ``position``; returns how many.

        The active segment is never dropped. Dropped files are kept for reuse
        (up to ``recycle_segments``) or deleted.
        """
        if self._closed:
            raise LogClosed
        active = self._committer.active_segment
        with self._segments_lock:
            doomed = [s for s in self._sequences if s < position.segment and s < active]
            for sequence in doomed:
                path = os.path.join(self.directory, segment_name(sequence))
                if (
                    len(self._free_files) < self._recycle_segments
                    and os.path.getsize(path) >= self.segment_bytes - RECORD_HEADER_SIZE
                ):
                    free = os.path.join(self.directory, f"{FREE_PREFIX}{sequence:020d}.wal")
                    os.rename(path, free)
                    self._free_files.append(free)
                else:
                    os.unlink(path)
                self._sequences.remove(sequence)
        if doomed:
            sync_directory(self.directory)
        self._make_spare()
        return len(doomed)

    # -- segments -------------------------------------------------------

    def _create_segment(self, sequence: int) -> SegmentWriter:
        with self._segments_lock:
            self._claimed = sequence
            prepared, self._prepared = self._prepared, None
            if prepared is not None and prepared.sequence != sequence:
                self._free_files.append(self._unprepare(prepared.path))
                prepared = None
            reuse = None
            if prepared is None and self._free_files:
                reuse = self._free_files.pop(0)
        if prepared is not None and not prepared.name_durable:
            sync_directory(self.directory)  # the spare maker's own sync is still running
        segment = SegmentWriter.create(
            self.directory,
            sequence,
            self.segment_bytes,
            self._preallocate,
            reuse,
            prepared=None if prepared is None else prepared.path,
        )
        with self._segments_lock:
            self._sequences.append(sequence)
        return segment

    def _roll(self, segment: SegmentWriter) -> SegmentWriter:
        """Seals the full segment and opens the next (on the writer thread).

        Into a prepared segment the roll writes only the seal, and syncs
        once: the next segment's header and name are already durable
        (``_prepare_next``)."""
        started = time.monotonic()
        with self._segments_lock:
            prepared = self._prepared is not None
        segment.seal_full()
        segment.close()
        following = self._create_segment(segment.sequence + 1)
        self._make_spare()
        stalls.debug(
            "WAL rolled into segment %d in %.1f ms (%s)",
            following.sequence,
            (time.monotonic() - started) * 1000,
            "prepared" if prepared else "made by the roll",
        )
        return following

    def _make_spare(self) -> None:
        """Prepares the segment after the active one in the background: a
        free file (a trimmed segment, or a spare zero-filled now) renamed to
        the next segment's temporary name, its header written and synced.

        Rolling into it then costs the writer a rename and a directory sync;
        into a free file, a header write and a sync more; with neither, the
        next segment is fallocate'd, which works but syncs slower. The first
        spare is made at the first trim (after the owner's first upload) or
        roll, not at open: its megabytes of zeros, written and synced while
        the owner opened, delayed each of the open's own syncs (an engine's
        open took twice as long).
        """
        with self._segments_lock:
            busy = self._spare_maker is not None and self._spare_maker.is_alive()
            if not self._preallocate or busy or self._closed or self._prepared is not None:
                return
            following = self._claimed + 1
            # Started by a trim or a roll (the writer): its priority is set
            # from the opener's, not inherited from the writer's.
            self._spare_maker = self._spare_priority.thread(
                self._prepare_next, "wal-spare", (following,)
            )
            self._spare_maker.start()

    def _prepare_next(self, sequence: int) -> None:
        with self._segments_lock:
            source = self._free_files.pop(0) if self._free_files else None
            self._spares_made += 1
            name = f"{FREE_PREFIX}spare-{os.getpid()}-{self._spares_made}.wal"
        started = time.monotonic()
        zero_filled = source is None
        try:
            if source is None:
                source = zero_filled_file(
                    self.directory, self.segment_bytes, name, stopped=self._closing_now
                )
            temporary = prepare_segment_file(self.directory, sequence, source)
            final = self._name_prepared(sequence, temporary)
            if final is None:
                return
            sync_directory(self.directory)
        except FillStopped:
            return  # the log closed: it will never roll into this segment
        except OSError:
            return  # only an optimisation: the next roll makes its segment itself
        with self._segments_lock:
            if self._prepared is not None and self._prepared.path == final:
                self._prepared = self._prepared._replace(name_durable=True)
        stalls.debug(
            "WAL spare for segment %d made in %.1f ms (%s)",
            sequence,
            (time.monotonic() - started) * 1000,
            "zero-filled" if zero_filled else "a free file",
        )

    def _closing_now(self) -> bool:
        """Whether close has begun: it is set first thing there, under the
        lock, and read between the spare's chunks without it (one bool)."""
        return self._closed

    def _name_prepared(self, sequence: int, temporary: str) -> str | None:
        """Gives the prepared file its final name, unless a roll or the close
        came first: then it waits as a free file (or, if even that fails,
        the next open deletes it). Renamed under the lock, so no roll claims
        the sequence meanwhile."""
        with self._segments_lock:
            if self._claimed == sequence - 1 and not self._closed:
                final = name_prepared_segment(temporary)
                self._prepared = PreparedSegment(sequence, final, name_durable=False)
                return final
            with contextlib.suppress(OSError):
                self._free_files.append(self._unprepare(temporary))
            return None

    def _unprepare(self, prepared: str) -> str:
        """Gives a prepared file a free file's name again (under the lock)."""
        self._spares_made += 1
        free = os.path.join(
            self.directory, f"{FREE_PREFIX}spare-{os.getpid()}-{self._spares_made}.wal"
        )
        os.rename(prepared, free)
        return free

    # -- lifecycle ------------------------------------------------------

    def close(self) -> None:
        """Writes and syncs everything queued, then releases the directory:
        the lock is given back last, once nothing of the log runs. A close
        cut short is finished by the next call (wal/closing.py)."""
        if self._closing.finished:
            return
        with self._segments_lock:
            self._closed = True
        self._closing.step("committer", self._committer.close)
        self._closing.step("spare maker", self._join_spare_maker)
        self._closing.step("prepared segment", self._keep_prepared_as_free, atomic=True)
        self._closing.step("directory lock", self._unlock, atomic=True)
        self._closing.finish()

    def _join_spare_maker(self) -> None:
        with self._segments_lock:
            spare_maker = self._spare_maker
        if spare_maker is not None:
            spare_maker.join()

    def _keep_prepared_as_free(self) -> None:
        """The segment made ahead is kept for the next open as a free file."""
        with self._segments_lock:
            prepared, self._prepared = self._prepared, None
            if prepared is not None:
                self._unprepare(prepared.path)

    def _unlock(self) -> None:
        # Run again, or in a child forked from this process, it closes
        # nothing (wal/directory_lock.py).
        self._lock.release()

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
