"""Appends and trims of the stream store: each is checked and added to the
log cache under the store's lock, then written to the WAL with this
opening's writer prefix; the WAL's commit hook moves each stream's durable
end (what readers see) and tells the listeners. An append asking to be
remotely durable also waits on the uploader. Appends wait for room when
too much is not uploaded yet."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import cast

from s3stream.append_options import AppendOptions, Pacing
from s3stream.config import StreamStoreConfig
from s3stream.errors import (
    AppendTooLarge,
    Fenced,
    NoRoom,
    OffsetMismatch,
    OffsetOutOfRange,
    StoreClosed,
    StoreFailed,
    StreamNotFound,
    StreamNotOpen,
)
from s3stream.log_cache import CacheBlock
from s3stream.loop_handoff import LoopHandoff
from s3stream.objects import StoredBatch
from s3stream.store_state import StoreState, StreamState, fail_all
from s3stream.uploader import Uploader
from s3stream.wal_entries import WAL_OWNED_DATA, WAL_OWNED_TRIM
from wal import LoopCall, Outcome, Position, Waiter, WalError, WalOutcome, WriteAheadLog

log = logging.getLogger("tidelog.s3stream")

_WAIT = Pacing.WAIT
_NEVER = Pacing.NEVER
"""Pacing's members, read once: an Enum class's attribute is looked up
through its metaclass's __getattr__ hook, some 900 instructions a read,
and every append reads one or two."""

_WalTag = tuple["StreamState | None", CacheBlock, int]
"""What the WAL's commit hook is given for each append: the stream (None for
a trim), the log cache block holding the append, and the stream's end after it."""


class Appender:
    def __init__(
        self,
        state: StoreState,
        wal: WriteAheadLog,
        wal_prefix: bytes,
        uploader: Uploader,
        config: StreamStoreConfig,
    ) -> None:
        self._state = state
        self._wal = wal
        self._wal_prefix = wal_prefix
        """Every WAL entry of this opening starts with it (the writer's identity and epoch)."""
        self._uploader = uploader
        self._config = config
        self.max_append_bytes = wal.max_payload - len(wal_prefix)
        """The largest payload one append takes: a WAL record's, less the
        writer prefix every entry of this opening starts with."""
        self._listeners: list[Callable[[set[int]], None]] = []
        self._room_waits = ThreadPoolExecutor(1, thread_name_prefix="tidelog-room-wait")
        """Where async appends over the unuploaded bound wait for room, one
        after another: never the loop's default executor, whose few threads
        an outage would fill with waits (stalling whatever else the loop
        runs there, a close made through it included). One thread is
        enough: room is the whole store's, so once there is some, each
        queued wait ends at once, in the order the appends came."""
        self._handoff: LoopHandoff | None = None
        """Hands remote acknowledgements to the loop of the last async append."""

    def handoff(self, loop: asyncio.AbstractEventLoop) -> LoopHandoff:
        """The handoff to ``loop``: one per loop while appends come from one
        (a store serves one loop); a new one when another loop appends, so
        that only appends of one loop share its wake-ups."""
        handoff = self._handoff
        if handoff is None or handoff.loop is not loop:
            handoff = self._handoff = LoopHandoff(loop)
        return handoff

    def submit(self, stream_id: int, batch: StoredBatch, options: AppendOptions) -> Future[int]:
        """Queues an append of ``batch`` (StreamStore.submit); the future
        resolves to the stream's new end offset once the append is durable:
        in the WAL, and with ``options.remote`` also in an object committed
        to the manifest. Once the store learns it is fenced, it fails
        instead. ``options.pacing`` says how it meets the unuploaded bound
        (``Pacing``): a wait for room once accepted, the caller's own wait
        after its locks are released, or none and a refusal (NoRoom) past
        the headroom."""
        done: Future[int] = Future()
        done.set_running_or_notify_cancel()
        end = batch.end_offset
        future: Future[Position] = Future()
        future.set_running_or_notify_cancel()  # an append cannot be taken back
        uploaded = self._append(future, stream_id, batch, options)

        def durable(wal_future: Future[Position]) -> None:
            error = wal_future.exception()
            if error is not None:
                done.set_exception(StoreFailed(error))
            elif isinstance(self._state.failure, Fenced):
                done.set_exception(self._state.failure)  # a fenced writer acknowledges nothing
            elif uploaded is None:
                done.set_result(end)
            else:
                uploaded.add_done_callback(lambda f: _copy_outcome(f, done))

        future.add_done_callback(durable)
        if options.pacing is _WAIT:
            self._wait_for_room()  # after accepting: the caller's offsets stay valid
        return done

    def submit_then(
        self,
        call: DurableCall,
        stream_id: int,
        batch: StoredBatch,
        options: AppendOptions,
    ) -> None:
        """submit for a caller on the running loop that only wants a call
        once the append is durable: ``call.settle(None)`` on the loop once
        it is (as submit, after the wait for room ``options.pacing`` asks
        for), ``call.settle(error)`` if it failed, and never before this
        returns. No future or task is made for it (the server's hot path).
        Refusals raise here, as submit's do."""
        # The caller's own object is the WAL's waiter (a LoopCall), handed
        # to the WAL by _append as submit's future is: no object of the
        # store's is made between the WAL and the caller, and its settle is
        # a method call, not a call of an object through its __call__.
        # Its fields set here, not by an __init__: a caller's subclass
        # makes it with its own, and a Python __init__ per layer is a frame
        # entered from C (slot_tp_init) an append. RuntimeError off a
        # running loop, as the WAL's submit_then raises it.
        call._loop = asyncio.get_running_loop()
        call._appender = self
        call._waits_for_room = options[1] is _WAIT  # by position: see _append
        call._handoff = None
        call.uploaded = None
        uploaded = self._append(call, stream_id, batch, options)
        if uploaded is not None:
            call.wait_remote(uploaded)

    def _append(
        self,
        waiter: Waiter,
        stream_id: int,
        batch: StoredBatch,
        options: AppendOptions,
    ) -> Future[int] | None:
        """Accepts the append and hands it to the WAL with its ``waiter``
        (submit's future, or submit_then's DurableCall) under the store's
        lock, so appends reach the WAL in offset order; returns, for
        ``remote``, the future settled once the append is in a committed
        object."""
        # Unpacked once: on 3.11 a NamedTuple field read by name is a call
        # of its descriptor, and an append read eight of them.
        base, end, payload, crc = batch
        remote, pacing = options
        size = len(payload)
        if size > self.max_append_bytes:
            # Refused here, before the log cache or the stream's next offset
            # hear of it: the WAL would refuse it only after both took it,
            # and its refusal would fail the whole store.
            raise AppendTooLarge(stream_id, size, self.max_append_bytes)
        with self._state.lock:
            if pacing is _NEVER:
                self._check_headroom_locked(stream_id)
            stream, block = self._accept(stream_id, batch, base, end)
            try:
                # By position: a keyword call matches each name, once an append.
                self._wal.submit_to(
                    waiter,
                    payload,
                    stream_id,
                    base,  # start_offset
                    end,  # end_offset
                    WAL_OWNED_DATA,  # record_type
                    (stream, block, end),  # tag
                    self._wal_prefix,  # prefix: written before the payload, never joined to it
                    crc,  # payload_crc
                )
            except WalError as error:
                # The WAL failed before the store heard of it: its commit
                # hook tells it only after the failure is set, and a failed
                # sync of an idle interval reaches no hook at all.
                failed = self._wal_failed_locked(error)
            else:
                return self._uploader.wait_remote_locked(stream_id, end) if remote else None
        fail_all(failed, StoreFailed(cast(BaseException, self._state.failure)))
        raise self._state.failure_error()

    def _check_headroom_locked(self, stream_id: int) -> None:
        """Refuses an append that never waits for room once the unuploaded
        bytes pass the bound by the headroom. Checked before the append, so
        one record may take the total past the limit by its own size: the
        limit bounds how much the refusals let in, not one record."""
        limit = self._config.max_unuploaded_bytes + self._config.unpaced_headroom_bytes
        unuploaded = self._state.cache.unuploaded_bytes
        if unuploaded > limit:
            self._state.check_usable()  # a closed or failed store says so first
            raise NoRoom(stream_id, unuploaded, limit)

    def _accept(
        self, stream_id: int, batch: StoredBatch, base: int, end: int
    ) -> tuple[StreamState, CacheBlock]:
        """Checks an append and adds it to the log cache (under the lock);
        the batch's ``crc`` stays with it for its upload. ``base`` and
        ``end``: its offsets, as _append unpacked them."""
        state = self._state
        # check_usable and stream_locked written out: two calls an append,
        # each for a check that passes.
        if state.closed or state.failure is not None:
            state.check_usable()
        stream = state.streams.get(stream_id)
        if stream is None:
            raise StreamNotFound(stream_id)
        if not stream.opened:
            raise StreamNotOpen(stream_id)
        if base != stream.next_offset:
            raise OffsetMismatch(stream_id, stream.next_offset, base)
        if end <= base:
            raise ValueError(f"last offset {end - 1} < base offset {base}")
        active = self._state.cache.active
        was_empty = not active.counts and not active.trims  # CacheBlock.empty, without its call
        block = self._state.cache.add(stream_id, batch)
        block.unconfirmed += 1
        if was_empty:
            self._state.changed.notify_all()  # starts the uploader's age clock
        stream.next_offset = end
        if self._state.cache.active.size >= self._config.upload_bytes:
            self._uploader.seal_locked()
        return stream, block

    def on_wal_commit(self, tags: list[object], outcomes: list[Outcome]) -> None:
        """The WAL's commit hook: one group's appends and trims are durable
        (or failed). Runs on the WAL's writer thread before any of their
        callers wake, so a caller sees its own append in ``end_offset``."""
        grown: set[int] = set()
        failed: list[Future[int]] = []
        with self._state.lock:
            for tag, outcome in zip(tags, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    failed += self._wal_failed_locked(outcome)
                    stream = cast(_WalTag, tag)[0]
                    if stream is not None:  # told, so that who waits on it stops
                        grown.add(stream.stream_id)
                    continue
                stream, block, end = cast(_WalTag, tag)
                block.confirm(outcome)
                if stream is not None and end > stream.end_offset:
                    stream.end_offset = end
                    grown.add(stream.stream_id)
                if block.ready:
                    self._state.changed.notify_all()
        if failed:
            fail_all(failed, StoreFailed(cast(BaseException, self._state.failure)))
        for listener in self._listeners if grown else ():
            try:
                listener(grown)
            except Exception:
                log.exception("a durable-append listener failed")

    def _wal_failed_locked(self, error: BaseException) -> list[Future[int]]:
        """The store stops on the WAL's failure (the first failure stays);
        returns the remote waiters to fail, outside the lock."""
        if self._state.failure is None:
            self._state.failure = error
        self._state.changed.notify_all()
        return self._uploader.take_waiters_locked()

    def add_listener(self, listener: Callable[[set[int]], None]) -> None:
        """Calls ``listener`` with the ids of the streams whose end offset grew
        (or whose appends the WAL failed), once per WAL group commit, on the
        WAL's writer thread (so it must be quick: wake waiters, never block)."""
        self._listeners.append(listener)

    def close(self) -> None:
        """Ends the room waits; after the store is marked closed, so that
        every queued wait ends (StoreClosed) rather than waits."""
        self._room_waits.shutdown(wait=True)

    def wait_for_room(self) -> None:
        """Waits while more than ``max_unuploaded_bytes`` is not uploaded
        (the object store slow or down): back-pressure on writers."""
        self._wait_for_room()

    def _wait_for_room(self) -> None:
        with self._state.lock:
            while self._state.cache.unuploaded_bytes > self._config.max_unuploaded_bytes:
                self._state.check_usable()
                self._state.changed.wait(0.5)

    def trim(self, stream_id: int, start_offset: int) -> None:
        """Moves the stream's start to ``start_offset``; durable on return."""
        with self._state.lock:
            self._state.check_usable()
            stream = self._state.stream_locked(stream_id)
            if start_offset > stream.end_offset:
                raise OffsetOutOfRange(
                    stream_id, start_offset, stream.start_offset, stream.end_offset
                )
            if start_offset <= stream.start_offset:
                return
            stream.start_offset = start_offset
            block = self._state.cache.add_trim(stream_id, start_offset)
            block.unconfirmed += 1
            future = self._wal.submit(
                self._wal_prefix,
                stream_id=stream_id,
                start_offset=start_offset,
                record_type=WAL_OWNED_TRIM,
                tag=(None, block, 0),
            )
        try:
            future.result()
        except WalError as error:
            raise StoreFailed(error) from error


def _copy_outcome(source: Future[int], target: Future[int]) -> None:
    error = source.exception()
    if error is None:
        target.set_result(source.result())
    else:
        target.set_exception(error)


class DurableCall(LoopCall):
    """The caller's own object an append made by ``submit_then`` is
    settled through, subclassed by the caller with the state it carries to
    that moment (the engine's AppendSettle, the Produce handler's answer):
    one object an append between the handler and the WAL, where each layer
    made its own and called the next's (docs/design/0159).

    What follows the append's WAL commit runs here, as plain calls on the
    loop in the order submit's callbacks check them: the WAL's outcome,
    the fence, with ``uploaded`` (remote) the upload's outcome, then the
    wait for room if its pacing asks for one (back-pressure, after
    accepting, so the caller's offsets stay valid; waited for off the
    loop); then ``settle``, the subclass's, with None or the error.

    It is the WAL's waiter (a LoopCall, settled on the loop of the append
    as an asyncio future is, a WAL group's on one wake-up of the loop): a
    local append (acks=all on the fsynced WAL, the usual one) is answered
    in ``durable`` itself. Only a remote one is handed back to the loop
    from the uploader's thread, so only ``wait_remote`` looks the loop's
    handoff up. One object serves one append: ``Appender.submit_then``
    sets its fields."""

    __slots__ = ("_appender", "_handoff", "_waits_for_room", "uploaded")

    _appender: Appender
    _handoff: LoopHandoff | None
    _waits_for_room: bool
    uploaded: Future[int] | None
    """Settled once the append is in a committed object (remote only)."""

    def settle(self, error: BaseException | None) -> None:
        """Called once on the loop: None once the append is as durable as
        it asked, else the error that failed it (a StoreFailed for the
        WAL's, the store's Fenced, the upload's)."""
        raise NotImplementedError

    def wait_remote(self, uploaded: Future[int]) -> None:
        """Waits for ``uploaded`` after the WAL's commit: called on the
        running loop, whose handoff the upload's call comes back through."""
        self._handoff = self._appender.handoff(self._loop)
        self.uploaded = uploaded

    def durable(self, outcome: WalOutcome) -> None:
        if isinstance(outcome, BaseException):
            self.settle(StoreFailed(outcome) if isinstance(outcome, WalError) else outcome)
            return
        failure = self._appender._state.failure
        if isinstance(failure, Fenced):
            self.settle(failure)  # a fenced writer acknowledges nothing
            return
        if self.uploaded is not None:
            self.uploaded.add_done_callback(self._uploaded)
            return
        appender = self._appender
        if (
            not self._waits_for_room
            or appender._state.cache.unuploaded_bytes <= appender._config.max_unuploaded_bytes
        ):
            # _make_room's answer when there is room, without its call: a
            # local acknowledgement's usual end.
            self.settle(None)
            return
        self._make_room()

    def _uploaded(self, uploaded: Future[int]) -> None:
        # On the uploader's thread (or this one, if already settled): a
        # commit answers all its appends at once, and those of one loop
        # share one wake-up of it.
        cast(LoopHandoff, self._handoff).call(self._after_upload, uploaded)

    def _after_upload(self, uploaded: Future[int]) -> None:
        if uploaded.cancelled():
            self.settle(asyncio.CancelledError())
            return
        error = uploaded.exception()
        if error is not None:
            self.settle(error)
            return
        self._make_room()

    def _make_room(self) -> None:
        appender = self._appender
        room = appender._state.cache.unuploaded_bytes <= appender._config.max_unuploaded_bytes
        if room or not self._waits_for_room:
            self.settle(None)
            return
        try:
            # On the loop: called by the WAL's settling or the handoff's run.
            waited = self._loop.run_in_executor(appender._room_waits, appender._wait_for_room)
        except RuntimeError:  # the waits were ended: the store is closed
            self.settle(StoreClosed())
            return
        waited.add_done_callback(self._room_made)

    def _room_made(self, waited: asyncio.Future[None]) -> None:
        self.settle(asyncio.CancelledError() if waited.cancelled() else waited.exception())


class CallOnDurable(DurableCall):
    """A DurableCall that calls a function with the append's outcome
    (``StreamStore.submit_async``'s, a caller with no object of its own)."""

    __slots__ = ("_call",)

    def __init__(self, call: Callable[[BaseException | None], None]) -> None:
        self._call = call

    def settle(self, error: BaseException | None) -> None:
        self._call(error)
