"""What a handler waits on: a request cancelled (its connection closed)
while its work runs on another thread leaves nothing behind when that work
then fails: no "Future exception was never retrieved" in the log; and a
request whose turn on the admin thread comes after the server stopped is
given up as one waiting there is, not failed."""

from __future__ import annotations

import asyncio
import gc
from concurrent.futures import Future, ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest

from engine.protocol.errors import MalformedRequest
from engine.server.context import off_loop, until_stopping


def test_a_cancelled_wait_on_work_that_then_fails_reports_nothing() -> None:
    async def main() -> list[dict[str, Any]]:
        reported: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, what: reported.append(what))
        context: Any = SimpleNamespace(server=SimpleNamespace(stopping=asyncio.Event()))
        work: Future[int] = Future()
        assert work.set_running_or_notify_cancel()  # started: it can no longer be cancelled
        waiter = asyncio.ensure_future(until_stopping(context, work))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        work.set_exception(MalformedRequest("the request ends before byte 77 (it has 73)"))
        await asyncio.sleep(0.05)  # the failure reaches the loop's side of the future
        del waiter
        gc.collect()
        await asyncio.sleep(0)
        return reported

    assert asyncio.run(main()) == []


def test_work_that_fails_as_its_wait_is_cancelled_reports_nothing() -> None:
    """The race the other order leaves: the work's failure has reached the
    loop's side of the future, but the waiting request is cancelled (its
    connection closed) before it reads it."""

    async def main() -> list[dict[str, Any]]:
        reported: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, what: reported.append(what))
        context: Any = SimpleNamespace(server=SimpleNamespace(stopping=asyncio.Event()))
        work: Future[int] = Future()
        assert work.set_running_or_notify_cancel()
        waiter = asyncio.ensure_future(until_stopping(context, work))
        await asyncio.sleep(0)
        work.set_exception(MalformedRequest("the request ends before byte 57 (it has 56)"))
        # Runs after the failure is copied to the loop's future, before the
        # waiter wakes to read it.
        asyncio.get_running_loop().call_soon(waiter.cancel)
        with pytest.raises(asyncio.CancelledError):
            await waiter
        del waiter
        gc.collect()
        await asyncio.sleep(0)
        return reported

    assert asyncio.run(main()) == []


def test_admin_work_whose_turn_comes_after_stop_is_given_up_not_failed() -> None:
    """A request dispatched in the loop's turn that stop() then runs in:
    its wait starts once the admin thread is shut down. Given up
    (cancelled: no answer, the connection closes with the server), as
    the requests already waiting there are, never an error for the log
    (a handler's bug, "API key 19 failed", and its traceback)."""

    async def main() -> None:
        admin = ThreadPoolExecutor(1)
        stopping = asyncio.Event()
        stopping.set()
        admin.shutdown(wait=False, cancel_futures=True)
        server = SimpleNamespace(admin=admin, stopping=stopping)
        context: Any = SimpleNamespace(server=server, header=None)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.ensure_future(off_loop(context, lambda: {"error_code": 0}))

    asyncio.run(main())
