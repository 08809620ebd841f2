"""A call on an event loop that stands where an append's asyncio future
would: the group commit settles it as it settles a future (in one
cross-thread call per loop and group), and settling it calls the caller's
function with the append's outcome, on that loop.

For the server's hot path, which only wants to run a few lines once an
append is durable: a future there costs its creation, a wake-up of its own
to run its done-callbacks (or to step the task awaiting it) and the task or
coroutines built around it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from wal.segment import Position

WalOutcome = Position | BaseException
"""What a LoopCall's function is called with: the append's position once it
is durable, or the error that failed it (a WalError)."""


class LoopCall:
    __slots__ = ("_call", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, call: Callable[[WalOutcome], None]) -> None:
        self._loop = loop
        self._call = call

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def cancelled(self) -> bool:
        return False  # a call is never taken back: the append cannot be

    def set_result(self, position: Position) -> None:
        self._run(position)

    def set_exception(self, error: BaseException) -> None:
        self._run(error)

    def _run(self, outcome: WalOutcome) -> None:
        # The group's other waiters are settled in the same call: a failing
        # function must not leave them unsettled, so its error is the loop's
        # to report, as a failing done-callback's is.
        # Any error, as asyncio's Handle does: a CancelledError too (a
        # BaseException), which would otherwise cut the group's settling
        # short. SystemExit and KeyboardInterrupt still stop the loop, once
        # the group's settling has run (group_commit._settle_on_loop).
        try:
            self._call(outcome)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as error:
            context: dict[str, Any] = {"message": "an append's durable call failed"}
            context["exception"] = error
            self._loop.call_exception_handler(context)
