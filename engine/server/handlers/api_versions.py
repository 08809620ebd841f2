"""ApiVersions: what this server implements, at which versions."""

from __future__ import annotations

from typing import Any

from engine.protocol.apis import SUPPORTED_VERSIONS, ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server.context import RequestContext

# Produce is advertised from v0 although v0-v2 are not served (a request at
# those versions closes its connection, as any unsupported one does). Kafka
# 4.0 does the same (KAFKA-18659): older librdkafka (2.0, for one) enables
# gzip, snappy and lz4 only if the broker lists Produce v0, and otherwise
# sends every batch uncompressed. A client uses the highest common version,
# so none is led to send v0-v2.
_ADVERTISED_MIN = {ApiKey.PRODUCE: 0}


def advertised_versions() -> list[dict[str, int]]:
    return [
        {"api_key": int(key), "min_version": _ADVERTISED_MIN.get(key, low), "max_version": high}
        for key, (low, high) in sorted(SUPPORTED_VERSIONS.items())
    ]


def handle_api_versions(context: RequestContext, request: Any) -> dict[str, Any]:
    return {"error_code": KafkaCode.NONE, "api_keys": advertised_versions(), "throttle_time": 0}


def unsupported_api_versions() -> dict[str, Any]:
    """The answer to an ApiVersions request at a version this server lacks."""
    return {
        "error_code": KafkaCode.UNSUPPORTED_VERSION,
        "api_keys": advertised_versions(),
    }
