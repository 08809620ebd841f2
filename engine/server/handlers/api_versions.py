"""ApiVersions: what this server implements, at which versions."""

from __future__ import annotations

from typing import Any

from engine.errors import ERROR_CODES
from engine.protocol.apis import SUPPORTED_VERSIONS
from engine.server.context import NONE, RequestContext


def advertised_versions() -> list[dict[str, int]]:
    return [
        {"api_key": int(key), "min_version": low, "max_version": high}
        for key, (low, high) in sorted(SUPPORTED_VERSIONS.items())
    ]


def handle_api_versions(context: RequestContext, request: Any) -> dict[str, Any]:
    return {"error_code": NONE, "api_keys": advertised_versions(), "throttle_time": 0}


def unsupported_api_versions() -> dict[str, Any]:
    """The answer to an ApiVersions request at a version this server lacks."""
    return {
        "error_code": ERROR_CODES["UNSUPPORTED_VERSION"],
        "api_keys": advertised_versions(),
    }
