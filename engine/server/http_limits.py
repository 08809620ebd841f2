"""The bounds each HTTP listener puts on its connections (``[http]`` and
``[schema_registry]`` set them; engine/server/http_site.py applies them)."""

from __future__ import annotations

from typing import Protocol


class ConnectionLimits(Protocol):
    """What a listener's config says of its connections."""

    @property
    def max_connections(self) -> int:
        """Connections open at once; one more is answered 503 and closed."""
        ...

    @property
    def idle_timeout_s(self) -> float:
        """How long a connection may stay without a whole request head."""
        ...


def check_connection_limits(max_connections: int, idle_timeout_s: float) -> None:
    """Raises ValueError for a limit out of its range."""
    if not 1 <= max_connections <= 100_000:
        raise ValueError("max_connections must be from 1 to 100000")
    if not 0.1 <= idle_timeout_s <= 3600:
        raise ValueError("idle_timeout_s must be from 0.1 to 3600")
