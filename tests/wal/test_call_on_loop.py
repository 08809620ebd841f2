"""A group of LoopCalls (the server's every group of local appends) is
settled by calling each one's ``durable`` straight, in group order, in one
turn of its loop (group_commit._call_on_loop): each call once, with its own
append's position or the group's error, none before the group's sync, and
one call's failure leaves the rest of its group settled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from tests.wal.test_group_settling import held_syncs
from wal import LoopCall, Position, WalError, WalOutcome, WriteAheadLog, group_commit

OpenLog = Callable[..., WriteAheadLog]
TIMEOUT = 30
APPENDS = 64


class _Noting(LoopCall):
    """Notes its append's index and outcome, and the loop's turn it ran in,
    in the list every call of the test shares; raises ``raising`` if set."""

    __slots__ = ("_index", "_noted", "_raising", "_turns")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        index: int,
        noted: list[tuple[int, WalOutcome, int]],
        turns: list[int],
        raising: BaseException | None = None,
    ) -> None:
        super().__init__(loop)
        self._index = index
        self._noted = noted
        self._turns = turns
        self._raising = raising

    def durable(self, outcome: WalOutcome) -> None:
        self._noted.append((self._index, outcome, self._turns[0]))
        if self._raising is not None:
            raise self._raising


async def _count_turns(turns: list[int]) -> None:
    """Counts the loop's turns in ``turns[0]`` (one step a turn)."""
    while True:
        turns[0] += 1
        await asyncio.sleep(0)


async def _one_group(
    log: WriteAheadLog,
    monkeypatch: pytest.MonkeyPatch,
    noted: list[tuple[int, WalOutcome, int]],
    raising: dict[int, BaseException] | None = None,
    writes: bool = True,
) -> None:
    """APPENDS calls queued as one group (its sync held until all are
    queued), waited for until every one has noted its outcome. ``writes``:
    the group's write succeeds, so nothing is settled before its sync."""
    loop = asyncio.get_running_loop()
    turns = [0]
    ticker = asyncio.ensure_future(_count_turns(turns))
    raising = raising or {}
    try:
        with held_syncs(monkeypatch) as (release, _):
            with log.gathered():
                for index in range(APPENDS):
                    call = _Noting(loop, index, noted, turns, raising.get(index))
                    log.submit_to(call, b"append %d" % index)
            for _ in range(20):
                await asyncio.sleep(0)
            if writes:
                assert noted == []  # nothing settled before the group's sync
            release.set()
            for _ in range(TIMEOUT * 100):
                if len(noted) == APPENDS:
                    break
                await asyncio.sleep(0.01)
    finally:
        ticker.cancel()


def test_a_groups_calls_are_called_in_order_once_each_in_one_turn(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log()
    noted: list[tuple[int, WalOutcome, int]] = []
    asyncio.run(_one_group(log, monkeypatch, noted))
    assert [index for index, _, _ in noted] == list(range(APPENDS))
    positions = [outcome for _, outcome, _ in noted]
    assert all(isinstance(position, Position) for position in positions)
    # Each its own append's position: the log's records in the same order.
    assert positions == [entry.position for entry in log.replay()]
    assert len({turn for _, _, turn in noted}) == 1  # one hand-off, one turn


def test_a_failed_groups_calls_are_each_given_its_error(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log()
    noted: list[tuple[int, WalOutcome, int]] = []

    def broken(*args: object, **kwargs: object) -> bytes:
        raise ValueError("a defect in the writer")

    monkeypatch.setattr(group_commit, "encode_placed_record_header", broken)
    asyncio.run(_one_group(log, monkeypatch, noted, writes=False))
    assert [index for index, _, _ in noted] == list(range(APPENDS))
    assert all(isinstance(outcome, WalError) for _, outcome, _ in noted)
    assert len({id(outcome) for _, outcome, _ in noted}) == 1  # the group's one error


@pytest.mark.parametrize("failing", [0, 31, 63])
def test_a_call_that_raises_is_reported_and_the_rest_of_its_group_called(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch, failing: int
) -> None:
    log = open_log()
    noted: list[tuple[int, WalOutcome, int]] = []
    reported: list[dict[str, Any]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: reported.append(context))
        await _one_group(log, monkeypatch, noted, {failing: RuntimeError("a broken call")})

    asyncio.run(main())
    assert [index for index, _, _ in noted] == list(range(APPENDS))
    assert [(type(c["exception"]), c["message"]) for c in reported] == [
        (RuntimeError, "an append's durable call failed")
    ]


@pytest.mark.parametrize("stopping", [SystemExit, KeyboardInterrupt])
def test_a_call_that_stops_the_loop_leaves_the_rest_of_its_group_called_first(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch, stopping: type[BaseException]
) -> None:
    log = open_log()
    noted: list[tuple[int, WalOutcome, int]] = []
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(stopping):
            loop.run_until_complete(_one_group(log, monkeypatch, noted, {10: stopping()}))
        assert [index for index, _, _ in noted] == list(range(APPENDS))
        assert all(isinstance(outcome, Position) for _, outcome, _ in noted)
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


@pytest.mark.parametrize("stopping", [SystemExit, KeyboardInterrupt])
def test_a_handler_that_stops_the_loop_over_a_failed_call_leaves_the_rest_called_first(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch, stopping: type[BaseException]
) -> None:
    # The loop's exception handler may end the process over a failed call
    # (asyncio lets SystemExit and KeyboardInterrupt out of it): the calls
    # after it in the group are durable all the same, and are called first.
    log = open_log()
    noted: list[tuple[int, WalOutcome, int]] = []
    loop = asyncio.new_event_loop()

    def stop(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        raise stopping

    loop.set_exception_handler(stop)
    try:
        with pytest.raises(stopping):
            loop.run_until_complete(
                _one_group(log, monkeypatch, noted, {10: RuntimeError("a broken call")})
            )
        assert [index for index, _, _ in noted] == list(range(APPENDS))
        assert all(isinstance(outcome, Position) for _, outcome, _ in noted)
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
