"""Log lines as JSON objects, one per line (``tidelog serve --log-format
json``), for log shippers that index fields instead of parsing text.

Each object has ``time`` (UTC, ISO 8601 with milliseconds), ``level``,
``logger`` and ``message`` (the formatted text); ``exception`` when the
line carries one; and every structured field the code attached (the
``extra=`` of a logging call, and ``repeated``: how many lines like it the
repeat filter held back, engine/log_limit.py). Values JSON cannot carry
are written as their text.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)
"""A LogRecord's own attributes: anything else on a record is a field the
code attached."""


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(
            (key, value)
            for key, value in vars(record).items()
            if key not in _STANDARD and not key.startswith("_")
        )
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str)


def use_json_lines(logger: logging.Logger | None = None) -> None:
    """Gives every handler of ``logger`` (the root logger by default) the
    JSON formatter."""
    target = logger if logger is not None else logging.getLogger()
    for handler in target.handlers:
        handler.setFormatter(JsonFormatter())
