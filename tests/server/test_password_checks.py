"""The pool that checks PLAIN passwords off the event loop: it admits its
threads' worth of checks and ``max_queued`` more, refuses the next at once,
and frees a slot when a check ends, or when a check still waiting is
given up (its client gone), never while a derivation still runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from engine.credentials import PLAIN, new_credential
from engine.server.sasl.password_checks import PasswordChecks, PasswordChecksBusy
from tests.server.held_checks import HeldChecks, held_checks
from wal.thread_priority import NORMAL

TIMEOUT = 30.0
CREDENTIAL = new_credential(PLAIN, "s3cret")


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldChecks]:
    with held_checks(monkeypatch) as checks:
        yield checks


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not condition():
            await asyncio.sleep(0.005)


def test_the_threads_and_the_queue_are_admitted_and_the_next_is_refused(held: HeldChecks) -> None:
    async def run() -> None:
        checks = PasswordChecks(threads=2, max_queued=3, priority=NORMAL)
        try:
            passwords = [b"s3cret", b"wrong", b"s3cret", b"wrong", b"s3cret"]
            admitted = [
                asyncio.ensure_future(checks.matches(CREDENTIAL, PLAIN, p)) for p in passwords
            ]
            await until(lambda: held.started == 2)
            assert checks.admitted == 5
            with pytest.raises(PasswordChecksBusy):
                await checks.matches(CREDENTIAL, PLAIN, b"s3cret")
            assert checks.refused == 1 and held.started == 2
            held.release()
            assert await asyncio.gather(*admitted) == [True, False, True, False, True]
            assert checks.admitted == 0
            assert await checks.matches(CREDENTIAL, PLAIN, b"s3cret")
            assert held.finished == 6
        finally:
            checks.shutdown()

    asyncio.run(run())


def test_a_check_given_up_frees_its_slot_once_its_derivation_ends(held: HeldChecks) -> None:
    async def run() -> None:
        checks = PasswordChecks(threads=1, max_queued=1, priority=NORMAL)
        try:
            running = asyncio.ensure_future(checks.matches(CREDENTIAL, PLAIN, b"s3cret"))
            await until(lambda: held.started == 1)
            waiting = asyncio.ensure_future(checks.matches(CREDENTIAL, PLAIN, b"s3cret"))
            await until(lambda: checks.admitted == 2)
            waiting.cancel()  # its client went before a thread took it: never derived
            await until(lambda: checks.admitted == 1)
            running.cancel()  # its thread still derives: the slot stays taken
            await asyncio.sleep(0)
            assert checks.admitted == 1
            queued = asyncio.ensure_future(checks.matches(CREDENTIAL, PLAIN, b"s3cret"))
            await until(lambda: checks.admitted == 2)
            with pytest.raises(PasswordChecksBusy):
                await checks.matches(CREDENTIAL, PLAIN, b"s3cret")
            held.release()
            assert await queued
            await until(lambda: checks.admitted == 0)
            assert held.finished == 2  # the cancelled waiting check never ran
        finally:
            checks.shutdown()

    asyncio.run(run())
