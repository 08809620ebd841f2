"""Connections the server closes of its own accord, as its log tells them:
what a test checks a kept connection by when the client under test may open
connections of its own (librdkafka reconnects its bootstrap connection for
a metadata refresh now and then, so the count of connections is not the
measure)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


class ServerCloses(logging.Handler):
    """What the server logs as it closes a connection of its own accord
    (Connection.abort and expire: "closing the connection"), or a request
    that failed in a handler (which closes it too)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.closes: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "closing the connection" in message or "failed" in message:
            self.closes.append(message)


@contextmanager
def server_closes() -> Iterator[ServerCloses]:
    """The server's closes while the block runs."""
    closes = ServerCloses()
    server_log = logging.getLogger("tidelog.server")
    server_log.addHandler(closes)
    try:
        yield closes
    finally:
        server_log.removeHandler(closes)
