"""What the server counts of its connections' in-flight bytes
(engine/server/connection.py): all they count, but what one holds unread
while its client reads no answers (paused for writing)."""

from __future__ import annotations

from collections.abc import Iterable

from engine.server.connection import Connection
from engine.server.server import Server


def counted_by_the_server(connection: Connection) -> int:
    """What of a connection's counted bytes the server counts: all but
    what it holds while its client reads no answers."""
    held_while_not_read = len(connection._held) if "writing" in connection._pauses else 0
    return connection.inflight_bytes - held_while_not_read


def counted_exactly(server: Server, connections: Iterable[Connection]) -> bool:
    """Whether the server's count is what its connections' counts say;
    called on the server's loop."""
    return server.inflight_bytes == sum(map(counted_by_the_server, connections))
