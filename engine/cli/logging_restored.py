"""What ``tidelog serve`` changes in the process's logging, put back when
it returns.

``serve`` configures logging as a program does (a stderr handler on the
root logger, its level, single loggers' levels, the JSON formatter and the
repeat filter on every root handler), yet it also runs inside processes
that live on after it: a test, a script calling the CLI's ``main``. Left
in place, its filter held back a later caller's repeated lines and its
formatter turned them into JSON; a second run added a second handler.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from logging import _FilterType  # a filter object or a callable, as typeshed spells it


@dataclass
class LoggingRestored:
    """The root logger's state as ``serve`` found it, and the levels of
    the loggers it set (:meth:`set_level`)."""

    root_level: int
    handlers: dict[logging.Handler, tuple[logging.Formatter | None, list[_FilterType]]]
    levels: dict[str, int] = field(default_factory=dict)

    def set_level(self, name: str, level: str) -> None:
        """Sets logger ``name``'s level, its own kept to be put back."""
        logger = logging.getLogger(name)
        self.levels.setdefault(name, logger.level)
        logger.setLevel(level)

    def restore(self) -> None:
        root = logging.getLogger()
        for handler in list(root.handlers):
            if handler not in self.handlers:  # basicConfig's: its stream is not closed
                root.removeHandler(handler)
                handler.close()
        for handler, (formatter, filters) in self.handlers.items():
            handler.setFormatter(formatter)
            handler.filters[:] = filters
        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)
        # After the named loggers: "root" may be one of them, its level kept
        # by set_level after basicConfig had already changed it.
        root.setLevel(self.root_level)


@contextmanager
def logging_restored() -> Iterator[LoggingRestored]:
    """The root logger's handlers (those added are removed), their
    formatters and filters, its level and the levels set through the
    yielded :class:`LoggingRestored`, put back on leaving."""
    root = logging.getLogger()
    kept = LoggingRestored(
        root.level,
        {handler: (handler.formatter, list(handler.filters)) for handler in root.handlers},
    )
    try:
        yield kept
    finally:
        kept.restore()
