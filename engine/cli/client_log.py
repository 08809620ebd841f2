"""The log lines of the operator commands' Kafka clients (librdkafka), kept
off the terminal: a broker that cannot be reached would otherwise fill
stderr with a ``%3|...|FAIL|`` line per retry for as long as the command
waits. The last warning or error is kept, so the command's one line of
failure can say what the client last saw (``Connect to ... failed:
Connection refused``)."""

from __future__ import annotations

import logging
from typing import Any

LOGGER = logging.getLogger("tidelog.cli.kafka_client")
"""Handed to each client as librdkafka's ``logger``."""


class _LastWarning(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.text: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        # "FAIL [rdkafka#producer-1] [thrd:host:port/bootstrap]: host:port/bootstrap: Connect ..."
        self.text = record.getMessage().rpartition("]: ")[2]


_LAST = _LastWarning()
LOGGER.addHandler(_LAST)
LOGGER.propagate = False
_ADMINS: list[Any] = []
"""AdminClients of this run: they hand their log lines over only in poll()."""


def watch(admin: Any) -> Any:
    """``admin``, its log lines to be read by :func:`last_warning`."""
    _ADMINS.append(admin)
    return admin


def last_warning() -> str | None:
    """What a client last logged at WARNING or above, if anything."""
    for admin in _ADMINS:
        admin.poll(0)
    return _LAST.text


def forget() -> None:
    """Forget what was logged and the clients watched (a run starts afresh)."""
    _LAST.text = None
    _ADMINS.clear()
