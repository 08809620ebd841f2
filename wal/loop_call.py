"""A call on an event loop that stands where an append's asyncio future
would: the group commit calls its ``durable`` with the append's outcome,
on that loop, for all of a group's calls in one cross-thread call per
loop and group (group_commit._call_on_loop); one in a group with futures
is settled as they are (``set_result``, ``set_exception``).

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
    """Settled as an asyncio future is, on its loop; settling it runs its
    ``durable`` with the append's outcome. A caller with state of its own
    to carry to that moment subclasses it (``WriteAheadLog.submit_to``):
    the one object is then the waiter and the state, where a call bound
    to the state, a partial and a LoopCall were made an append."""

    __slots__ = ("_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def cancelled(self) -> bool:
        return False  # a call is never taken back: the append cannot be

    def durable(self, outcome: WalOutcome) -> None:
        """Runs on the loop with the append's position, or its WalError."""
        raise NotImplementedError

    def set_result(self, position: Position) -> None:
        # The group's other waiters are settled in the same call: a failing
        # durable must not leave them unsettled, so its error is the loop's
        # to report, as a failing done-callback's is.
        # Any error, as asyncio's Handle does: a CancelledError too (a
        # BaseException), which would otherwise cut the group's settling
        # short. SystemExit and KeyboardInterrupt still stop the loop, once
        # the group's settling has run (group_commit._settle_on_loop).
        # Written out here, not in a helper shared with set_exception: this
        # is every local acknowledgement's call, the helper a frame more.
        try:
            self.durable(position)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as error:
            self.report(error)

    def set_exception(self, error: BaseException) -> None:
        try:
            self.durable(error)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as raised:
            self.report(raised)

    def report(self, error: BaseException) -> None:
        """Hands what ``durable`` raised to the loop's exception handler,
        as a failing done-callback's error is."""
        context: dict[str, Any] = {"message": "an append's durable call failed"}
        context["exception"] = error
        self._loop.call_exception_handler(context)


class CallOnLoop(LoopCall):
    """A LoopCall that calls a function (``WriteAheadLog.submit_then``)."""

    __slots__ = ("_call",)

    def __init__(self, loop: asyncio.AbstractEventLoop, call: Callable[[WalOutcome], None]) -> None:
        super().__init__(loop)
        self._call = call

    def durable(self, outcome: WalOutcome) -> None:
        self._call(outcome)
