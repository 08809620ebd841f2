"""The process's logging setup, as tests read it and leave it.

Logging is state of the whole process that outlives a test: pytest's own
handlers on the root logger (the one behind ``caplog`` among them) live
for the session, so a filter or formatter a test's code puts on them, or a
level it gives a logger, changes what every later test in the process
sees. ``tidelog serve`` run in-process does both: it holds back repeated
warnings on every handler of the root logger (engine/log_limit.py), so a
later test's ``caplog`` missed all but the first of a line it expected
once per test.

:func:`logging_kept` puts back what the code inside it changed;
:func:`records_of` reads a logger's lines through a handler of its own, so
a test asserting a line is logged depends on no handler it did not set.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from logging import _FilterType  # a filter object or a callable, as typeshed spells it


@dataclass(frozen=True)
class _LoggerState:
    level: int
    propagate: bool
    disabled: bool
    handlers: list[logging.Handler]
    filters: list[_FilterType]


@dataclass(frozen=True)
class _HandlerState:
    level: int
    formatter: logging.Formatter | None
    filters: list[_FilterType]


def _loggers() -> list[logging.Logger]:
    named = logging.Logger.manager.loggerDict.values()
    return [logging.getLogger(), *(found for found in named if isinstance(found, logging.Logger))]


def _state_of(logger: logging.Logger) -> _LoggerState:
    return _LoggerState(
        logger.level, logger.propagate, logger.disabled, list(logger.handlers), list(logger.filters)
    )


@contextmanager
def logging_kept() -> Iterator[None]:
    """Restores, on leaving, every logger's level, propagate and disabled
    flags, handlers and filters, every handler's level, formatter and
    filters, and ``logging.disable``'s level; a logger made inside is
    returned to a new logger's defaults."""
    loggers = {logger: _state_of(logger) for logger in _loggers()}
    handlers = {
        handler: _HandlerState(handler.level, handler.formatter, list(handler.filters))
        for state in loggers.values()
        for handler in state.handlers
    }
    disabled_below = logging.root.manager.disable
    try:
        yield
    finally:
        logging.disable(disabled_below)
        for handler, kept in handlers.items():
            handler.setLevel(kept.level)
            handler.setFormatter(kept.formatter)
            handler.filters[:] = kept.filters
        for logger in _loggers():
            state = loggers.get(logger) or _LoggerState(logging.NOTSET, True, False, [], [])
            logger.setLevel(state.level)
            logger.propagate = state.propagate
            logger.disabled = state.disabled
            logger.handlers[:] = state.handlers
            logger.filters[:] = state.filters


class _Records(logging.Handler):
    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def records_of(name: str, level: int = logging.WARNING) -> Iterator[list[logging.LogRecord]]:
    """The lines logged at ``level`` or above by the logger ``name`` and
    those below it while inside, gathered by a handler of the block's own
    (the logger's level lowered to ``level`` for the while)."""
    logger = logging.getLogger(name)
    handler = _Records(level)
    kept_level = logger.level
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(kept_level)
