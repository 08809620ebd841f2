"""What ``tidelog serve`` changes in its process, put back when it returns.

``serve`` configures the process as a program does (a stderr handler on
the root logger, its level, single loggers' levels, the JSON formatter and
the repeat filter on every root handler; a soft limit on open files raised
towards max.connections), yet it also runs inside processes that live on
after it: a test, a script calling the CLI's ``main``. Left in place, its
filter held back a later caller's repeated lines and its formatter turned
them into JSON; a second run added a second handler; the open-files limit
stayed raised for whatever the process did next.

Two changes are given back elsewhere or not at all: the collector's
(frozen objects, thresholds) by engine/gc_pause.py's context managers
around the serving itself; glibc's mallopt thresholds are never, as they
cannot be read back (engine/cli/serve.py's keep_freed_memory_for_reuse).
"""

from __future__ import annotations

import contextlib
import logging
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from logging import _FilterType  # a filter object or a callable, as typeshed spells it


@dataclass
class ProcessRestored:
    """The root logger's state and the soft limit on open files as
    ``serve`` found them, and the levels of the loggers it set
    (:meth:`set_level`)."""

    open_files_soft_limit: int
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
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != self.open_files_soft_limit:
            # Refused only when the hard limit was lowered below it meanwhile:
            # the soft one is then already lower than serve found it.
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files_soft_limit, hard))


@contextmanager
def process_restored() -> Iterator[ProcessRestored]:
    """The root logger's handlers (those added are removed), their
    formatters and filters, its level, the levels set through the yielded
    :class:`ProcessRestored` and the soft limit on open files, put back
    on leaving."""
    root = logging.getLogger()
    kept = ProcessRestored(
        resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        root.level,
        {handler: (handler.formatter, list(handler.filters)) for handler in root.handlers},
    )
    try:
        yield kept
    finally:
        kept.restore()
