"""The bounds each HTTP listener puts on its connections (``[http]`` and
``[schema_registry]`` set them, in the ranges of
engine/server/config_ranges.py; engine/server/http_site.py applies them)."""

from __future__ import annotations

from typing import Protocol

from engine.server.address_shares import default_share


class ConnectionLimits(Protocol):
    """What a listener's config says of its connections."""

    @property
    def max_connections(self) -> int:
        """Connections open at once; one more is answered 503 and closed."""
        ...

    @property
    def max_connections_per_address(self) -> int | None:
        """Of those, the most from one client address (None: the default,
        see ``connections_per_address``)."""
        ...

    @property
    def idle_timeout_s(self) -> float:
        """How long a connection may stay without a whole request head."""
        ...


def connections_per_address(limits: ConnectionLimits) -> int:
    """``max_connections_per_address``, or its default: a quarter of
    ``max_connections``, at least 1 (as ``sasl.password.check.queue.per.address``
    is of the password queue)."""
    share = limits.max_connections_per_address
    return default_share(limits.max_connections) if share is None else share
