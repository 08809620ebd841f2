"""A close made of steps, each done once, that a second call resumes.

A close cut short (a KeyboardInterrupt, any exception) used to leave its
owner marked closed with its threads, pools and the WAL directory's lock
still held: a second close returned at once. Here a close is a sequence
of named steps; a step is marked done only once it returned, so a close
called again skips the steps done and runs the rest, the one cut short
first. A step may therefore run again after being cut short part way:
each is written to be safe to run again (a join, a set, a shutdown, a
descriptor taken before it is closed).

A step that must not run twice, nor stop half way (the WAL's seal, the
release of its directory lock), is ``atomic``: on the main thread under
Python's own SIGINT handler it runs as a release of wal/interrupts.py, so
a Ctrl-C landing in it is raised once it is marked done. Under another
handler (an event loop's) nothing raises in it.

A ``best_effort`` close is the clean-up of something that failed part
way (a server's start): a step that raises is logged with its owner and
name, counted done, and the next step still runs, so the error its
caller sees is the failure's own, not the clean-up's. A cancellation is
not caught: the close is left cut short, and the next call resumes it.

In wal/, the lowest package that closes this way: s3stream and engine
close their layers with it too (docs/design/0113).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from wal.interrupts import Releasing, release

log = logging.getLogger("tidelog.closing")


class Closing:
    """The steps of one owner's close, and which of them are done."""

    __slots__ = ("_done", "_finished", "best_effort", "owner")

    def __init__(self, owner: str, *, best_effort: bool = False) -> None:
        self.owner = owner
        """The closing class's name: a step is known as ``owner.name``."""
        self.best_effort = best_effort
        """Whether a step that raises is logged and the next still run."""
        self._done: set[str] = set()
        self._finished = False

    @property
    def finished(self) -> bool:
        """Whether every step is done (``finish`` was reached)."""
        return self._finished

    @property
    def begun(self) -> bool:
        """Whether a step is done: a close begun, finished or cut short."""
        return bool(self._done)

    def finish(self) -> None:
        self._finished = True

    def step(self, name: str, action: Callable[[], object], *, atomic: bool = False) -> None:
        """Runs ``action`` unless a close before this one finished it."""
        if name in self._done:
            return
        with self._given_up_on_failure(name):
            run_step(self.owner, name, action, lambda: self._done.add(name), atomic)

    async def step_async(self, name: str, action: Callable[[], Awaitable[object]]) -> None:
        """Awaits ``action()`` unless a close before this one finished it."""
        if name in self._done:
            return
        with self._given_up_on_failure(name):
            await run_step_async(self.owner, name, action)
            self._done.add(name)

    @contextmanager
    def _given_up_on_failure(self, name: str) -> Iterator[None]:
        """Step ``name``'s exception raised, or, in a best-effort close,
        logged and the step counted done, so that a close resumed later
        does not fail on it again. A cancellation is never caught."""
        try:
            yield
        except Exception:
            if not self.best_effort:
                raise
            log.exception("%s.%s failed; the steps after it still run", self.owner, name)
            self._done.add(name)


def run_step(
    owner: str,
    name: str,
    action: Callable[[], object],
    mark_done: Callable[[], None],
    atomic: bool,
) -> None:
    """Runs one step of ``owner``'s close and marks it done (the one place
    every step passes through: a test interrupts each in turn here)."""
    if not atomic:
        action()
        mark_done()
        return
    step = _AtomicStep()
    try:
        step._open_window()
        step.run(action, mark_done)
    finally:
        step._close_window()  # a no-op once run closed it


async def run_step_async(owner: str, name: str, action: Callable[[], Awaitable[object]]) -> None:
    """Awaits one step of ``owner``'s close (on an event loop, whose own
    SIGINT handler raises nothing inside it)."""
    await action()


class _AtomicStep(Releasing):
    """A step a Ctrl-C cannot cut short: it is a release."""

    __slots__ = ()

    @release
    def run(self, action: Callable[[], object], mark_done: Callable[[], None]) -> None:
        try:
            action()
            mark_done()
        finally:
            self._close_window()
