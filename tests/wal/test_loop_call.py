"""WriteAheadLog.submit_then: an append from an event loop whose outcome is
a call on that loop, in place of an asyncio future."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.wal.conftest import payloads
from wal import LogFailed, LoopCall, Position, WalOutcome, WriteAheadLog, group_commit

OpenLog = Callable[..., WriteAheadLog]
TIMEOUT = 30


def test_the_call_comes_on_the_loop_once_the_append_is_durable(open_log: OpenLog) -> None:
    log = open_log()
    calls: list[tuple[WalOutcome, threading.Thread, int]] = []

    async def main() -> Position:
        called = asyncio.Event()

        def then(outcome: WalOutcome) -> None:
            calls.append((outcome, threading.current_thread(), log.stats.syncs))
            called.set()

        syncs = log.stats.syncs
        log.submit_then(then, b"one", stream_id=3, start_offset=5, end_offset=6)
        assert calls == []  # never before submit_then returns
        await asyncio.wait_for(called.wait(), TIMEOUT)
        assert calls[0][2] > syncs  # after the sync that made it durable
        return log.submit(b"two").result(timeout=TIMEOUT)

    second = asyncio.run(main())
    ((outcome, thread, _),) = calls
    assert thread is threading.main_thread()  # the loop's
    assert isinstance(outcome, Position) and outcome < second
    assert payloads(log) == [b"one", b"two"]


def test_a_call_that_raises_leaves_the_rest_of_its_group_settled(open_log: OpenLog) -> None:
    """The calls and futures of one group are settled in one go on the loop:
    one call's exception goes to the loop's exception handler and every
    other append of the group is still answered."""
    log = open_log()
    reported: list[dict[str, Any]] = []

    def broken(outcome: WalOutcome) -> None:
        raise RuntimeError("a broken call")

    async def main() -> list[Position]:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: reported.append(context))
        with log.gathered():  # one group: broken's call first, then the others
            log.submit_then(broken, b"first")
            after = [log.submit_async(b"second"), log.submit_async(b"third")]
        return await asyncio.wait_for(asyncio.gather(*after), TIMEOUT)

    positions = asyncio.run(main())
    assert len(positions) == 2
    assert [type(context["exception"]) for context in reported] == [RuntimeError]
    assert payloads(log) == [b"first", b"second", b"third"]


def test_a_failed_append_calls_with_its_error(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log()

    def broken(*args: object, **kwargs: object) -> bytes:
        raise ValueError("a defect in the writer")

    monkeypatch.setattr(group_commit, "encode_placed_record_header", broken)

    async def main() -> WalOutcome:
        outcome: asyncio.Future[WalOutcome] = asyncio.get_running_loop().create_future()
        log.submit_then(outcome.set_result, b"lost")
        return await asyncio.wait_for(outcome, TIMEOUT)

    assert isinstance(asyncio.run(main()), LogFailed)


def test_a_call_raising_cancelled_error_is_reported_and_its_group_settled(
    open_log: OpenLog,
) -> None:
    """CancelledError is a BaseException, not an Exception: a call raising
    it is reported as any failing call is, not let through to cut the
    group's settling short."""
    log = open_log()
    reported: list[dict[str, Any]] = []

    def cancelled(outcome: WalOutcome) -> None:
        raise asyncio.CancelledError

    async def main() -> list[Position]:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: reported.append(context))
        with log.gathered():
            log.submit_then(cancelled, b"first")
            after = [log.submit_async(b"second"), log.submit_async(b"third")]
        return await asyncio.wait_for(asyncio.gather(*after), TIMEOUT)

    positions = asyncio.run(main())
    assert len(positions) == 2
    assert [type(context["exception"]) for context in reported] == [asyncio.CancelledError]


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_a_call_stopping_the_loop_leaves_its_group_settled(
    open_log: OpenLog, stop: type[BaseException]
) -> None:
    """KeyboardInterrupt and SystemExit stop the loop, as from any callback,
    but only after the rest of the group is settled: their appends are
    durable and are answered."""
    log = open_log()
    after: list[asyncio.Future[Position]] = []
    later: list[WalOutcome] = []

    def stopping(outcome: WalOutcome) -> None:
        raise stop

    async def main() -> None:
        with log.gathered():
            log.submit_then(stopping, b"first")
            after.extend([log.submit_async(b"second"), log.submit_async(b"third")])
            log.submit_then(later.append, b"fourth")
        await asyncio.sleep(TIMEOUT)

    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(stop):
            loop.run_until_complete(main())
        assert [future.done() and isinstance(future.result(), Position) for future in after] == [
            True,
            True,
        ]
        assert len(later) == 1 and isinstance(later[0], Position)
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


class _Raising(LoopCall):
    """A caller's own waiter (WriteAheadLog.submit_to) whose call raises."""

    __slots__ = ("seen",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.seen: list[WalOutcome] = []

    def durable(self, outcome: WalOutcome) -> None:
        self.seen.append(outcome)
        raise RuntimeError("a broken call")


def test_a_call_raising_on_a_failed_append_leaves_the_rest_of_its_group_failed(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed group is settled through each waiter's set_exception: a
    LoopCall whose call raises there is reported to the loop's exception
    handler as on success, and every other append of the group is still
    given the failure, not left waiting."""
    log = open_log()
    reported: list[dict[str, Any]] = []

    def broken(*args: object, **kwargs: object) -> bytes:
        raise ValueError("a defect in the writer")

    monkeypatch.setattr(group_commit, "encode_placed_record_header", broken)

    async def main() -> tuple[_Raising, list[BaseException | Position]]:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: reported.append(context))
        first = _Raising(loop)
        with log.gathered():  # one group: the raising call first, then the others
            log.submit_to(first, b"first")
            after = [log.submit_async(b"second"), log.submit_async(b"third")]
        outcomes = asyncio.gather(*after, return_exceptions=True)
        return first, await asyncio.wait_for(outcomes, TIMEOUT)

    first, outcomes = asyncio.run(main())
    assert [isinstance(outcome, LogFailed) for outcome in first.seen] == [True]
    assert [isinstance(outcome, LogFailed) for outcome in outcomes] == [True, True]
    # Reported by the LoopCall itself, as its call's failure, not let out
    # to cut the group's settling short.
    assert [(type(c["exception"]), c["message"]) for c in reported] == [
        (RuntimeError, "an append's durable call failed")
    ]
