"""Closing, when the interpreter exits, the engines a script left open, and
finishing those whose close was cut short (docs/design/0113)."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from typing import Protocol

log = logging.getLogger("tidelog.engine")

EXIT_CLOSE_TIMEOUT_S = 10.0
"""How long interpreter exit waits for an engine left open to close."""


class Closable(Protocol):
    def close(self) -> None: ...


_open_engines: weakref.WeakSet[Closable] = weakref.WeakSet()

# A child forked without exec (os.fork, multiprocessing's fork start
# method) has copies of its parent's engines but none of their threads:
# closing one at the child's exit would wait for threads that are not
# there, and write to files and a store that are the parent's. The child
# closes only the engines it opens itself.
os.register_at_fork(after_in_child=_open_engines.clear)


def opened(engine: Closable) -> None:
    """``engine`` is open: close it at exit unless it is closed first."""
    _open_engines.add(engine)


def closed(engine: Closable) -> None:
    """``engine``'s close finished (a close cut short leaves it here)."""
    _open_engines.discard(engine)


@atexit.register
def _close_at_exit() -> None:
    """Closes the engines a script left open when the interpreter exits: the
    log cache is uploaded if that finishes within EXIT_CLOSE_TIMEOUT_S in
    all, else the interpreter exits anyway and the next open replays the WAL,
    which holds everything acknowledged."""
    engines = list(_open_engines)
    if not engines:
        return
    closing = threading.Thread(target=_close_all, args=(engines,), name="tidelog-exit", daemon=True)
    closing.start()
    closing.join(EXIT_CLOSE_TIMEOUT_S)
    if closing.is_alive():
        log.warning(
            "%d engine(s) left open did not close within %.0f s at exit; "
            "the WAL holds what was acknowledged, and the next open replays it",
            len(engines),
            EXIT_CLOSE_TIMEOUT_S,
        )


def _close_all(engines: list[Closable]) -> None:
    for engine in engines:
        try:
            engine.close()
        except Exception:
            log.warning("closing an engine left open at exit failed", exc_info=True)
