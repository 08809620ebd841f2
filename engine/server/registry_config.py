"""The ``[schema_registry]`` settings: where the Schema Registry API listens
and who may use it (docs/schema-registry.md)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.server.config_ranges import REGISTRY_RANGES, REGISTRY_TEXTS, check_listen
from s3stream.ranges import check_ranges, check_texts

DEFAULT_REGISTRY_PORT = 8081
"""Confluent Schema Registry's port."""
KEYS = frozenset(
    {
        "listen",
        "authentication",
        "max_request_bytes",
        "body_timeout_s",
        "max_connections",
        "max_connections_per_address",
        "idle_timeout_s",
    }
)
"""What a ``[schema_registry]`` table may set."""


@dataclass(frozen=True)
class RegistryConfig:
    """The Schema Registry API's listener; off unless ``listen`` is set."""

    listen: tuple[str, int] | None = None
    """(host, port) to serve the API on; None: not served."""
    authentication: str = "auto"
    """``basic``: HTTP Basic against the catalog's SASL users; ``none``:
    open; ``auto``: ``basic`` when a Kafka listener authenticates its clients
    (SASL, or TLS requiring certificates), else ``none``."""
    max_request_bytes: int = 4 * 1024 * 1024
    """The largest request body read (a larger one is refused with 413)."""
    body_timeout_s: float = 30.0
    """How long a request body may take to arrive (a slower one is answered 408)."""
    max_connections: int = 256
    """Connections open at once; one more is answered 503 and closed."""
    max_connections_per_address: int | None = None
    """Of those, the most from one client address; one more from it is
    answered as one past ``max_connections``. None: a quarter of
    ``max_connections``, at least 1."""
    idle_timeout_s: float = 15.0
    """A connection without a whole request head for this long (from its
    start or its last answer) is closed."""

    def __post_init__(self) -> None:
        check_texts(self, REGISTRY_TEXTS)
        check_listen(self.listen)
        check_ranges(self, REGISTRY_RANGES)
