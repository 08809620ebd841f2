"""One client connection: framing, dispatch, in-order responses,
back-pressure, and the timestamps the server's limits look at.

A connection belongs to one listener (listeners.py): on a SASL_* listener
its requests pass its authentication first (authentication.py); on a TLS
listener every byte comes through the TLS transport (the socket's own
count of bytes waiting is of encrypted bytes, and is not consulted).

Reading uses asyncio's buffered protocol. Between requests a connection
holds no read buffer of its own: bytes are read into one buffer the server
shares (a read is handled whole before the next one starts), complete
requests are copied out of it, and only the start of an incomplete request
is kept, in a buffer of its own. A large request is then read straight
into that buffer, to its end, so produce data is copied once, from the
socket, and never again (the partition leader rewrites batch headers in that
buffer and stores it).

After a large request, a connection reads only the next size prefix
through the shared buffer: a client sending large requests usually sends
another, and this way none of its bytes is copied out of the shared buffer
(reading them there first would copy up to a shared buffer's worth of every
request). A small request after it costs one more read.

That buffer grows with the bytes that have arrived (what the socket already
holds, as the kernel reports it, or one growth step), never to the size a
size prefix merely claims: when a request's bytes are all in, as with a
client on the same machine, its buffer is allocated once, at its full size.

Kafka clients pipeline requests and expect responses in request order. Each
request is dispatched as soon as it is read (so a Produce's append happens
in arrival order), its response is queued in that order, and the queue is
written out as its head completes.

Back-pressure: the bytes of requests not yet answered, of the request
being read and of those held unread (read with one that paused the
connection, or fed in by TLS while it was paused) are counted per
connection and over the server (held ones not over the server while its
client reads no answers: see pause_writing); past either limit, or while
the socket's send buffer is full, the connection stops reading. Nothing is
buffered without bound.
"""

from __future__ import annotations

import asyncio
import fcntl
import inspect
import logging
import struct
import sys
import termios
from collections import deque
from collections.abc import Awaitable
from functools import partial
from typing import TYPE_CHECKING, Any

from engine.protocol.apis import ApiKey
from engine.protocol.codec import Encoded, Parts, encode_response, with_throttle_time
from engine.protocol.errors import ProtocolError, RequestTooLarge
from engine.protocol.frames import RequestHeader, parse_header, read_size
from engine.protocol.kafka_code import KafkaCode
from engine.server.authentication import SASL_MAX_RECEIVE_BYTES, Authentication, SaslResult
from engine.server.context import Identity, OffLoop, ServerState
from engine.server.dispatch import dispatch
from engine.server.listeners import Listener
from engine.server.sliced_writes import SlicedWriter
from engine.server.tls import NoMatchingRule, tls_writes
from native import extend_unfilled, unfilled_bytearray

if TYPE_CHECKING:
    from engine.server.server import Server

log = logging.getLogger("tidelog.server")

SHARED_READ_BYTES = 256 * 1024
"""The server's one read buffer, which every connection reads into between
requests."""
_DIRECT_READ_MIN = 64 * 1024
"""A request this large is read straight into its own buffer, to its end
(after what came with its size); a smaller one comes through the shared
buffer and is copied."""
_GROWTH_STEP = 256 * 1024
"""The least a request's buffer grows by when its bytes are not in yet."""
_GROWTH_MAX = 8 * 1024 * 1024
"""Growth doubles what was received up to this step, so a slow sender of a
large request costs a bounded number of reallocations."""
_CORKED_MAX = 256 * 1024
"""Answers gathered during one read go to the socket once they pass this:
a client that does not read its answers is then seen (the transport's
write buffer fills) before the rest of what it sent is handled."""
_BUDGET_ONLY = frozenset({"server"})
"""The pause of a connection stopped by the server's budget alone."""
_NO_BYTES = b"\0\0\0\0"
_SIZE_BYTES = 4
"""A request's size prefix."""
_SASL_AUTHENTICATE = ApiKey.SASL_AUTHENTICATE
"""Read once: an Enum class's attribute is looked up through its
metaclass's __getattr__ hook (some 900 instructions), once a request."""
_SIZE = struct.Struct(">i")
"""frames.read_size's, read here without its call: once a request."""


class _Pending:
    """A request whose response has not been written yet."""

    __slots__ = ("answer", "header", "read", "result", "seconds", "size")

    def __init__(
        self,
        header: RequestHeader,
        result: Any,
        size: int,
        seconds: float,
        read: float,
        answer: int = 0,
    ) -> None:
        self.header = header
        self.result = result
        self.size = size
        self.answer = answer
        """What its answer may carry beyond ``size`` (a Fetch's records),
        counted against the connection's budget only."""
        self.seconds = seconds
        """The event loop's time spent on it so far (the request quota)."""
        self.read = read
        """When it was read whole (the latency metric)."""


class Connection(asyncio.BufferedProtocol):
    __slots__ = (
        "_authenticating",
        "_body",
        "_body_filled",
        "_body_size",
        "_closing",
        "_corked",
        "_direct",
        "_draining",
        "_expect_large",
        "_fd",
        "_head",
        "_held",
        "_held_reading",
        "_idle",
        "_off_loop",
        "_outgoing",
        "_outgoing_bytes",
        "_pauses",
        "_pending",
        "_state",
        "_throttled",
        "_tls",
        "_writer",
        "admitted",
        "answer_bytes",
        "authentication",
        "closed",
        "identity",
        "inflight_bytes",
        "last_active",
        "listener",
        "partial_since",
        "peer",
        "peer_host",
        "server",
        "transport",
    )

    def __init__(self, server: Server, listener: Listener | None = None) -> None:
        self.server = server
        self.listener = listener or Listener("PLAINTEXT", server.config.host, server.config.port)
        self.authentication: Authentication | None = None
        """The SASL state, on a SASL_* listener (None elsewhere)."""
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.peer_host = "?"
        self.identity = Identity()
        """Who the peer is (its principal once it authenticates)."""
        self.admitted = False
        self._fd = -1
        self._tls = False
        self._writer: SlicedWriter | None = None
        """Where responses go on a plain transport (sliced_writes.py)."""
        self._head = b""
        """The first bytes of a size prefix that has not fully arrived."""
        self._body: bytearray | None = None
        """The request being read, allocated as its bytes arrive."""
        self._body_filled = 0
        self._body_size = 0
        self._direct = False
        self._expect_large = False
        """The last request was large: read the next one's size alone first."""
        self._draining = False
        self._pending: deque[_Pending] = deque()
        self._corked = False
        """While set, responses are gathered in ``_outgoing`` (see _write)."""
        self._outgoing: Parts = []
        self._outgoing_bytes = 0
        self.inflight_bytes = 0
        self.answer_bytes = 0
        """What the answers in flight may carry beyond their requests' own
        bytes (see _Pending.answer), counted against this connection's budget."""
        self._held = bytearray()
        """Requests read while the connection was paused, not handled yet
        (at most one read's worth: see _read_frames), and bytes a TLS
        connection is fed while paused; counted in ``inflight_bytes`` and,
        unless its client reads no answers, the server's (``_count_held``)."""
        self._held_reading: asyncio.Handle | None = None
        self._off_loop = 0
        """Requests being answered on the admin thread (see _after_off_loop)."""
        self._pauses: set[str] = set()
        self._throttled: tuple[float, asyncio.TimerHandle] | None = None
        """When a quota's throttle ends, and the timer that resumes reading then."""
        self.closed = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.last_active = server.now()
        """When the connection last read or wrote (connections.max.idle.ms)."""
        self._authenticating: asyncio.Future[Any] | None = None
        """A SASL step being awaited (a password checked off the loop):
        nothing more is read until it is done."""
        self._closing: asyncio.TimerHandle | None = None
        """The close a failed SASL exchange put off (connection.failed.authentication.delay.ms)."""
        self.partial_since: float | None = None
        """When the request being read began arriving, or None between requests."""
        self._state: ServerState | None = None
        """The server's state, read at the first request (Server.state is a
        property, a call from C a request); one for the server's life."""

    # -- asyncio protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream: asyncio.Transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.transport = stream
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer_host = str(peer[0])
            self.peer = f"{peer[0]}:{peer[1]}"
        else:
            self.peer = self.peer_host = str(peer)
        self.identity = Identity(
            listener=self.listener.name, host=self.peer_host, address=self.peer
        )
        if self.server.principal_builder is not None:
            self.identity = self.server.principal_builder(self.identity)
        refusal = self.server.admit(self)
        if refusal is not None:
            log.warning("%s: refused: %s", self.peer, refusal)
            self.closed = True
            stream.abort()
            return
        self.admitted = True
        tls = self._tls = transport.get_extra_info("ssl_object") is not None
        sock = None if tls else transport.get_extra_info("socket")
        self._fd = sock.fileno() if sock is not None else -1
        if tls:
            try:
                principal = self.server.tls_principal(transport.get_extra_info("peercert"))
            except NoMatchingRule as error:
                log.warning("%s: refused: %s", self.peer, error)
                self.closed = True
                self.admitted = False
                stream.abort()
                return
            if principal is not None:
                self.identity = Identity(principal, self.listener.name, self.peer_host, self.peer)
        if self.listener.protocol.uses_sasl:
            config = self.server.config
            self.authentication = Authentication(
                mechanisms=config.mechanisms(self.listener),
                lookup=self.server.engine.credentials.get,
                check=self.server.password_checks.for_address(self.peer_host),
                now=self.server.now,
                reauth_ms=config.connections_max_reauth_ms,
                peer=self.peer,
                on_authenticated=self._authenticated,
                validator=self.server.token_validator,
                tokens=self.server.engine.delegation_tokens.login,
                # The clock tokens' expiries are told by: a session ends with its token.
                wall_ms=self.server.engine.clock.time_ms,
            )
        self.server.connection_opened(self)

    def _authenticated(self, principal: str, token_authenticated: bool) -> None:
        self.identity = Identity(
            principal, self.listener.name, self.peer_host, self.peer, token_authenticated
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._outgoing = []
        if self._writer is not None:
            self._writer.discard()
        if self._closing is not None:
            self._closing.cancel()
        if self._authenticating is not None:
            self._authenticating.cancel()
        if not self.admitted:
            return
        for pending in self._pending:
            if isinstance(pending.result, asyncio.Future):
                pending.result.cancel()
            self._release(pending)
        self._pending.clear()
        self._count_held(-len(self._held))
        self._held = bytearray()
        if self._held_reading is not None:
            self._held_reading.cancel()
        if self._body is not None:
            self._count(-len(self._body))
            self._body = None
        self._idle.set()
        self.server.connection_closed(self)
        self.server.maybe_resume()

    def pause_writing(self) -> None:
        if "writing" in self._pauses:
            return
        self._pause("writing")
        if self._held:
            # Its client reads no answers: what it holds leaves the server's
            # budget (not its own) until it reads again, or the others would
            # stop being read for as long as it does not (up to the idle
            # timeout). What such connections hold (one read and one TLS
            # feed each) is bounded by their number, as their sockets'
            # kernel buffers are (docs/design/0043). The server shows it
            # apart, so that what is held is seen whole.
            self.server.inflight_bytes -= len(self._held)
            self.server.non_reader_held_bytes += len(self._held)
            self.server.maybe_resume()

    def resume_writing(self) -> None:
        if "writing" in self._pauses:
            self.server.inflight_bytes += len(self._held)  # counted again: see pause_writing
            self.server.non_reader_held_bytes -= len(self._held)
        self._resume("writing")

    def get_buffer(self, sizehint: int) -> memoryview:
        body = self._body
        held_back = self._pauses or self._held  # a TLS connection's bytes fed in, not read
        if body is not None and self._body_size >= _DIRECT_READ_MIN and not held_back:
            if self._body_filled == len(body):
                self._grow(body)
            self._direct = True
            return memoryview(body)[self._body_filled :]
        self._direct = False
        if self._expect_large and body is None:
            # Likely another large request: its size prefix alone, so that
            # its bytes are then read straight into a buffer of its own.
            return memoryview(self.server.read_buffer)[: _SIZE_BYTES - len(self._head)]
        return memoryview(self.server.read_buffer)

    def buffer_updated(self, nbytes: int) -> None:
        self.last_active = self.server.now()
        if self._direct:
            self._body_filled += nbytes
            if self._body_filled == self._body_size:
                self._finish_body()
            else:
                self._check_budgets()
            return
        if self._held:
            # Bytes handed on while requests are held back (a TLS
            # connection's first bytes are fed in, not read): after them.
            self._held += memoryview(self.server.read_buffer)[:nbytes]
            self.server.stats.bytes_copied += nbytes
            self._count_held(nbytes)
            self._check_budgets()
            self._schedule_held()
            return
        self._read(memoryview(self.server.read_buffer)[:nbytes])

    def _read(self, data: memoryview) -> None:
        """Handles bytes read through the shared buffer, or held back."""
        if self._draining:  # cannot happen: reads are never nested
            raise RuntimeError("nested read on one connection")
        self._draining = True
        self._corked = True
        try:
            self._read_frames(data)
        finally:
            self._draining = False
            self._corked = False
            self._flush()
        if self._head or self._body is not None:
            if self.partial_since is None:
                self.partial_since = self.last_active
            self._check_budgets()
        elif self._held:
            self._check_budgets()  # what it holds counts as requests read do

    def eof_received(self) -> bool:
        return False  # close once the client has closed its side

    # -- framing -----------------------------------------------------------------------

    def _read_frames(self, data: memoryview) -> None:
        """Dispatches every request ``data`` completes and keeps the start of
        the next; ``data`` is the shared buffer, so nothing may refer to it
        afterwards."""
        position, end = 0, len(data)
        limit = self.server.config.max_request_bytes
        authentication = self.authentication
        if authentication is not None and not authentication.authenticated:
            limit = min(limit, SASL_MAX_RECEIVE_BYTES)
        while position < end and not self.closed:
            if self._pauses:
                # Paused by a request this read brought (its answer may not
                # fit the budget, or the client reads no answers), or bytes
                # fed in while paused (TLS): the requests after it wait, as
                # the socket's unread ones do, and so does the rest of one
                # being read (handled, it would be handled while paused).
                self._hold(data[position:end])
                return
            body = self._body
            if body is not None:
                take = min(self._body_size - self._body_filled, end - position)
                filled = self._body_filled
                if filled + take > len(body):
                    self._count(filled + take - len(body))
                body[filled : filled + take] = data[position : position + take]
                self.server.stats.bytes_copied += take
                self._body_filled += take
                position += take
                if self._body_filled == self._body_size:
                    self._finish_body()
                continue
            if self._head or end - position < 4:
                piece = bytes(data[position : position + 4 - len(self._head)])
                self._head += piece
                position += len(piece)
                if len(self._head) < 4:
                    return
                size = read_size(self._head)
                self._head = b""
            else:
                (size,) = _SIZE.unpack_from(data, position)
                position += 4
            if size < 0 or size > limit:
                self.abort(RequestTooLarge(size, limit))
                return
            if end - position >= size:
                self.partial_since = None
                self.server.stats.bytes_copied += size
                self._request(bytearray(data[position : position + size]))
                position += size
                continue
            self._start_body(size, data[position:end])
            return

    def _hold(self, rest: memoryview) -> None:
        """Keeps what a paused connection read (or was fed) past its last
        handled request, the rest of one being read included, to be handled
        before anything more is read (_read_held).

        A copy out of the shared buffer (or out of bytes held before, when
        reading them paused the connection again), counted; its requests
        are copied once more, into buffers of their own, when they are read
        again (_read_frames), and counted there. They are not split into
        those buffers here: what a request may be (its size limit is
        SASL's before authentication; nothing behind a failed login is
        read) is known only once the ones before it are handled. Nor are
        they handed slices of this copy: each would keep the whole read
        alive."""
        self._held = bytearray(rest)
        self.server.stats.bytes_copied += len(rest)
        self._count_held(len(rest))  # nothing was held: see _read_held and buffer_updated

    def _read_held(self) -> None:
        self._held_reading = None
        if self._pauses or self.closed:
            return  # paused again: its next resume comes back here
        held, self._held = self._held, bytearray()
        # Counted again as it is read: each request in a buffer of its own
        # (_queue), a partial one in its body, the rest held once more.
        self._count_held(-len(held))
        self._read(memoryview(held))
        server = self.server
        if server.finishing is self and self._body is None:
            # Let past the budget to handle what it held (_check_budgets):
            # done, the next stalled connection's turn.
            server.pass_finishing()
        if not self._pauses and not self._held and not self.closed:
            assert self.transport is not None
            self.transport.resume_reading()

    def _start_body(self, size: int, first: memoryview) -> None:
        capacity = min(size, len(first) + max(self._socket_holds(), _DIRECT_READ_MIN))
        # Not zero-filled: every byte is received before the request is handled
        # (it is dispatched only once filled to its size), and zeroing it would
        # be a pass over every byte of produce data for nothing.
        body = unfilled_bytearray(capacity)
        body[: len(first)] = first
        self.server.stats.bytes_copied += len(first)
        self._body, self._body_filled, self._body_size = body, len(first), size
        self.partial_since = self.server.now()
        self._count(capacity)

    def _grow(self, body: bytearray) -> None:
        """Makes room in a full request buffer for the bytes that have arrived
        (at least a growth step), never past the request's size."""
        filled = len(body)
        step = max(self._socket_holds(), min(filled, _GROWTH_MAX), _GROWTH_STEP)
        added = min(self._body_size, filled + step) - filled
        extend_unfilled(body, added)  # written to its end before it is read, as at the start
        self._count(added)

    def _finish_body(self) -> None:
        body = self._body
        assert body is not None
        self._body = None
        self.partial_since = None
        # From a partial request to a queued one: the same bytes, counted once.
        self.inflight_bytes -= len(body)
        self.server.inflight_bytes -= len(body)
        self._request(body)
        if self.server.finishing is self:
            self.server.pass_finishing()

    def _socket_holds(self) -> int:
        """Bytes received by the kernel and not read yet (0 if unknown)."""
        if self._fd < 0:
            return 0
        try:
            answer = fcntl.ioctl(self._fd, termios.FIONREAD, _NO_BYTES)
        except OSError:
            return 0
        return int.from_bytes(answer, sys.byteorder, signed=True)

    def _count(self, size: int) -> None:
        """Counts bytes of a request being read, or held unread, against the
        budgets (checked once the read is handled: get_buffer may not stop
        reading)."""
        self.inflight_bytes += size
        self.server.inflight_bytes += size

    def _count_held(self, size: int) -> None:
        """Counts bytes held unread (or no longer held) against the
        connection's budget, and the server's unless its client reads no
        answers (pause_writing): the server counts ``_held`` in its budget
        exactly while the connection is not paused for writing, and in
        ``non_reader_held_bytes`` exactly while it is."""
        self.inflight_bytes += size
        if "writing" in self._pauses:
            self.server.non_reader_held_bytes += size
        else:
            self.server.inflight_bytes += size

    def _check_budgets(self) -> None:
        config = self.server.config
        server = self.server
        # A connection with nothing to answer keeps reading its one request
        # (at most max_request_bytes): stopping it would wait for nothing.
        # _budget_used, without its call: once a request.
        if self._pending and self.inflight_bytes + self.answer_bytes > (
            config.max_connection_inflight_bytes
        ):
            self._pause("inflight")
        if server.inflight_bytes > config.max_inflight_bytes:
            if server.finishing is None and self.finishes_request:
                # When requests still arriving, or held unread, hold the whole
                # budget, no answer will ever free it: one of them is read to
                # its end, or what one holds is handled (the budget is passed
                # by at most one request or one read), then the next.
                server.finishing = self
            elif server.finishing is not self:
                self._pause("server")
                server.paused.add(self)
                if self._body is not None or self._held:
                    server.stalled.add(self)

    @property
    def _budget_used(self) -> int:
        """What counts against max_connection_inflight_bytes: requests read
        and unanswered (or being read, or held back unread) and what their
        answers may carry beyond them."""
        return self.inflight_bytes + self.answer_bytes

    @property
    def finishes_request(self) -> bool:
        """Whether it is reading a request, or holds requests unread, and
        has nothing to answer: then only that request arriving whole, or
        those it holds being handled, can free the budget they hold. Not
        while anything but the server's budget stops its reading (a client
        that reads no answers, a throttle, a login being checked): let past
        the budget, it would hold that turn without using it, and every
        other connection stopped in the middle of a request would wait
        (_resume takes the turn once only the budget is left)."""
        return (
            (self._body is not None or bool(self._held))
            and not self._pending
            and self._pauses <= _BUDGET_ONLY
        )

    # -- requests and responses ----------------------------------------------------------

    def _request(self, frame: bytearray) -> None:
        size = len(frame)
        self._expect_large = size >= _DIRECT_READ_MIN
        stats = self.server.stats
        stats.requests += 1
        stats.bytes_in += size + 4
        authentication = self.authentication
        if authentication is not None and authentication.raw_tokens:
            self._raw_token(authentication, frame)
            return
        try:
            header = parse_header(frame)
        except ProtocolError as error:
            self.abort(error)
            return
        if authentication is not None:
            refusal = authentication.refusal(header.api_key)
            if refusal is not None:
                self.abort(ConnectionRefusedError(refusal))
                return
        timed = self.server.quotas.active  # the request quota counts the loop's time
        started = self.server.now()
        state = self._state
        if state is None:
            state = self._state = self.server.state
        try:
            header, result, answer_bytes = dispatch(
                state, header, memoryview(frame), self.identity, authentication
            )
        except ProtocolError as error:
            self.abort(error)
            return
        except Exception as error:  # a handler bug: this client goes, the server stays
            log.exception("%s: API key %d failed", self.peer, header.api_key)
            self.abort(error)
            return
        if type(result) is asyncio.Future:
            pass  # a handler's own future (a Produce's answer): queued as it is
        elif inspect.isawaitable(result):
            until = result.until if isinstance(result, OffLoop) else None
            off_loop = isinstance(result, OffLoop)
            result = asyncio.ensure_future(result)
            if until is not None:
                # Answered (or given up) before it took effect: nothing of it
                # comes after, the hold ends with it.
                result.add_done_callback(partial(_settle, until))
            if off_loop:
                self._after_off_loop(result if until is None else until)
        seconds = self.server.now() - started if timed else 0.0
        answer = answer_bytes - size
        # A compare, not max(): the builtin parses its arguments as keywords.
        if answer < 0:  # noqa: PLR1730
            answer = 0
        self._queue(_Pending(header, result, size, seconds, started, answer))
        if header.api_key == _SASL_AUTHENTICATE and isinstance(result, asyncio.Future):
            self._read_after(result)
        elif authentication is not None:
            self._refuse_after(authentication)

    def _read_after(self, step: asyncio.Future[Any]) -> None:
        """Reads nothing more until the SASL ``step`` is done (its answer
        written first): the requests after it are then refused or served
        as the exchange's outcome says, as when a step was done at once."""
        self._authenticating = step
        self._pause("authentication")
        step.add_done_callback(self._step_done)

    def _step_done(self, _step: asyncio.Future[Any]) -> None:
        self._authenticating = None
        authentication = self.authentication
        if authentication is None or not authentication.close_after_answer:
            self._resume("authentication")  # else read no more: see _refuse_after

    def _refuse_after(self, authentication: Authentication) -> None:
        """After a failed SASL exchange, handles nothing more: its answer
        is written once those before it are (a re-authentication may
        follow requests still in flight), then the connection closes; a
        request sent behind it is never served under the session the
        exchange failed to renew."""
        if authentication.close_after_answer and not self.closed:  # closed: answered already
            self._pause("authentication")

    def _after_off_loop(self, answer: asyncio.Future[Any]) -> None:
        """Handles no request read after one answered on the admin thread
        until that one is done (those already read are held: _read_frames),
        as Kafka reads a connection's next request only once the one before
        is answered: the change is made before what relies on it."""
        self._off_loop += 1
        self._pause("admin")
        answer.add_done_callback(self._off_loop_done)

    def _off_loop_done(self, _answer: asyncio.Future[Any]) -> None:
        self._off_loop -= 1
        if not self._off_loop:
            self._resume("admin")

    def _raw_token(self, authentication: Authentication, frame: bytearray) -> None:
        """A SASL token after a SaslHandshake v0: a bare size-prefixed frame
        each way, no request header (the exchange before KIP-152, for
        clients that know only it). A failure closes the connection with no
        answer, as Kafka does for that exchange."""
        if self._pending:  # the handshake's answer is written before the client goes on
            self.abort(ProtocolError("a SASL token before the SaslHandshake answer"))
            return
        step = asyncio.ensure_future(authentication.authenticate(bytes(frame)))
        step.add_done_callback(self._raw_token_answered)
        self._read_after(step)

    def _raw_token_answered(self, step: asyncio.Future[SaslResult | None]) -> None:
        if step.cancelled() or self.closed:
            return
        error = step.exception()
        if error is not None:  # a mechanism's bug: this client goes, the server stays
            log.error("%s: SASL token failed", self.peer, exc_info=error)
            self.abort(error)
            return
        result = step.result()
        if result is None:
            self.abort(ConnectionRefusedError("SASL authentication not attempted: too busy"))
            return
        if result.error != KafkaCode.NONE:
            self.abort(ConnectionRefusedError(result.message or "SASL authentication failed"))
            return
        self._write([len(result.challenge).to_bytes(4, "big"), result.challenge])

    def _queue(self, pending: _Pending) -> None:
        result = pending.result
        self.inflight_bytes += pending.size
        self.server.inflight_bytes += pending.size
        self.answer_bytes += pending.answer
        self._pending.append(pending)
        if isinstance(result, asyncio.Future):
            result.add_done_callback(self._completed)
        if len(self._pending) == 1:
            # Only the request that makes the queue non-empty clears it:
            # _idle is set only with the queue empty (_write_ready_gathered,
            # a close), so behind another request it is clear already, and
            # Event.clear is a Python call a request.
            self._idle.clear()
            self._write_ready()
        self._check_budgets()

    def _completed(self, _future: Awaitable[Any]) -> None:
        if self._pending and self._pending[0].result is _future:
            self._write_ready()

    def _write_ready(self) -> None:
        """Writes every response at the head of the queue that is ready, all
        in one write (see _write)."""
        if self._corked:
            self._write_ready_gathered()
            return
        self._corked = True
        try:
            self._write_ready_gathered()
        finally:
            self._corked = False
            self._flush()

    def _write_ready_gathered(self) -> None:
        # Read once for the answers written together (a property call each),
        # not once an answer: no quota change is ordered against them.
        timed = self.server.quotas.active  # the one check when no quota is set
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
                        # A request read off the event loop (dispatch.py)
                        # may prove malformed there: as one read here, it
                        # closes its connection with a warning (abort).
                        if not isinstance(error, ProtocolError):
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
                    encoding = self.server.now() if timed else 0.0
                    parts = encode_response(pending.header, result)
                    if timed:
                        pending.seconds += self.server.now() - encoding
                        parts = self._throttle(pending, result, parts)
                except Exception as error:  # a handler bug: this client goes, the server stays
                    self._release(pending)
                    log.exception("%s: API key %d: no response", self.peer, pending.header.api_key)
                    self.abort(error)
                    return
                self._write(parts)
                # One unpack, where each field read by name is a descriptor
                # call (3.11's NamedTuple), once an answer.
                api_key, api_version, _, _, _ = pending.header
                self.server.request_metrics.answered(
                    api_key,
                    api_version,
                    result.get("error_code", 0) if isinstance(result, dict) else 0,
                    self.server.now() - pending.read,
                )
            elif timed:  # acks=0: no answer, but the bytes count
                self._throttle(pending, None, [])
            self._release(pending)
            authentication = self.authentication
            if (
                authentication is not None
                and authentication.close_after_answer
                and not self._pending  # nothing is read after it: see _refuse_after
            ):
                # A failed SASL exchange: its answer goes out, after those of
                # the requests before it, then the connection closes, as
                # Kafka's SaslServerAuthenticator does,
                # connection.failed.authentication.delay.ms later (or when
                # the client closes): a client that reads the answer and the
                # close together may drop the answer (kafka-python does).
                self.closed = True
                self._idle.set()  # nothing more is answered
                self._flush_all()
                if self.transport is not None:
                    self.transport.pause_reading()
                    delay = self.server.config.connection_failed_authentication_delay_ms
                    if delay:
                        self._closing = asyncio.get_running_loop().call_later(
                            delay / 1000, self.transport.close
                        )
                    else:
                        self.transport.close()
                return
        if not self._pending:
            self._idle.set()

    def _write(self, parts: Parts) -> None:
        """Writes a response; while corked (a read being handled, or the
        ready responses being written out), gathers it with the others, so
        that responses ready together leave in one write. librdkafka keeps
        hundreds of one-partition Produce requests in flight to a topic of
        thousands of partitions, and a socket write per answer cost the
        event loop more than the answer itself."""
        size = sum(map(len, parts))
        self.server.stats.bytes_out += size
        self.last_active = self.server.now()
        self._outgoing.extend(parts)
        self._outgoing_bytes += size
        if not self._corked or self._outgoing_bytes >= _CORKED_MAX:
            self._flush()

    def _flush(self) -> None:
        """Hands the gathered responses to the socket, in one write."""
        parts = self._outgoing
        if not parts:
            return
        self._outgoing = []
        self._outgoing_bytes = 0
        transport = self.transport
        assert transport is not None
        self.server.stats.writes += 1
        if self._tls:  # bounded writes, small parts joined: see tls_writes
            for write in tls_writes(parts):
                transport.write(write)
        else:
            writer = self._writer
            if writer is None:
                writer = self._writer = SlicedWriter(
                    transport.writelines, asyncio.get_running_loop()
                )
            writer.write(parts)

    def _flush_all(self) -> None:
        """Hands the socket everything gathered and every slice still held
        back (before a close, whose answers must go first)."""
        self._flush()
        if self._writer is not None:
            self._writer.flush()

    def _release(self, pending: _Pending) -> None:
        server = self.server
        self.inflight_bytes -= pending.size
        server.inflight_bytes -= pending.size
        self.answer_bytes -= pending.answer
        # Both asked only when paused: a call each per answer otherwise.
        if "inflight" in self._pauses and (
            not self._pending
            or self._budget_used <= server.config.max_connection_inflight_bytes // 2
        ):
            self._resume("inflight")
        if server.paused:
            server.maybe_resume()
        if server.finishing is None and self in server.stalled and self.finishes_request:
            server.finish_past_budget(self)  # its answers are out: its request's turn

    @property
    def waiting(self) -> bool:
        """Whether a request of this connection is unanswered (it is not idle)."""
        return bool(self._pending)

    # -- flow control --------------------------------------------------------------------

    def _pause(self, reason: str) -> None:
        if not self._pauses and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        if reason not in self._pauses:
            self.server.request_metrics.pauses[reason] += 1
        self._pauses.add(reason)

    def _resume(self, reason: str) -> None:
        if reason not in self._pauses:
            return
        self._pauses.discard(reason)
        server = self.server
        if (
            self._pauses == _BUDGET_ONLY
            and server.finishing is None
            and self in server.stalled
            and self.finishes_request
            and not self.closed
        ):
            server.finish_past_budget(self)  # the turn it could not use before: resumes it
            return
        if self._pauses or self.transport is None or self.closed:
            return
        if not self._held:
            self.transport.resume_reading()
        else:
            self._schedule_held()

    def _schedule_held(self) -> None:
        """Has what was held handled on the loop's next turn (not inside the
        write or release that ended the pause), unless still paused; the
        socket is read again only once it is all handled."""
        if not self._pauses and self._held_reading is None:
            self._held_reading = asyncio.get_running_loop().call_soon(self._read_held)

    def _throttle(self, pending: _Pending, result: Any, parts: Parts) -> Parts:
        """Counts a Produce request's bytes or a Fetch answer's against the
        client's byte-rate quota (engine/server/quotas.py); past it, the
        answer carries the throttle time and the connection is not read
        until it ends, as Kafka mutes a throttled channel (KIP-219)."""
        header = pending.header
        quotas = self.server.quotas
        principal = self.identity.principal
        size = pending.size if header.api_key == ApiKey.PRODUCE else sum(map(len, parts))
        delay_ms = quotas.throttle_ms(header.api_key, principal, header.client_id, size)
        # Kafka's request quota too; the longer throttle is answered
        delay_ms = max(
            delay_ms, quotas.request_throttle_ms(principal, header.client_id, pending.seconds)
        )
        if delay_ms <= 0:
            return parts
        self.server.request_metrics.throttles[header.api_key] += 1
        loop = asyncio.get_running_loop()
        until = loop.time() + delay_ms / 1000
        if self._throttled is None or self._throttled[0] < until:
            if self._throttled is not None:
                self._throttled[1].cancel()
            self._throttled = (until, loop.call_at(until, self._end_throttle))
            self._pause("quota")
        if isinstance(result, Encoded):  # made on the admin thread
            return with_throttle_time(header, result, delay_ms)
        if not isinstance(result, dict):
            return parts
        result["throttle_time"] = delay_ms
        if header.api_key == ApiKey.FETCH:
            # Kafka's handleFetchRequest: a Fetch past the quota is answered
            # empty (FetchContext.getThrottledResponse), and the bytes it
            # would have carried are not counted; the client fetches the
            # same offsets again once the throttle has passed.
            self.server.quotas.unrecord(
                header.api_key, self.identity.principal, header.client_id, size
            )
            result["responses"] = []
        return encode_response(header, result)

    def _end_throttle(self) -> None:
        self._throttled = None
        self._resume("quota")

    def resume_server_pause(self) -> None:
        self._resume("server")

    # -- closing -------------------------------------------------------------------------

    def abort(self, error: BaseException) -> None:
        """Closes this connection for a request it cannot be answered."""
        if self.closed:
            return
        log.warning("%s: closing the connection: %s", self.peer, error)
        self.closed = True
        self._flush_all()  # the answers to the requests before this one go first
        if self.transport is not None:
            self.transport.abort()

    def expire(self, reason: str, level: int) -> None:
        """Closes this connection for a limit on time (idle, or a request
        that does not finish arriving)."""
        if self.closed:
            return
        log.log(level, "%s: closing the connection: %s", self.peer, reason)
        self.closed = True
        self._flush_all()
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
        if self.transport is not None and (not self.closed or self._closing is not None):
            self._flush_all()
            self.transport.close()


def _settle(until: asyncio.Future[None], _answer: asyncio.Future[Any]) -> None:
    if not until.done():
        until.set_result(None)
