"""One client connection: framing, dispatch, in-order responses, and
back-pressure.

Reading uses asyncio's buffered protocol: small requests are read into a
reusable scratch buffer and copied out whole; a request larger than the
scratch buffer is read straight into its own buffer, so produce data is
copied once, from the socket, and never again (the partition leader
rewrites batch headers in that buffer and stores it).

Kafka clients pipeline requests and expect responses in request order. Each
request is dispatched as soon as it is read (so a Produce's append happens
in arrival order), its response is queued in that order, and the queue is
written out as its head completes.

Back-pressure: the bytes of requests not yet answered are counted per
connection and over the server; past either limit, or while the socket's
send buffer is full, the connection stops reading. Nothing is buffered
without bound.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from engine.protocol.codec import Parts, encode_response
from engine.protocol.errors import ProtocolError, RequestTooLarge
from engine.protocol.frames import RequestHeader, parse_header, read_size
from engine.server.dispatch import dispatch

if TYPE_CHECKING:
    from engine.server.server import Server

log = logging.getLogger("tidelog.server")

_SCRATCH_BYTES = 256 * 1024


class _Pending:
    """A request whose response has not been written yet."""

    __slots__ = ("header", "result", "size")

    def __init__(self, header: RequestHeader, result: Any, size: int) -> None:
        self.header = header
        self.result = result
        self.size = size


class Connection(asyncio.BufferedProtocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self._scratch = bytearray(_SCRATCH_BYTES)
        self._filled = 0
        self._frame: bytearray | None = None
        self._frame_filled = 0
        self._draining = False
        self._pending: deque[_Pending] = deque()
        self.inflight_bytes = 0
        self._pauses: set[str] = set()
        self.closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    # -- asyncio protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.server.connection_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for pending in self._pending:
            if isinstance(pending.result, asyncio.Future):
                pending.result.cancel()
            self._release(pending.size)
        self._pending.clear()
        self._idle.set()
        self.server.connection_closed(self)

    def pause_writing(self) -> None:
        self._pause("writing")

    def resume_writing(self) -> None:
        self._resume("writing")

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._frame is not None:
            return memoryview(self._frame)[self._frame_filled :]
        return memoryview(self._scratch)[self._filled :]

    def buffer_updated(self, nbytes: int) -> None:
        if self._frame is not None:
            self._frame_filled += nbytes
            if self._frame_filled == len(self._frame):
                frame, self._frame = self._frame, None
                self._request(frame)
            return
        self._filled += nbytes
        self._drain_scratch()

    def eof_received(self) -> bool:
        return False  # close once the client has closed its side

    # -- framing -----------------------------------------------------------------------

    def _drain_scratch(self) -> None:
        if self._draining:  # a response written while dispatching resumed reading
            return
        self._draining = True
        try:
            self._drain_frames()
        finally:
            self._draining = False

    def _drain_frames(self) -> None:
        scratch = self._scratch
        position = 0
        while not self.closed and self._filled - position >= 4:
            size = read_size(scratch, position)
            if size < 0 or size > self.server.config.max_request_bytes:
                self.abort(RequestTooLarge(size, self.server.config.max_request_bytes))
                return
            start = position + 4
            end = start + size
            if end <= self._filled:
                self._request(scratch[start:end])
                position = end
                continue
            if 4 + size > len(scratch):
                # Too large for the scratch buffer: read the rest straight
                # into the request's own buffer.
                frame = bytearray(size)
                have = self._filled - start
                frame[:have] = scratch[start : self._filled]
                self._frame, self._frame_filled = frame, have
                self._filled = 0
                return
            break
        left = self._filled - position
        if position and left:
            scratch[:left] = scratch[position : self._filled]
        self._filled = left

    # -- requests and responses ----------------------------------------------------------

    def _request(self, frame: bytearray) -> None:
        size = len(frame)
        stats = self.server.stats
        stats.requests += 1
        stats.bytes_in += size + 4
        try:
            header = parse_header(frame)
        except ProtocolError as error:
            self.abort(error)
            return
        try:
            header, result = dispatch(self.server.state, header, memoryview(frame))
        except ProtocolError as error:
            self.abort(error)
            return
        except Exception as error:  # a handler bug: this client goes, the server stays
            log.exception("%s: API key %d failed", self.peer, header.api_key)
            self.abort(error)
            return
        if inspect.isawaitable(result):
            result = asyncio.ensure_future(result)
        self._queue(header, result, size)

    def _queue(self, header: RequestHeader, result: Any, size: int) -> None:
        self.inflight_bytes += size
        self.server.inflight_bytes += size
        pending = _Pending(header, result, size)
        self._pending.append(pending)
        self._idle.clear()
        if isinstance(result, asyncio.Future):
            result.add_done_callback(self._completed)
        if len(self._pending) == 1:
            self._write_ready()
        if self.inflight_bytes > self.server.config.max_connection_inflight_bytes:
            self._pause("inflight")
        if self.server.inflight_bytes > self.server.config.max_inflight_bytes:
            self._pause("server")
            self.server.paused.add(self)

    def _completed(self, _future: Awaitable[Any]) -> None:
        if self._pending and self._pending[0].result is _future:
            self._write_ready()

    def _write_ready(self) -> None:
        """Writes every response at the head of the queue that is ready."""
        while self._pending and not self.closed:
            pending = self._pending[0]
            result = pending.result
            if isinstance(result, asyncio.Future):
                if not result.done():
                    return
                if result.cancelled():
                    result = None
                else:
                    error = result.exception()
                    if error is not None:
                        log.error(
                            "%s: API key %d failed",
                            self.peer,
                            pending.header.api_key,
                            exc_info=error,
                        )
                        self.abort(error)
                        return
                    result = result.result()
            self._pending.popleft()
            if result is not None:
                try:
                    parts = encode_response(pending.header, result)
                except Exception as error:  # a handler bug: this client goes, the server stays
                    self._release(pending.size)
                    log.exception("%s: API key %d: no response", self.peer, pending.header.api_key)
                    self.abort(error)
                    return
                self._write(parts)
            self._release(pending.size)
        if not self._pending:
            self._idle.set()

    def _write(self, parts: Parts) -> None:
        assert self.transport is not None
        self.server.stats.bytes_out += sum(len(part) for part in parts)
        self.transport.writelines(parts)

    def _release(self, size: int) -> None:
        self.inflight_bytes -= size
        self.server.inflight_bytes -= size
        if self.inflight_bytes <= self.server.config.max_connection_inflight_bytes // 2:
            self._resume("inflight")
        self.server.maybe_resume()

    # -- flow control --------------------------------------------------------------------

    def _pause(self, reason: str) -> None:
        if not self._pauses and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self._pauses.add(reason)

    def _resume(self, reason: str) -> None:
        if reason not in self._pauses:
            return
        self._pauses.discard(reason)
        if not self._pauses and self.transport is not None and not self.closed:
            self.transport.resume_reading()
            if self._filled >= 4:
                self._drain_scratch()

    def resume_server_pause(self) -> None:
        self._resume("server")

    # -- closing -------------------------------------------------------------------------

    def abort(self, error: BaseException) -> None:
        """Closes this connection for a request it cannot be answered."""
        if self.closed:
            return
        log.warning("%s: closing the connection: %s", self.peer, error)
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def stop_reading(self) -> None:
        self._pause("shutdown")

    async def drain(self, timeout: float) -> None:
        """Waits until every response in flight is written (or ``timeout``)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning("%s: %d responses unwritten at shutdown", self.peer, len(self._pending))

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
