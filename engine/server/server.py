"""The Kafka wire server: its listeners (a listening socket each, with its
security protocol), their connections, and a clean shutdown, on one
asyncio event loop over an open engine. Connection limits count the
connections of every listener together."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import ssl
from collections import Counter
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from engine import clock
from engine.engine import Engine
from engine.server.acl_authorizer import authorizer_for
from engine.server.config import ServerConfig
from engine.server.connection import SHARED_READ_BYTES, Connection
from engine.server.context import Broker, PrincipalBuilder, ServerState
from engine.server.fetch_sessions import FetchSessionCache
from engine.server.listeners import Listener, SecurityProtocol
from engine.server.loop_lag import LoopLag
from engine.server.mutation_quotas import MutationQuotas
from engine.server.quotas import QuotaManager
from engine.server.request_metrics import RequestMetrics
from engine.server.sasl.jwks import KeySource
from engine.server.sasl.oauth_config import start_validator
from engine.server.sasl.oauthbearer import OAUTHBEARER, TokenValidator
from engine.server.sasl.password_checks import PasswordChecks
from engine.server.tls import PrincipalMapper, distinguished_name, server_context
from engine.server.tls_handshake import HandshakeFailures, TlsHandshake
from engine.topic_id import uuid_text
from wal.closing import Closing
from wal.thread_priority import ThreadPriority

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

log = logging.getLogger("tidelog.server")


@dataclass
class ServerStats:
    """Counters for the periodic activity log line."""

    connections: int = 0
    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    bytes_copied: int = 0
    """Request bytes copied in the broker: out of the shared read buffer
    (the rest were read straight into their request's own buffer), and
    bytes held while their connection was paused once more, into their
    request's own buffer when they are read again."""
    writes: int = 0
    """Writes to the connections' sockets (responses ready together share one)."""


def cluster_id_for(engine: Engine) -> str:
    """A stable cluster id (22 characters of URL-safe base64, like Kafka's):
    derived from the object store's identity, so every process serving the
    same bucket and prefix reports the same cluster."""
    digest = hashlib.sha256(engine.storage_url.encode()).digest()[:16]
    return uuid_text(digest)


class Server:
    def __init__(
        self,
        engine: Engine,
        config: ServerConfig | None = None,
        *,
        principal_builder: PrincipalBuilder | None = None,
    ) -> None:
        self.engine = engine
        self.config = config or ServerConfig()
        self.principal_builder = principal_builder
        """Who a new connection is before it authenticates (Kafka's
        KafkaPrincipalBuilder); None: Kafka's anonymous principal."""
        self.connections: set[Connection] = set()
        self.paused: set[Connection] = set()
        self.finishing: Connection | None = None
        """The connection whose request is read to its end past the budget
        (or whose requests held unread are handled past it)."""
        self.stalled: set[Connection] = set()
        """Connections stopped for the budget in the middle of a request, or
        holding requests unread."""
        self.inflight_bytes = 0
        """Bytes counted against max_inflight_bytes (connection.py)."""
        self.non_reader_held_bytes = 0
        """Bytes connections whose clients read no answers hold unread: left
        out of ``inflight_bytes`` (docs/design/0043), shown on their own."""
        self.stats = ServerStats()
        self.quotas = QuotaManager(engine.client_quotas)
        """The client byte-rate quotas' rates (engine/server/quotas.py)."""
        self.read_buffer = bytearray(SHARED_READ_BYTES)
        """The one buffer every connection reads into between requests."""
        self._per_host: Counter[str] = Counter()
        self._reporter: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._servers: dict[str, asyncio.Server] = {}
        self._closing = Closing("Server")
        self._state: ServerState | None = None
        self._principals = PrincipalMapper(self.config.ssl_principal_mapping_rules)
        self.handshakes: set[asyncio.Task[None]] = set()
        """TLS handshakes under way (tls_handshake.py)."""
        self._handshake_failures = HandshakeFailures(self.now)
        self.request_metrics = RequestMetrics()
        """What the connections count as they answer (request_metrics.py)."""
        self.token_validator: TokenValidator | None = None
        """OAUTHBEARER's validator, when a listener enables it (started with the server)."""
        self._token_keys: KeySource | None = None
        self._password_check_priority = ThreadPriority.below_caller(
            # The store's background priority: a login waits for it, but
            # the acknowledgements on the event loop come first.
            engine.config.store.background_nice
        )
        self.password_checks = self._new_password_checks()
        """Where SASL/PLAIN passwords are checked (sasl/password_checks.py);
        stop shuts it down, and a start after that makes a new one."""
        self.loop_lag = LoopLag()
        """How late the event loop runs (loop_lag.py)."""

    @property
    def port(self) -> int:
        """The first listener's port (the one the OS chose, for port 0)."""
        return next(iter(self.ports.values()))

    @property
    def ports(self) -> dict[str, int]:
        """Each listener's port, by listener name."""
        assert self._servers, "the server is not started"
        return {name: s.sockets[0].getsockname()[1] for name, s in self._servers.items()}

    def tls_principal(self, peercert: Any) -> str | None:
        """The principal a client certificate names (ssl.principal.mapping.rules),
        or None without one. Raises tls.NoMatchingRule."""
        if not peercert:
            return None
        return f"User:{self._principals.name(distinguished_name(peercert))}"

    def _new_password_checks(self) -> PasswordChecks:
        """A pool for PLAIN's checks (its threads start with its first check)."""
        return PasswordChecks(
            self.config.sasl_password_check_threads,
            self.config.sasl_password_check_queue_size,
            self.config.password_checks_per_address,
            self._password_check_priority,
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._closing.begun and not self._closing.finished:
            # A stop cut short is finished first: its close, kept, would
            # skip the steps it did (closing the listeners) for this
            # start's, and the next stop() wait for ever on them.
            await self.stop()
        if self.password_checks.stopped:  # a server started again after stop()
            self.password_checks = self._new_password_checks()
        if self._closing.begun:
            # Likewise its close: the last stop's, finished, would make the
            # next stop() return at once, its listeners left bound.
            self._closing = Closing("Server")
        listeners = self.config.effective_listeners
        # The TLS contexts before the token keys: a keystore that cannot be
        # read fails the start with nothing yet running (the keys' refresh
        # is a task, which the clean-up below would not reach from here).
        tls: dict[SecurityProtocol, ssl.SSLContext] = {}
        for listener in listeners:
            if listener.protocol.uses_tls and listener.protocol not in tls:
                tls[listener.protocol] = server_context(
                    self.config, client_auth=listener.protocol is SecurityProtocol.SSL
                )
        if any(OAUTHBEARER in self.config.mechanisms(x) for x in listeners if x.protocol.uses_sasl):
            self.token_validator, self._token_keys = await start_validator(
                self.config.oauthbearer, clock.time_ms
            )
        # Until the listeners serve, a failure closes what this start opened
        # with stop()'s own steps, over whatever it made (_close): its
        # listeners bound but not serving, a state half made, its tasks and
        # pools. Its port is free and stop() finds nothing left to stop.
        self._state = None  # the last start's, stopped with it
        try:
            for listener in listeners:
                self._servers[listener.name] = await loop.create_server(
                    self._connection_factory(listener, tls),
                    listener.host,
                    listener.port,
                    reuse_address=True,
                    backlog=1024,
                    # Served only once the state below is made: a request
                    # read before then would find none, or, in a server
                    # started again, the last start's (stopped) one, which
                    # its connection keeps (Connection._state).
                    start_serving=False,
                )
            ports = self.ports
            brokers = {
                listener.name: Broker(
                    self.config.node_id, *self.config.advertised(listener, ports[listener.name])
                )
                for listener in listeners
            }
            self._state = self._new_state(brokers[listeners[0].name], brokers)
            self.engine.broker_configs.set_static(
                {
                    "broker.id": self.config.node_id,
                    "max.connections": self.config.max_connections,
                    "socket.request.max.bytes": self.config.max_request_bytes,
                    "connections.max.reauth.ms": self.config.connections_max_reauth_ms,
                }
            )
            self.engine.metrics().add_source(self, self._collector)
            self._reporter = asyncio.create_task(self._report_activity())
            self._sweeper = asyncio.create_task(self._sweep_connections())
            self.loop_lag.start()
            for opened in self._servers.values():
                await opened.start_serving()
        except BaseException:
            # Its own close, best-effort: a step that fails is logged and the
            # rest still run, so the caller gets the start's error. One cut
            # short (cancelled again) is finished by stop() or the next start.
            self._closing = Closing("Server", best_effort=True)
            await self._close(self._closing)
            self._state = None
            raise
        for listener in listeners:
            advertised = brokers[listener.name]
            log.info(
                "listening on %s:%d, %s (advertised as %s:%d, node %d)",
                listener.host,
                ports[listener.name],
                listener.name,
                advertised.host,
                advertised.port,
                advertised.node_id,
            )
            authenticates = listener.protocol.uses_sasl or (
                listener.protocol.uses_tls and self.config.ssl_client_auth == "required"
            )
            if not authenticates and not _is_loopback(listener.host):
                log.warning(
                    "listening on %s beyond this machine, and clients are not authenticated: "
                    "anyone who can reach port %d can read and write every topic",
                    listener.host or "every interface",
                    ports[listener.name],
                )

    def _new_state(self, broker: Broker, brokers: dict[str, Broker]) -> ServerState:
        """This start's state, its listeners bound."""
        sessions = FetchSessionCache(
            slots=self.config.max_incremental_fetch_session_cache_slots,
            eviction_ms=self.config.min_incremental_fetch_session_eviction_ms,
            max_partitions=self.config.max_incremental_fetch_session_partitions,
        )
        return ServerState(
            self.engine,
            self.config,
            cluster_id_for(self.engine),
            broker,
            fetch_sessions=sessions,
            authorizer=authorizer_for(self.config, self.engine),
            brokers=brokers,
            quotas=self.quotas,
            mutations=MutationQuotas(self.engine.client_quotas, self.now),
        )

    def _collector(self) -> Collector:
        """The server's metrics collector, made when the engine's metrics
        are first read (prometheus-client is imported then)."""
        from engine.server.server_collector import ServerCollector  # noqa: PLC0415

        return ServerCollector(self)

    def _connection_factory(
        self, listener: Listener, tls: dict[SecurityProtocol, ssl.SSLContext]
    ) -> Any:
        context = tls.get(listener.protocol)
        if context is None:
            return lambda: Connection(self, listener)
        # The handshake is the connection's own (tls_handshake.py), so that
        # a failed one is logged; one that stalls holds a connection like a
        # request that stalls: the same bound (asyncio's own is 60 s).
        timeout_s = self.config.connections_partial_request_timeout_ms / 1000
        return lambda: TlsHandshake(
            Connection(self, listener),
            context,
            timeout_s,
            listener.name,
            self._handshake_failures,
            self.handshakes,
        )

    @property
    def state(self) -> ServerState:
        assert self._state is not None, "the server is not started"
        return self._state

    async def stop(self) -> None:
        """Stops accepting, lets requests in flight finish (up to the
        shutdown timeout), then closes every connection. The engine is the
        caller's to close. A stop cut short (a cancellation, an exception)
        is finished by the next call (wal/closing.py)."""
        if self._closing.finished:
            return
        if not self._servers and not self._closing.begun:
            # Never started. A failed start's clean-up cut short may have no
            # listener (its port refused) and still its token keys to stop.
            return
        await self._close(self._closing)

    async def _close(self, closing: Closing) -> None:
        """The steps of stop(), and of a failed start's clean-up: each a
        no-op for what the start did not make (a state, tasks, token keys),
        the listeners closed first, before anything is awaited."""
        closing.step("listeners", self._stop_accepting)
        connections = list(self.connections)
        state = self._state
        if state is not None:
            closing.step("admin", lambda: state.admin.shutdown(wait=False, cancel_futures=True))
        if connections:
            log.info("finishing requests in flight on %d connections", len(connections))
        await closing.step_async("drain", lambda: self._drain(connections))
        closing.step("connections", lambda: _close_all(connections))
        if state is not None:
            closing.step("request deadlines", state.deadlines.close)
            closing.step(
                "record checks",
                lambda: state.record_checks.shutdown(wait=False, cancel_futures=True),
            )
        closing.step("password checks", self.password_checks.shutdown)
        await closing.step_async("tasks", self._tasks_ended)
        await closing.step_async("listeners closed", self._wait_closed)
        if self._token_keys is not None:
            await closing.step_async("token keys", self._token_keys.stop)
        closing.step("metrics", lambda: self.engine.metrics().remove_source(self))
        self._servers.clear()
        closing.finish()

    def _stop_accepting(self) -> None:
        """No new connections, handshakes or reads; coordinator waits give up."""
        for opened in self._servers.values():
            opened.close()
        for handshake in list(self.handshakes):
            handshake.cancel()
        for task in (self._reporter, self._sweeper):
            if task is not None:
                task.cancel()
        self.loop_lag.stop()
        for connection in list(self.connections):
            connection.stop_reading()
        if self._state is not None:
            self._state.stopping.set()  # coordinator waits give up (see until_stopping)

    async def _tasks_ended(self) -> None:
        """The reporter and the sweeper have ended (cancelled again: a
        best-effort listeners' step that failed may not have reached them)."""
        tasks = [task for task in (self._reporter, self._sweeper) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._reporter = self._sweeper = None

    async def _drain(self, connections: list[Connection]) -> None:
        await asyncio.gather(*(c.drain(self.config.shutdown_timeout_s) for c in connections))

    async def _wait_closed(self) -> None:
        for opened in self._servers.values():
            await opened.wait_closed()

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

    now = staticmethod(clock.monotonic)
    """The clock of the connection timeouts and request metrics (seconds,
    monotonic): clock.monotonic itself, read several times a request."""

    def admit(self, connection: Connection) -> str | None:
        """Why a new connection may not stay (max.connections,
        max.connections.per.ip), or None. As Kafka does, one over a limit is
        accepted and closed at once."""
        config = self.config
        max_connections = self.engine.broker_configs.max_connections  # dynamic
        if len(self.connections) >= max_connections:
            return f"max.connections ({max_connections}) are open"
        if self._per_host[connection.peer_host] >= config.max_connections_per_ip:
            return (
                f"max.connections.per.ip ({config.max_connections_per_ip}) are open"
                f" from {connection.peer_host}"
            )
        return None

    def connection_opened(self, connection: Connection) -> None:
        self.connections.add(connection)
        self._per_host[connection.peer_host] += 1
        self.stats.connections += 1
        log.debug("%s: connected", connection.peer)

    def connection_closed(self, connection: Connection) -> None:
        if connection in self.connections:
            self.connections.discard(connection)
            self._per_host[connection.peer_host] -= 1
            if not self._per_host[connection.peer_host]:
                del self._per_host[connection.peer_host]
        self.paused.discard(connection)
        self.stalled.discard(connection)
        if self.finishing is connection:
            self.pass_finishing()
        log.debug("%s: disconnected", connection.peer)

    async def _sweep_connections(self) -> None:
        """Closes connections idle past connections.max.idle.ms, and those
        whose request has not finished arriving within
        connections.partial.request.timeout.ms (a client that stalls, or
        trickles bytes, holds its buffer and a connection slot)."""
        config = self.config
        idle_s = config.connections_max_idle_ms / 1000
        partial_s = config.connections_partial_request_timeout_ms / 1000
        interval = min(1.0, max(0.05, min(idle_s, partial_s) / 10))
        while True:
            await asyncio.sleep(interval)
            now = self.now()
            for connection in list(self.connections):
                since = connection.partial_since
                if since is not None and now - since > partial_s:
                    connection.expire(
                        f"a request still incomplete after {now - since:.1f} s"
                        f" (connections.partial.request.timeout.ms"
                        f" {config.connections_partial_request_timeout_ms})",
                        logging.WARNING,
                    )
                elif (
                    since is None
                    and not connection.waiting
                    and now - connection.last_active > idle_s
                ):
                    connection.expire(
                        f"idle for {now - connection.last_active:.1f} s"
                        f" (connections.max.idle.ms {config.connections_max_idle_ms})",
                        logging.DEBUG,  # as Kafka: closing an idle connection is routine
                    )

    def maybe_resume(self) -> None:
        """Resumes connections paused for the server-wide limit once the
        bytes in flight fall to half of it."""
        if self.paused and self.inflight_bytes <= self.config.max_inflight_bytes // 2:
            paused, self.paused = self.paused, set()
            self.stalled.clear()
            for connection in paused:
                connection.resume_server_pause()

    def finish_past_budget(self, connection: Connection) -> None:
        """Lets ``connection``, which has nothing to answer, read its request
        to its end past the budget: when requests still arriving hold all of
        it, no answer will free it (Connection._check_budgets)."""
        self.finishing = connection
        self.stalled.discard(connection)
        self.paused.discard(connection)
        connection.resume_server_pause()

    def pass_finishing(self) -> None:
        """The request read past the budget is in (or the requests held
        unread are handled), or its connection gone: another stalled one
        with nothing to answer is read to its end (one with answers waiting
        takes its turn when they are written)."""
        self.finishing = None
        self.maybe_resume()  # below half the budget, everyone reads again
        for connection in self.stalled:
            if connection.finishes_request:
                self.finish_past_budget(connection)
                return


def _is_loopback(host: str) -> bool:
    """Whether ``host`` can only be reached from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _close_all(connections: list[Connection]) -> None:
    for connection in connections:
        connection.close()
