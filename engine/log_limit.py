"""Rate-limited logging: a line that repeats (the same logger, level and
message template, whatever its arguments) is written the first time, then
held back; the first one after ``interval_s`` is written with the count of
those held back since. A flood of bad connections, or a disk that stays
full, then costs a line per interval instead of one per event.

``tidelog serve`` installs the filter on its log handlers; an application
embedding the engine can do the same with :func:`limit_repeated_lines`.
It is a handler filter, so it sees the lines of every package (wal and
s3stream log through the standard logging module and need no import of
this one). Only warnings and errors are held back: INFO lines (start-up,
the periodic activity line) are written as they come.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from engine.clock import monotonic

DEFAULT_INTERVAL_S = 10.0
_MAX_KEYS = 4096
"""Distinct templates remembered; past it, those not seen for an interval go."""

_Key = tuple[str, int, str]
_VERDICT = "_tidelog_repeat_verdict"
"""Where a line keeps the filter's verdict: one filter serves every handler
of a logger, and each handler must see the line the same way."""


class _Seen:
    __slots__ = ("held", "since")

    def __init__(self, since: float) -> None:
        self.since = since
        self.held = 0


class RepeatFilter(logging.Filter):
    """Holds back a line repeated within ``interval_s`` of the last one written."""

    def __init__(
        self,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._seen: dict[_Key, _Seen] = {}
        self._lock = threading.Lock()  # lines come from every thread (WAL, uploads, server)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        verdict: bool | None = getattr(record, _VERDICT, None)
        if verdict is None:
            with self._lock:
                verdict = self._judge(record)
            setattr(record, _VERDICT, verdict)
        return verdict

    def _judge(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen.since < self.interval_s:
            seen.held += 1
            return False
        if seen is not None and seen.held:
            record.msg = (
                f"{record.getMessage()} ({seen.held} more like this"
                f" in the last {now - seen.since:.0f} s)"
            )
            record.args = None
            record.repeated = seen.held  # a field of its own in JSON lines (log_json.py)
        if seen is None and len(self._seen) >= _MAX_KEYS:
            self._forget(now)
        self._seen[key] = _Seen(now)
        return True

    def _forget(self, now: float) -> None:
        """Drops templates not seen for an interval (their next line is written)."""
        stale = [k for k, seen in self._seen.items() if now - seen.since >= self.interval_s]
        for key in stale:
            del self._seen[key]
        if len(self._seen) >= _MAX_KEYS:
            self._seen.clear()


def limit_repeated_lines(
    logger: logging.Logger | None = None, interval_s: float = DEFAULT_INTERVAL_S
) -> RepeatFilter:
    """Installs one RepeatFilter on every handler of ``logger`` (the root
    logger by default) and returns it."""
    target = logger if logger is not None else logging.getLogger()
    repeat = RepeatFilter(interval_s)
    for handler in target.handlers:
        handler.addFilter(repeat)
    return repeat
