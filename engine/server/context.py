"""What a request handler sees: the engine, this broker's identity, and the
request's header. A handler is a function from (context, request) to a
response dict, or to an awaitable of one (or of None: no response, as for a
Produce with acks=0)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from engine.engine import Engine
from engine.errors import ERROR_CODES, EngineError
from engine.protocol.frames import RequestHeader
from engine.server.config import ServerConfig

T = TypeVar("T")
Body = Mapping[str, Any]
Response = Body | Awaitable[Body | None] | None


@dataclass(frozen=True)
class Broker:
    """This node as clients are told to reach it (the advertised listener)."""

    node_id: int
    host: str
    port: int

    def describe(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "host": self.host, "port": self.port, "rack": None}


@dataclass
class ServerState:
    engine: Engine
    config: ServerConfig
    cluster_id: str
    broker: Broker
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the server starts to shut down: requests that wait on a
    coordinator (a JoinGroup waits up to its rebalance timeout) give up."""


def answer(context: RequestContext, future: Future[T], build: Callable[[T], Body]) -> Response:
    """The response built from a coordinator's future: at once if it is
    done, else from a coroutine that awaits it (see until_stopping)."""
    if future.done():
        return build(future.result())

    async def wait() -> Body:
        return build(await until_stopping(context, future))

    return wait()


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
        waiting.cancel()
        raise asyncio.CancelledError
    return waiting.result()


class RequestContext(NamedTuple):
    server: ServerState
    header: RequestHeader

    @property
    def version(self) -> int:
        return self.header.api_version

    @property
    def engine(self) -> Engine:
        return self.server.engine


Handler = Callable[[RequestContext, Any], Response]


def error_code(error: BaseException) -> int:
    """The Kafka error code for an exception raised while serving a request."""
    if isinstance(error, EngineError):
        return error.error_code
    return ERROR_CODES["UNKNOWN_SERVER_ERROR"]


def error_message(error: BaseException) -> str:
    return str(error) or type(error).__name__


NONE = ERROR_CODES["NONE"]
