"""``tidelog serve``'s ``[mirror]``: the mirror as a background thread of
the server, reading the server's own listener as its source.

Through the listener the mirror is a Kafka client like any other (read
committed at the last stable offset, the same fetch path and authorizer),
and the one loop serves ``tidelog mirror`` and ``tidelog serve`` alike; the
cost is a loopback copy of each record, small beside the target's round
trip. confluent-kafka is imported only when the section is there.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from engine.errors import EngineError
from engine.mirror.runner import MirrorRunner
from engine.mirror.settings import MirrorSettings, settings_from_table

log = logging.getLogger("tidelog.mirror")

STOP_TIMEOUT_S = 30.0

_ANY_ADDRESS = {"", "0.0.0.0", "::"}


def listener_bootstrap(host: str, port: int) -> str:
    """The address this process reaches its own listener at."""
    if host in _ANY_ADDRESS:
        host = "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class BackgroundMirror:
    """A MirrorRunner on a thread of its own; a mirror that stops on an
    error logs it and leaves the server serving."""

    def __init__(self, settings: MirrorSettings) -> None:
        self.runner = MirrorRunner(settings)
        self._thread = threading.Thread(target=self._run, name="tidelog-mirror", daemon=True)

    @classmethod
    def from_table(cls, table: dict[str, Any], host: str, port: int) -> BackgroundMirror:
        return cls(settings_from_table(table, listener_bootstrap(host, port)))

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self.runner.run()
        except EngineError as error:
            log.error("the mirror stopped: %s: %s", type(error).__name__, error)

    def stop(self) -> None:
        """Stops the loop after its cycle (waits at most STOP_TIMEOUT_S)."""
        self.runner.stop.set()
        self._thread.join(STOP_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("the mirror did not stop in %.0f s", STOP_TIMEOUT_S)
