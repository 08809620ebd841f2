"""An aiohttp application served on one address on the server's event loop:
what the Schema Registry API and the operations endpoints share, with the
bounds a hostile client meets on both (docs/design/0031).

- At most ``max_connections`` open at once: one more is answered 503
  (``Connection: close``) before a byte of it is read, its input dropped,
  and closed within ``REFUSED_LINGER_S``, so a client opening connections
  cannot take the descriptors the WAL, the object store and the Kafka
  listeners need.
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

from engine.server.http_limits import ConnectionLimits

REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain\r\n"
    b"Connection: close\r\n"
    b"Retry-After: 1\r\n"
    b"Content-Length: 31\r\n"
    b"\r\n"
    b"too many connections, try again"
)
"""What a connection past the limit gets (nginx's limit_conn answers 503)."""


REFUSED_LINGER_S = 1.0
"""How long a refused connection is kept for its answer to be read: closed
with the request unread, the kernel would reset it and the client could
lose the 503. Bounded, so that refused connections hold no descriptor long."""


class _Refused(asyncio.Protocol):
    """A connection past the limit: answered, its input dropped, and
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


class _LimitedSite(web.TCPSite):
    """aiohttp's TCPSite with a protocol factory that counts the open
    connections (aiohttp's server keeps them) against the limit."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, limit: int) -> None:
        super().__init__(runner, host, port, reuse_address=True)
        self._limit = limit
        self.refused = 0
        """Connections answered 503 for the limit."""

    def _protocol(self) -> asyncio.BaseProtocol:
        server = self._runner.server
        assert server is not None
        if len(server.connections) >= self._limit:
            self.refused += 1
            return _Refused()
        return server()

    async def start(self) -> None:
        await web.BaseSite.start(self)
        self._server = await asyncio.get_running_loop().create_server(
            self._protocol, self._host, self._port, backlog=self._backlog, reuse_address=True
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]


class HttpSite:
    """Starts an application on host:port; stops it; tells the bound port."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._site: _LimitedSite | None = None

    @property
    def port(self) -> int:
        """The bound port (the one the OS chose, for port 0)."""
        assert self._site is not None and self._site._server is not None, "not started"
        sockets = self._site._server.sockets  # type: ignore[attr-defined]
        return int(sockets[0].getsockname()[1])

    @property
    def refused(self) -> int:
        """Connections refused for ``max_connections`` since the start."""
        return 0 if self._site is None else self._site.refused

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
        self._site = _LimitedSite(self._runner, host, port, limits.max_connections)
        await self._site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
