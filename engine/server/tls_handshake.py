"""The TLS handshake of each connection to an SSL or SASL_SSL listener, and
the log of the handshakes that fail.

A TLS listener accepts plain TCP; the handshake is started here, one
connection at a time (``loop.start_tls``), rather than by the listening
server: asyncio and uvloop close a connection whose handshake fails without
a word to its protocol or to the log, and an operator then cannot tell an
expired client certificate, an untrusted CA or a client speaking plaintext
Kafka to an SSL port from a network fault. Here a failure is a warning
naming the peer's address, the listener and the reason the TLS library
gives (it names what went wrong, never key material or a password).

A peer that keeps failing writes one line per interval: the failures
within ``HANDSHAKE_LOG_INTERVAL_S`` of the line written for its host are
counted, and the next line says how many were held back. A connection
closed by its peer before the handshake ends (a port check, a client that
gave up) is no failed handshake: it is logged at debug level only. One
whose TLS the library refused, or that stalled past the handshake's
timeout, is.

Bytes the peer sends before the handshake is handed to ``start_tls`` (its
ClientHello arrives with the connection; uvloop starts reading as soon as
the protocol is told of the connection) are kept, at most
``MAX_EARLY_BYTES``, and handed to the TLS protocol first.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

log = logging.getLogger("tidelog.server")

HANDSHAKE_LOG_INTERVAL_S = 60.0
"""The least time between two lines about one host's failed handshakes."""
MAX_EARLY_BYTES = 64 * 1024
"""What is kept of the bytes sent before the handshake starts: a
ClientHello is one TLS record (at most 16 KiB and its header); past this
the peer is not speaking TLS, and its connection is closed."""
_MAX_HOSTS = 4096
"""Hosts remembered; past it, those not seen for an interval are forgotten."""


class HandshakeFailures:
    """The log of failed handshakes, held back per host to a line an interval."""

    def __init__(
        self, clock: Callable[[], float], interval_s: float = HANDSHAKE_LOG_INTERVAL_S
    ) -> None:
        self._clock = clock
        self.interval_s = interval_s
        self._hosts: dict[str, tuple[float, int]] = {}
        """Host -> (when its last line was written, failures held back since)."""

    def failed(self, host: str, peer: str, listener: str, reason: str) -> None:
        now = self._clock()
        logged = self._hosts.get(host)
        if logged is not None and now - logged[0] < self.interval_s:
            self._hosts[host] = (logged[0], logged[1] + 1)
            return
        held = 0 if logged is None else logged[1]
        if logged is None and len(self._hosts) >= _MAX_HOSTS:
            self._forget(now)
        self._hosts[host] = (now, 0)
        log.warning(
            "%s: TLS handshake failed on %s: %s%s",
            peer,
            listener,
            reason,
            f" ({held} more from {host} held back in the last {self.interval_s:.0f} s)"
            if held
            else "",
        )

    def _forget(self, now: float) -> None:
        for host, (since, _) in list(self._hosts.items()):
            if now - since >= self.interval_s:
                del self._hosts[host]
        if len(self._hosts) >= _MAX_HOSTS:  # a flood from many hosts: start afresh
            self._hosts.clear()


class TlsHandshake(asyncio.Protocol):
    """A TLS listener's connection until its handshake ends; then the
    connection's protocol (``connection``) is told of the TLS transport."""

    def __init__(
        self,
        connection: asyncio.BaseProtocol,
        context: ssl.SSLContext,
        timeout_s: float,
        listener: str,
        failures: HandshakeFailures,
        pending: set[asyncio.Task[None]],
    ) -> None:
        self._connection = connection
        self._context = context
        self._timeout_s = timeout_s
        self._listener = listener
        self._failures = failures
        self._pending = pending
        """Every handshake under way, so that a stopping server can end them."""
        self._early: bytearray | None = bytearray()
        self._host = self._peer = "?"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self._host, self._peer = str(peer[0]), f"{peer[0]}:{peer[1]}"
        task = asyncio.ensure_future(self._handshake(transport))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def data_received(self, data: bytes) -> None:
        if self._early is None:  # start_tls has taken the transport over
            return
        self._early += data
        if len(self._early) > MAX_EARLY_BYTES:
            self._early = None
            self._failures.failed(
                self._host, self._peer, self._listener, f"{MAX_EARLY_BYTES} bytes and no handshake"
            )

    async def _handshake(self, transport: asyncio.BaseTransport) -> None:
        stream: Any = transport
        if self._early is None or transport.is_closing():
            stream.abort()
            if self._early is not None:  # else reported when it overflowed
                self._report(ConnectionResetError("closed before the handshake"))
            return
        loop = asyncio.get_running_loop()
        held = _HeldAppData()
        starting = asyncio.ensure_future(
            loop.start_tls(
                stream,
                held,
                self._context,
                server_side=True,
                ssl_handshake_timeout=self._timeout_s,
            )
        )
        # start_tls pauses the transport, hands it to the TLS protocol and
        # schedules that protocol's connection_made in the step after its
        # own first one: the bytes already read go in after those.
        loop.call_soon(loop.call_soon, self._hand_over_early_bytes, stream)
        try:
            secure = await starting
        except (OSError, EOFError) as error:  # ssl.SSLError is an OSError
            stream.abort()
            self._report(error)
            return
        # uvloop hands back a transport without TLS when the peer closed
        # before the handshake began.
        if secure is None or secure.is_closing() or secure.get_extra_info("ssl_object") is None:
            stream.abort()
            self._report(ConnectionResetError("closed during the handshake"))
            return
        # The TLS protocol hands on what follows the handshake in the read
        # that ended it, before start_tls returns: ``held`` kept it, and the
        # connection reads it once it knows its transport.
        secure.set_protocol(self._connection)
        self._connection.connection_made(secure)
        if held.overflowed:
            secure.abort()
        elif held.data and not secure.is_closing():
            _feed(self._connection, held.data)

    def _hand_over_early_bytes(self, transport: Any) -> None:
        early, self._early = self._early, None
        if not early or transport.is_closing():
            return
        _feed(transport.get_protocol(), early)

    def _report(self, error: BaseException) -> None:
        if not isinstance(error, ssl.SSLError | ConnectionAbortedError):
            # The peer went away (a port check, a client that gave up): its
            # handshake did not fail, it did not happen.
            log.debug("%s: closed during the TLS handshake: %r", self._peer, error)
            return
        reason = str(error) or type(error).__name__
        self._failures.failed(self._host, self._peer, self._listener, reason)


def _feed(protocol: Any, data: bytearray) -> None:
    """``data`` to a buffered protocol, as its transport would hand it on
    (the TLS protocols of asyncio and uvloop, and Connection, are buffered)."""
    view = memoryview(data)
    while view:
        buffer = protocol.get_buffer(len(view))
        size = min(len(buffer), len(view))
        buffer[:size] = view[:size]
        protocol.buffer_updated(size)
        view = view[size:]


class _HeldAppData(asyncio.BufferedProtocol):
    """The TLS transport's protocol until start_tls returns: it keeps the
    application bytes that arrive with the end of the handshake, at most
    ``MAX_EARLY_BYTES`` (past it the connection is closed)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.overflowed = False
        self._buffer = bytearray(16 * 1024)

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self._buffer)

    def buffer_updated(self, nbytes: int) -> None:
        if len(self.data) + nbytes > MAX_EARLY_BYTES:
            self.overflowed = True
            return
        self.data += self._buffer[:nbytes]

    def eof_received(self) -> bool:
        return False
