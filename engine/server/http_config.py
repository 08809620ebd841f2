"""The ``[http]`` settings: where the operations endpoints (``/metrics``,
``/healthz``, ``/readyz``) listen, and how fresh a readiness probe of the
object store must be (docs/operations.md)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.server.config_ranges import HTTP_RANGES, check_listen
from s3stream.ranges import check_ranges

DEFAULT_HTTP_PORT = 9644
"""Redpanda's admin API port, where its metrics are served."""
KEYS = frozenset(
    {
        "listen",
        "object_store_window_s",
        "probe_timeout_s",
        "max_connections",
        "max_connections_per_address",
        "idle_timeout_s",
    }
)
"""What an ``[http]`` table may set."""


@dataclass(frozen=True)
class HttpConfig:
    """The operations endpoints' listener; off unless ``listen`` is set."""

    listen: tuple[str, int] | None = None
    """(host, port) to serve on; None: not served."""
    object_store_window_s: float = 10.0
    """``/readyz`` answers 503 when the object store has not answered a
    probe within this many seconds."""
    probe_timeout_s: float = 2.0
    """How long one probe of the object store may take."""
    max_connections: int = 64
    """Connections open at once; one more is answered 503 and closed."""
    max_connections_per_address: int | None = None
    """Of those, the most from one client address; one more from it is
    answered as one past ``max_connections``. None: a quarter of
    ``max_connections``, at least 1."""
    idle_timeout_s: float = 15.0
    """A connection without a whole request head for this long (from its
    start or its last answer) is closed."""

    def __post_init__(self) -> None:
        check_listen(self.listen)
        check_ranges(self, HTTP_RANGES)
