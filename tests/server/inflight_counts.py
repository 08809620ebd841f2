"""What the server counts of its connections' in-flight bytes
(engine/server/connection.py): in its budget, all they count but what one
holds unread while its client reads no answers (paused for writing); that,
apart."""

from __future__ import annotations

from collections.abc import Iterable

from engine.server.connection import Connection
from engine.server.server import Server


def held_while_not_read(connection: Connection) -> int:
    """What a connection holds unread while its client reads no answers."""
    return len(connection._held) if "writing" in connection._pauses else 0


def counted_by_the_server(connection: Connection) -> int:
    """What of a connection's counted bytes the server counts in its
    budget: all but what it holds while its client reads no answers."""
    return connection.inflight_bytes - held_while_not_read(connection)


def counted_exactly(server: Server, connections: Iterable[Connection]) -> bool:
    """Whether the server's counts (its budget's, and what non-readers
    hold apart) are what its connections' counts say; called on the
    server's loop."""
    connections = list(connections)
    return server.inflight_bytes == sum(map(counted_by_the_server, connections)) and (
        server.non_reader_held_bytes == sum(map(held_while_not_read, connections))
    )
