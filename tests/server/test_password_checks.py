"""The pool that checks PLAIN passwords off the event loop: it admits its
threads' worth of checks and ``max_queued`` more, refuses the next at once,
and frees a slot when a check ends, or when a check still waiting is
given up (its client gone), never while a derivation still runs. One
address is admitted at most its share of those checks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from engine.credentials import PLAIN, new_credential
from engine.server.config import ServerConfig
from engine.server.sasl.password_checks import PasswordChecks, PasswordChecksBusy
from tests.server.held_checks import HeldChecks, held_checks
from wal.thread_priority import NORMAL

TIMEOUT = 30.0
CREDENTIAL = new_credential(PLAIN, "s3cret")
PEER = "192.0.2.1"


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
        checks = PasswordChecks(threads=2, max_queued=3, per_address=5, priority=NORMAL)
        check = checks.for_address(PEER)
        try:
            passwords = [b"s3cret", b"wrong", b"s3cret", b"wrong", b"s3cret"]
            admitted = [asyncio.ensure_future(check(CREDENTIAL, PLAIN, p)) for p in passwords]
            await until(lambda: held.started == 2)
            assert checks.admitted == 5
            with pytest.raises(PasswordChecksBusy):
                await check(CREDENTIAL, PLAIN, b"s3cret")
            assert checks.refused == 1 and held.started == 2
            held.release()
            assert await asyncio.gather(*admitted) == [True, False, True, False, True]
            assert checks.admitted == 0
            assert await check(CREDENTIAL, PLAIN, b"s3cret")
            assert held.finished == 6
        finally:
            checks.shutdown()

    asyncio.run(run())


def test_a_check_given_up_frees_its_slot_once_its_derivation_ends(held: HeldChecks) -> None:
    async def run() -> None:
        checks = PasswordChecks(threads=1, max_queued=1, per_address=2, priority=NORMAL)
        check = checks.for_address(PEER)
        try:
            running = asyncio.ensure_future(check(CREDENTIAL, PLAIN, b"s3cret"))
            await until(lambda: held.started == 1)
            waiting = asyncio.ensure_future(check(CREDENTIAL, PLAIN, b"s3cret"))
            await until(lambda: checks.admitted == 2)
            waiting.cancel()  # its client went before a thread took it: never derived
            await until(lambda: checks.admitted == 1)
            running.cancel()  # its thread still derives: the slot stays taken
            await asyncio.sleep(0)
            assert checks.admitted == 1
            queued = asyncio.ensure_future(check(CREDENTIAL, PLAIN, b"s3cret"))
            await until(lambda: checks.admitted == 2)
            with pytest.raises(PasswordChecksBusy):
                await check(CREDENTIAL, PLAIN, b"s3cret")
            held.release()
            assert await queued
            await until(lambda: checks.admitted == 0)
            assert held.finished == 2  # the cancelled waiting check never ran
        finally:
            checks.shutdown()

    asyncio.run(run())


def test_an_address_is_admitted_its_share_and_the_others_the_rest(held: HeldChecks) -> None:
    async def run() -> None:
        checks = PasswordChecks(threads=1, max_queued=4, per_address=2, priority=NORMAL)
        flooding, other = checks.for_address("192.0.2.1"), checks.for_address("192.0.2.2")
        try:
            admitted = [asyncio.ensure_future(flooding(CREDENTIAL, PLAIN, b"wrong")) for _ in "ab"]
            await until(lambda: checks.admitted == 2)
            with pytest.raises(PasswordChecksBusy) as refused:
                await flooding(CREDENTIAL, PLAIN, b"wrong")
            assert (refused.value.address, refused.value.admitted) == ("192.0.2.1", 2)
            assert checks.refused == 1
            admitted += [asyncio.ensure_future(other(CREDENTIAL, PLAIN, b"s3cret")) for _ in "ab"]
            await until(lambda: checks.admitted == 4)
            assert checks.by_address == {"192.0.2.1": 2, "192.0.2.2": 2}
            held.release()
            assert await asyncio.gather(*admitted) == [False, False, True, True]
            await until(lambda: checks.admitted == 0)
            assert checks.by_address == {}  # an address leaves with its last check
            assert await flooding(CREDENTIAL, PLAIN, b"s3cret")
        finally:
            checks.shutdown()

    asyncio.run(run())


@pytest.mark.parametrize(("queue_size", "share"), [(64, 16), (10, 2), (3, 1), (0, 1)])
def test_an_address_share_is_a_quarter_of_the_queue_unless_set(queue_size: int, share: int) -> None:
    config = ServerConfig(sasl_password_check_queue_size=queue_size)
    assert config.password_checks_per_address == share
    set_share = ServerConfig(
        sasl_password_check_queue_size=queue_size, sasl_password_check_queue_per_address=5
    )
    assert set_share.password_checks_per_address == 5


def test_a_check_waiting_when_the_pool_shuts_down_is_refused_as_busy(held: HeldChecks) -> None:
    """Shutting down cancels the checks still waiting for a thread: their
    callers are told to try again (PasswordChecksBusy, the Schema Registry
    API's 503), as a check arriving after the shutdown is, where the
    cancellation reached them as their own and dropped the HTTP
    connection unanswered. A check its own caller gives up stays a
    cancellation."""

    async def run() -> None:
        checks = PasswordChecks(threads=1, max_queued=2, per_address=3, priority=NORMAL)
        check = checks.for_address(PEER)
        try:
            running = asyncio.ensure_future(check(CREDENTIAL, PLAIN, b"s3cret"))
            await until(lambda: held.started == 1)
            waiting = asyncio.ensure_future(check(CREDENTIAL, PLAIN, b"s3cret"))
            given_up = asyncio.ensure_future(check(CREDENTIAL, PLAIN, b"s3cret"))
            await until(lambda: checks.admitted == 3)
            given_up.cancel()
            checks.shutdown()
            with pytest.raises(PasswordChecksBusy):
                await waiting
            with pytest.raises(asyncio.CancelledError):
                await given_up
            held.release()
            assert await running  # a check a thread runs still gives its answer
            await until(lambda: checks.admitted == 0)
            assert held.finished == 1
        finally:
            checks.shutdown()

    asyncio.run(run())
