"""What a request handler sees: the engine, this broker's identity, and the
request's header. A handler is a function from (context, request) to a
response dict, or to an awaitable of one (or of None: no response, as for a
Produce with acks=0)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from engine.engine import Engine
from engine.errors import ERROR_CODES, EngineError
from engine.protocol.frames import RequestHeader
from engine.server.config import ServerConfig

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
