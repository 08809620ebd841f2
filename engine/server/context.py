"""What a request handler sees: the engine, this broker's identity, and the
request's header. A handler is a function from (context, request) to a
response dict, or to an awaitable of one (or of None: no response, as for a
Produce with acks=0)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from engine.catalog_snapshot import waited_after
from engine.engine import Engine
from engine.gc_pause import CollectorPaused
from engine.protocol.codec import Encoded, encode_response
from engine.protocol.frames import RequestHeader
from engine.provenance import Provenance
from engine.server.authorizer import ANONYMOUS, AllowAll, Authorizer
from engine.server.config import ServerConfig
from engine.server.fetch_sessions import FetchSessionCache
from engine.server.mutation_quotas import MutationQuotas
from engine.server.quotas import QuotaManager
from engine.server.request_deadlines import RequestDeadlines
from engine.server.shared_reads import SharedReads

if TYPE_CHECKING:
    from engine.server.authentication import Authentication

T = TypeVar("T")
Body = Mapping[str, Any]
Response = Body | Awaitable[Body | Encoded | None] | None


@dataclass(frozen=True)
class Broker:
    """This node as clients are told to reach it (the advertised listener)."""

    node_id: int
    host: str
    port: int

    def describe(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "host": self.host, "port": self.port, "rack": None}


@dataclass
class Identity:
    """Who is at the other end of a connection, as the authorizer sees it:
    its principal (``User:ANONYMOUS`` until it authenticates), the listener
    it came in on, and its address (for host-scoped ACLs)."""

    principal: str = ANONYMOUS
    listener: str = "PLAINTEXT"
    host: str = "?"
    address: str | None = None
    """host:port of the peer (provenance stamps name it); None in-process."""
    token_authenticated: bool = False
    """Whether it logged in with a delegation token (KIP-48)."""

    _provenance: Provenance | None = field(default=None, init=False, repr=False, compare=False)
    """The last value ``provenance`` made (see there)."""

    def provenance(self, client_id: str | None) -> Provenance:
        """Who this connection's produce requests come from, for a
        ``tidelog.provenance = stamp`` topic (engine/provenance.py).

        One value (it is immutable) for every request while the client id
        and this identity stay as they are, made again when either moves:
        Kafka's request header carries the client id with each request,
        and an identity replaced (a SASL re-authentication) or changed in
        place by a principal builder is compared field by field."""
        made = self._provenance
        if (
            made is None
            or made.client_id != client_id
            or made.principal is not self.principal
            or made.listener is not self.listener
            or made.address is not self.address
        ):
            made = self._provenance = Provenance(
                self.principal, self.listener, client_id, self.address
            )
        return made


NOBODY = Identity()
"""The identity of a request made in-process, not over a connection."""

PrincipalBuilder = Callable[[Identity], Identity]
"""Who a connection is, from what is known of it when it opens (its
listener and address): Kafka's KafkaPrincipalBuilder. Authentication may
replace the principal afterwards."""


@dataclass
class ServerState:
    engine: Engine
    config: ServerConfig
    cluster_id: str
    broker: Broker
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the server starts to shut down: requests that wait on a
    coordinator (a JoinGroup waits up to its rebalance timeout) give up."""
    fetch_sessions: FetchSessionCache = field(
        default_factory=lambda: FetchSessionCache(slots=0, eviction_ms=0, max_partitions=0)
    )
    """Incremental fetch sessions (KIP-227), sized by the config's
    max_incremental_fetch_session_cache_slots; none unless the server sets it."""
    shared_reads: SharedReads[Any] = field(default_factory=SharedReads)
    """Fetch reads that consumers of the same data share (shared_reads.py)."""
    admin: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="tidelog-admin")
    )
    """Where topic administration runs (see off_loop): one thread, since the
    engine does such changes one at a time anyway."""
    record_checks: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="tidelog-record-checks")
    )
    """Where produces to topics that check records' schemas are validated and
    appended (checked_appends.py): off the loop, in request order."""
    authorizer: Authorizer = field(default_factory=AllowAll)
    """What each principal may do (authorizer.py): everything, until ACLs are served."""
    brokers: dict[str, Broker] = field(default_factory=dict)
    """This node as advertised on each listener, by listener name (``broker``
    is the first listener's)."""
    quotas: QuotaManager | None = None
    """The client byte-rate quotas' rates (quotas.py), when served."""
    mutations: MutationQuotas | None = None
    """The controller mutation quota's buckets (mutation_quotas.py), when served."""
    deadlines: RequestDeadlines = field(default_factory=RequestDeadlines)
    """The timeouts of requests waiting to be answered (a Produce's acks),
    kept by one timer (request_deadlines.py)."""


def answer(context: RequestContext, future: Future[T], build: Callable[[T], Body]) -> Response:
    """The response built from a coordinator's future: at once if it is
    done, else from a coroutine that awaits it (see until_stopping)."""
    if future.done():
        return build(future.result())

    async def wait() -> Body:
        return build(await until_stopping(context, future))

    return wait()


class OffLoop:
    """An answer being made on the admin thread (off_loop). Its connection
    handles no request read after it until it is done (connection.py), as
    Kafka handles a connection's requests one at a time: a client may send
    a Produce right behind the config change it relies on.

    ``until``: done once the request has taken effect, when that comes
    before its answer (a Produce whose appends wait for a topic's creation
    or a transaction's add: held until they are submitted, not until they
    are acknowledged, so that a Produce sent behind it on the connection
    appends after it but pipelining still overlaps the acknowledgements)."""

    __slots__ = ("_waiting", "until")

    def __init__(
        self, waiting: Coroutine[Any, Any, Any], until: asyncio.Future[None] | None = None
    ) -> None:
        self._waiting = waiting
        self.until = until

    def __await__(self) -> Generator[Any, None, Any]:
        return self._waiting.__await__()


def off_loop(context: RequestContext, work: Callable[[], Body]) -> OffLoop:
    """The response ``work`` builds, encoded, on the server's admin thread,
    so a long change (creating thousands of topics) never stalls the event
    loop and the produce and fetch requests of other connections it serves.
    At shutdown the wait is given up (see until_stopping); work already
    started runs to its end (the engine's changes are all or nothing), work
    not started yet never starts."""
    header = context.header

    def run() -> Encoded:
        # Requests here are bounded (Kafka's bound of records per request)
        # but may make and encode a great many objects (gc_pause.py).
        # A catalog snapshot the work made due is waited for once the work
        # released the locks it took (the engine's, which the loop takes
        # too): the request is answered only once it ended.
        with CollectorPaused(), waited_after():
            # One buffer: the loop then hands the socket one large write
            # instead of iterating over thousands of small parts.
            return Encoded([b"".join(encode_response(header, work()))])

    async def wait() -> Encoded:
        try:
            work = context.server.admin.submit(run)
        except RuntimeError:
            # Shut down: the server stopped between this request's dispatch
            # and its wait's start. Given up, as the requests waiting are.
            raise asyncio.CancelledError from None
        return await until_stopping(context, work)

    return OffLoop(wait())


async def until_stopping(context: RequestContext, future: Future[T]) -> T:
    """The future's result, or cancellation once the server is stopping.

    A cancelled request gets no response and its connection closes at
    shutdown, as when a broker goes away: the client looks its coordinator
    up again and retries, instead of holding the shutdown for its wait."""
    waiting = asyncio.wrap_future(future)
    stopping = asyncio.ensure_future(context.server.stopping.wait())
    try:
        await asyncio.wait((waiting, stopping), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not waiting.done():
            # Given up (stopping, or this request cancelled with its
            # connection): work still running may yet fail, and its error
            # must not land on a future nobody reads ("Future exception was
            # never retrieved" in the log).
            waiting.cancel()
        elif not waiting.cancelled():
            # Done, but this wait may be leaving without reading it (cancelled
            # as the work failed): mark its error read, or asyncio logs it.
            waiting.exception()
    if waiting.cancelled():
        raise asyncio.CancelledError
    return waiting.result()


class RequestContext(NamedTuple):
    server: ServerState
    header: RequestHeader
    identity: Identity = NOBODY
    authentication: Authentication | None = None
    """The connection's SASL state (None for a request made in-process)."""

    @property
    def broker(self) -> Broker:
        """This node as advertised on the listener the request came in on
        (Kafka answers Metadata with the endpoints of that listener)."""
        return self.server.brokers.get(self.identity.listener, self.server.broker)

    @property
    def version(self) -> int:
        return self.header.api_version

    @property
    def engine(self) -> Engine:
        return self.server.engine


Handler = Callable[[RequestContext, Any], Response]


def error_message(error: BaseException) -> str:
    return str(error) or type(error).__name__
