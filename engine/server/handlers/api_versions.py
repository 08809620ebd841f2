"""ApiVersions: what this server implements, at which versions (every
registration, see registry.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server.context import RequestContext
from engine.server.handlers.registry import advertised_versions, handles

if TYPE_CHECKING:
    # The kio request classes, for the handlers' annotations only: importing
    # every version's class costs the server's start hundreds of modules.
    from engine.server.handlers.requests import ApiVersionsRequest


@handles(
    ApiKey.API_VERSIONS,
    0,
    4,
    notes={
        0: "a version this server lacks is answered at v0: UNSUPPORTED_VERSION and this list",
        3: "flexible encoding; the client's software name and version",
    },
)
def handle_api_versions(context: RequestContext, request: ApiVersionsRequest) -> dict[str, Any]:
    return {"error_code": KafkaCode.NONE, "api_keys": advertised_versions(), "throttle_time": 0}


def unsupported_api_versions() -> dict[str, Any]:
    """The answer to an ApiVersions request at a version this server lacks."""
    return {
        "error_code": KafkaCode.UNSUPPORTED_VERSION,
        "api_keys": advertised_versions(),
    }
