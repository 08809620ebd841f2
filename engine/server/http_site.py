"""An aiohttp application served on one address on the server's event loop:
what the Schema Registry API and the operations endpoints share, with the
bounds a hostile client meets on both (docs/design/0031).

- At most ``max_connections`` open at once, and at most
  ``max_connections_per_address`` of them from one client address: one
  more is answered 503 (``Connection: close``) before a byte of it is
  read, its input dropped, and closed within ``REFUSED_LINGER_S``, so a
  client opening connections cannot take the descriptors the WAL, the
  object store and the Kafka listeners need, and one address cannot take
  every connection of the listener.
- A connection with no complete request head for ``idle_timeout_s`` (from
  its start or its last answer) is closed: an idle keep-alive connection,
  one that never sends, and one trickling its headers alike.
- aiohttp's parser answers 400 and closes a request line or a header of
  more than 8190 bytes or more than 128 headers: a header section is read
  to about 1 MiB at most.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from engine.server.address_shares import AddressShares
from engine.server.http_limits import ConnectionLimits, connections_per_address
from wal.interrupts import Releasing, release

REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain\r\n"
    b"Connection: close\r\n"
    b"Retry-After: 1\r\n"
    b"Content-Length: 31\r\n"
    b"\r\n"
    b"too many connections, try again"
)
"""What a connection past a limit gets (nginx's limit_conn answers 503)."""


REFUSED_LINGER_S = 1.0
"""How long a refused connection is kept for its answer to be read: closed
with the request unread, the kernel would reset it and the client could
lose the 503. Bounded, so that refused connections hold no descriptor long."""


class _Refused(asyncio.Protocol):
    """A connection past a limit: answered, its input dropped, and
    closed when the client closes or after ``REFUSED_LINGER_S``."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(REFUSED)
        transport.write_eof()
        self._abort = asyncio.get_running_loop().call_later(REFUSED_LINGER_S, transport.abort)

    def data_received(self, data: bytes) -> None:
        pass  # never read: the answer is already sent

    def eof_received(self) -> bool:
        return False  # close

    def connection_lost(self, exc: Exception | None) -> None:
        self._abort.cancel()


class _Gated(Releasing, asyncio.Protocol):
    """One accepted connection: aiohttp's handler when the connection is
    admitted, else ``_Refused``; every event goes to that one. The decision
    waits for ``connection_made``, where the peer's address is known.

    An admission is a take of wal/interrupts.py: on an event loop run on
    the main thread under Python's own SIGINT handler, a Ctrl-C landing in
    ``connection_lost`` is raised once the admission is given back, so a
    loop run again after it serves with its full count (docs/design/0113)."""

    def __init__(self, site: HttpSite, server: web.Server) -> None:
        self._window = False
        self._site = site
        self._server = server
        self._inner: asyncio.Protocol = _Refused()
        self._address: str | None = None
        """The peer's address while it holds an admission."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        address = _peer_address(transport)
        try:
            self._open_window()
            if self._site.admissions.admit(address) is None:
                self._address = address
                self._inner = self._server()
            else:
                self._close_window()
                self._site.refused += 1
        except BaseException:
            self._abandon()
            raise
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    @release
    def connection_lost(self, exc: Exception | None) -> None:
        # The window is closed here, by the release itself, not by a release
        # it calls: a Ctrl-C that landed in it is raised as it returns, even
        # while another connection (a scraper's kept alive) holds a window.
        try:
            try:
                self._inner.connection_lost(exc)
            finally:
                self._give_back()
        finally:
            self._close_window()

    @release
    def _abandon(self) -> None:
        try:
            self._give_back()
        finally:
            self._close_window()

    def _give_back(self) -> None:
        """(Inside a release.) The admission, given back once."""
        if self._address is not None:
            address, self._address = self._address, None
            self._site.admissions.release(address)


def _peer_address(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    # A socket gone before it was seen has no peer: such ones share one count.
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""


BACKLOG = 128
"""Connections the kernel queues before they are accepted (aiohttp's TCPSite's default)."""


class HttpSite:
    """Starts an application on host:port with its connection limits;
    stops it; tells the bound port. Built on aiohttp's public API only: the
    runner's ``server`` is the protocol factory of the connections admitted."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self.admissions = AddressShares(0, 0)
        """The open connections admitted, by client address (set by start)."""
        self.refused = 0
        """Connections refused for ``max_connections`` or an address's
        share of them since the start."""

    @property
    def port(self) -> int:
        """The bound port (the one the OS chose, for port 0)."""
        assert self._listener is not None, "not started"
        return int(self._listener.sockets[0].getsockname()[1])

    async def start(
        self, app: web.Application, host: str, port: int, limits: ConnectionLimits
    ) -> None:
        # No access log (a scrape a second would flood it) and no signal
        # handlers: the process's own shutdown owns SIGTERM and SIGINT.
        # aiohttp's keep-alive timeout also runs from a connection's start
        # until its first request head is whole: it is the idle bound.
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=limits.idle_timeout_s,
        )
        await self._runner.setup()
        server = self._runner.server
        assert server is not None  # set up
        self.admissions = AddressShares(limits.max_connections, connections_per_address(limits))
        self._listener = await asyncio.get_running_loop().create_server(
            lambda: _Gated(self, server), host, port, backlog=BACKLOG, reuse_address=True
        )

    async def stop(self) -> None:
        if self._listener is not None:  # no new connections; the runner closes the open ones
            self._listener.close()
            self._listener = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
