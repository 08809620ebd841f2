"""The bounds each HTTP listener puts on its connections (``[http]`` and
``[schema_registry]`` set them; engine/server/http_site.py applies them)."""

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


def check_connection_limits(
    max_connections: int, max_connections_per_address: int | None, idle_timeout_s: float
) -> None:
    """Raises ValueError for a limit out of its range."""
    if not 1 <= max_connections <= 100_000:
        raise ValueError("max_connections must be from 1 to 100000")
    share = max_connections_per_address
    if share is not None and (type(share) is not int or not 1 <= share <= 100_000):
        raise ValueError(
            f"max_connections_per_address must be an integer from 1 to 100000, not {share!r}"
        )
    if not 0.1 <= idle_timeout_s <= 3600:
        raise ValueError("idle_timeout_s must be from 0.1 to 3600")
