"""The Kafka wire server: a listening socket, its connections, and a clean
shutdown, on one asyncio event loop over an open engine."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from dataclasses import dataclass, replace

from engine.engine import Engine
from engine.server.config import ServerConfig
from engine.server.connection import Connection
from engine.server.context import Broker, ServerState

log = logging.getLogger("tidelog.server")


@dataclass
class ServerStats:
    """Counters for the periodic activity log line."""

    connections: int = 0
    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


def cluster_id_for(engine: Engine) -> str:
    """A stable cluster id (22 characters of URL-safe base64, like Kafka's):
    derived from the object store's identity, so every process serving the
    same bucket and prefix reports the same cluster."""
    digest = hashlib.sha256(engine.storage_url.encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class Server:
    def __init__(self, engine: Engine, config: ServerConfig | None = None) -> None:
        self.engine = engine
        self.config = config or ServerConfig()
        self.connections: set[Connection] = set()
        self.paused: set[Connection] = set()
        self.inflight_bytes = 0
        self.stats = ServerStats()
        self._reporter: asyncio.Task[None] | None = None
        self._server: asyncio.Server | None = None
        self._state: ServerState | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one the OS chose, for port 0)."""
        assert self._server is not None, "the server is not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Connection(self),
            self.config.host,
            self.config.port,
            reuse_address=True,
            backlog=1024,
        )
        broker = Broker(
            self.config.node_id,
            self.config.advertised_host or self.config.host,
            self.config.advertised_port or self.port,
        )
        self._state = ServerState(self.engine, self.config, cluster_id_for(self.engine), broker)
        self._reporter = asyncio.create_task(self._report_activity())
        log.info(
            "listening on %s:%d (advertised as %s:%d, node %d)",
            self.config.host,
            self.port,
            broker.host,
            broker.port,
            broker.node_id,
        )

    @property
    def state(self) -> ServerState:
        assert self._state is not None, "the server is not started"
        return self._state

    async def stop(self) -> None:
        """Stops accepting, lets requests in flight finish (up to the
        shutdown timeout), then closes every connection. The engine is the
        caller's to close."""
        if self._server is None:
            return
        self._server.close()
        if self._reporter is not None:
            self._reporter.cancel()
        connections = list(self.connections)
        for connection in connections:
            connection.stop_reading()
        self.state.stopping.set()  # coordinator waits give up (see until_stopping)
        self.state.admin.shutdown(wait=False, cancel_futures=True)
        if connections:
            log.info("finishing requests in flight on %d connections", len(connections))
            await asyncio.gather(*(c.drain(self.config.shutdown_timeout_s) for c in connections))
        for connection in connections:
            connection.close()
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _report_activity(self) -> None:
        """Logs what the server did (requests and bytes served, uploads to
        object storage) every ``activity_log_interval_s``, when anything was."""
        store = self.engine.store.stats
        interval = self.config.activity_log_interval_s
        last = replace(self.stats)
        last_uploads, last_uploaded = store.uploads, store.uploaded_bytes
        while True:
            await asyncio.sleep(interval)
            now = replace(self.stats)
            uploads, uploaded = store.uploads, store.uploaded_bytes
            if now == last and uploads == last_uploads:
                continue
            log.info(
                "last %.0f s: %d requests, %.1f MB in, %.1f MB out, %d connections open "
                "(%d new); %d uploads, %.1f MB to object storage",
                interval,
                now.requests - last.requests,
                (now.bytes_in - last.bytes_in) / 1e6,
                (now.bytes_out - last.bytes_out) / 1e6,
                len(self.connections),
                now.connections - last.connections,
                uploads - last_uploads,
                (uploaded - last_uploaded) / 1e6,
            )
            last, last_uploads, last_uploaded = now, uploads, uploaded

    # -- connections --------------------------------------------------------------------

    def connection_opened(self, connection: Connection) -> None:
        self.connections.add(connection)
        self.stats.connections += 1
        log.debug("%s: connected", connection.peer)

    def connection_closed(self, connection: Connection) -> None:
        self.connections.discard(connection)
        self.paused.discard(connection)
        log.debug("%s: disconnected", connection.peer)

    def maybe_resume(self) -> None:
        """Resumes connections paused for the server-wide limit once the
        bytes in flight fall to half of it."""
        if self.paused and self.inflight_bytes <= self.config.max_inflight_bytes // 2:
            paused, self.paused = self.paused, set()
            for connection in paused:
                connection.resume_server_pause()
