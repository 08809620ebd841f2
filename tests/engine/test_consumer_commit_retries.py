"""An embedded consumer's commit whose write the store fails: the
coordinator answers NOT_COORDINATOR, which Kafka's commitSync retries
until its timeout (ConsumerCoordinator.commitOffsetsSync). The sync and
asyncio commits send the same offsets again after a backoff, return once
the store heals, raise the error last answered once their timeout ends,
and stop at once when the consumer closes."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import weakref
from collections.abc import Iterator

import pytest

import engine
from engine.client import offset_commits
from engine.client.consumer import Consumer
from engine.errors import IllegalGeneration, NotCoordinator, RebalanceInProgress
from engine.types import OffsetAndMetadata, TopicPartition
from tests.engine.conftest import EngineFactory
from tests.engine.test_group_member_no_room import (
    MEMBER,
    RefusedGroupWrites,
    _read,
    three_records,
)
from tests.engine.test_group_member_not_coordinator import TIMEOUT, store_failed

TP = TopicPartition("t", 0)
ASKED = {TP: 2}
"""Below the position after the records read (3): a retry that took the
position instead would commit 3."""


@pytest.fixture
def e(engine_factory: EngineFactory) -> engine.Engine:
    return three_records(engine_factory)


@pytest.fixture
def consumer(e: engine.Engine) -> Iterator[Consumer]:
    made = e.consumer("t", **MEMBER)
    assert _read(made, 3) == [b"a", b"b", b"c"]
    yield made
    made.close()


def _wait_for(failing: RefusedGroupWrites, refusals: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while failing.refused < refusals:
        assert time.monotonic() < deadline, f"refused {failing.refused} times"
        time.sleep(0.01)


def _heal_after(failing: RefusedGroupWrites, refusals: int) -> threading.Thread:
    def heal() -> None:
        _wait_for(failing, refusals)
        failing.heal()

    healer = threading.Thread(target=heal, daemon=True)
    healer.start()
    return healer


def test_a_commit_whose_write_fails_returns_once_the_store_heals(
    e: engine.Engine, consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused twice, sent again after each backoff: the commit returns the
    offsets asked once the store takes writes, and those are committed."""
    failing = RefusedGroupWrites(monkeypatch, e, "offset", store_failed)
    healer = _heal_after(failing, 2)
    assert consumer.commit(ASKED) == {TP: OffsetAndMetadata(2)}
    healer.join(TIMEOUT)
    assert failing.refused >= 2
    assert consumer.committed([TP])[TP].offset == 2  # type: ignore[union-attr]


def test_a_commit_whose_timeout_ends_first_raises_not_coordinator(
    e: engine.Engine, consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sent again within its timeout, then the last answer is raised: the
    typed, retriable error, and nothing committed."""
    failing = RefusedGroupWrites(monkeypatch, e, "offset", store_failed)
    with pytest.raises(NotCoordinator) as raised:
        consumer.commit(ASKED, timeout=1.0)
    assert not isinstance(raised.value, engine.EngineClosed)
    assert raised.value.code.retriable
    assert failing.refused >= 2
    assert consumer.committed([TP])[TP] is None


def test_close_during_a_commits_backoff_ends_it_at_once(
    e: engine.Engine, consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit retrying on another thread stops when the consumer closes,
    long before its timeout, raising the error last answered."""
    failing = RefusedGroupWrites(monkeypatch, e, "offset", store_failed)
    outcome: list[BaseException | None] = []

    def commit() -> None:
        try:
            consumer.commit(ASKED, timeout=TIMEOUT)
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    committing = threading.Thread(target=commit, daemon=True)
    committing.start()
    _wait_for(failing, 3)  # backing off for 400 ms, then 800 ms
    consumer.close()
    committing.join(TIMEOUT / 2)  # half its timeout: only a close can end it by then
    assert len(outcome) == 1 and isinstance(outcome[0], NotCoordinator)


def test_an_async_commit_whose_write_fails_returns_once_the_store_heals(
    e: engine.Engine, consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = RefusedGroupWrites(monkeypatch, e, "offset", store_failed)
    healer = _heal_after(failing, 2)
    done = asyncio.run(asyncio.wait_for(consumer.commit_async(ASKED), TIMEOUT))
    assert done == {TP: OffsetAndMetadata(2)}
    healer.join(TIMEOUT)
    assert consumer.committed([TP])[TP].offset == 2  # type: ignore[union-attr]


def test_an_async_commit_whose_timeout_ends_first_raises_not_coordinator(
    e: engine.Engine, consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = RefusedGroupWrites(monkeypatch, e, "offset", store_failed)
    with pytest.raises(NotCoordinator):
        asyncio.run(asyncio.wait_for(consumer.commit_async(ASKED, timeout=1.0), TIMEOUT))
    assert failing.refused >= 2
    assert consumer.committed([TP])[TP] is None


def test_close_during_an_async_commits_backoff_ends_it_at_once(
    e: engine.Engine, consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = RefusedGroupWrites(monkeypatch, e, "offset", store_failed)

    async def commit_then_close() -> BaseException | None:
        committing = asyncio.ensure_future(consumer.commit_async(ASKED, timeout=TIMEOUT))
        while failing.refused < 3:
            assert not committing.done()
            await asyncio.sleep(0.01)
        consumer.close()
        try:
            # Half its timeout: only a close can end it by then.
            await asyncio.wait_for(committing, TIMEOUT / 2)
        except NotCoordinator as error:
            return error
        return None

    assert isinstance(asyncio.run(asyncio.wait_for(commit_then_close(), TIMEOUT)), NotCoordinator)


def test_a_retry_sends_the_offsets_asked_though_the_callers_mapping_changed(
    e: engine.Engine, consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The offsets are taken when the commit is called (Kafka's commitSync
    copies them): a caller moving its own mapping on while the commit backs
    off does not make the retry commit a later position than asked."""
    asked = dict(ASKED)

    def refused_then_moved_on(stream_id: int) -> BaseException:
        asked[TP] = 3  # the caller's mapping moves on while the commit backs off
        return store_failed(stream_id)

    failing = RefusedGroupWrites(monkeypatch, e, "offset", refused_then_moved_on)
    healer = _heal_after(failing, 1)
    assert consumer.commit(asked, timeout=TIMEOUT) == {TP: OffsetAndMetadata(2)}
    healer.join(TIMEOUT)
    assert consumer.committed([TP])[TP].offset == 2  # type: ignore[union-attr]


def test_a_retry_after_a_rebalance_is_refused_not_committed_under_the_new_generation(
    e: engine.Engine, consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit backing off while the member rejoins (poll on another thread)
    is sent again with the generation it began in: the coordinator refuses
    it (the partition may be another member's now), as a commit of Kafka's
    commitSync never straddles a rebalance; it is never committed under the
    member's new generation."""
    # A backoff the rebalance fits in: the retry comes after it.
    monkeypatch.setattr(offset_commits, "JOIN_RETRY_BACKOFF_S", 3.0)
    failing = RefusedGroupWrites(monkeypatch, e, "offset", store_failed)
    outcome: list[object] = []

    def commit() -> None:
        try:
            outcome.append(consumer.commit(ASKED, timeout=TIMEOUT))
        except BaseException as error:
            outcome.append(error)

    committing = threading.Thread(target=commit, daemon=True)
    committing.start()
    _wait_for(failing, 1)
    assert consumer._member is not None
    began = consumer._member.generation_id
    other = e.consumer("t", **MEMBER)
    try:
        assert other._member is not None
        deadline = time.monotonic() + TIMEOUT
        # Both in the generation the second member's join made (whichever
        # of them has t-0 now).
        while (
            consumer._member.generation_id == began
            or other._member.generation_id != consumer._member.generation_id
        ):
            assert time.monotonic() < deadline, "no rebalance"
            consumer.poll(timeout=0.05)
            other.poll(timeout=0.05)
        assert consumer._member.generation_id != began
        failing.heal()
        committing.join(TIMEOUT)
        assert len(outcome) == 1
        assert isinstance(outcome[0], IllegalGeneration | RebalanceInProgress), outcome
        assert consumer.committed([TP])[TP] is None
    finally:
        other.close()


@pytest.mark.parametrize("timeout", [-1.0, float("nan"), float("inf")])
def test_a_commit_with_a_timeout_that_is_no_bound_is_refused_before_it_is_sent(
    consumer: Consumer, timeout: float
) -> None:
    """A negative timeout (Kafka's Timer refuses one, IllegalArgumentException),
    NaN (never runs out) or infinity (no bound) raise ValueError, sync and
    asyncio, and nothing is committed."""
    with pytest.raises(ValueError, match="timeout"):
        consumer.commit(ASKED, timeout=timeout)
    with pytest.raises(ValueError, match="timeout"):
        asyncio.run(asyncio.wait_for(consumer.commit_async(ASKED, timeout=timeout), TIMEOUT))
    time.sleep(0.2)  # a commit sent regardless would be durable by now
    assert consumer.committed([TP])[TP] is None


def test_a_commit_with_a_timeout_of_zero_is_sent_once(
    e: engine.Engine, consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No time to back off: one try, its refusal raised, nothing committed."""
    failing = RefusedGroupWrites(monkeypatch, e, "offset", store_failed)
    with pytest.raises((NotCoordinator, TimeoutError)):
        consumer.commit(ASKED, timeout=0)
    assert failing.refused <= 1
    assert consumer.committed([TP])[TP] is None


def test_an_async_commits_backoffs_leave_nothing_on_the_consumer(
    e: engine.Engine, consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each backoff waits for the consumer's close; once the commit is over
    nothing of it stays registered there: the event loop it ran on is freed
    (a consumer committing through a long outage does not keep a waiter
    per backoff, and each loop, until it closes)."""
    failing = RefusedGroupWrites(monkeypatch, e, "offset", store_failed)
    # The refused writes' warnings carry their tracebacks, whose frames hold
    # the commit's futures: the records pytest keeps would keep the loop.
    monkeypatch.setattr(logging.getLogger("tidelog.groups"), "disabled", True)
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def commit() -> bool:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        try:
            await consumer.commit_async(ASKED, timeout=1.0)
        except NotCoordinator:
            return True
        return False

    assert asyncio.run(commit())
    assert failing.refused >= 2
    gc.collect()
    assert loops[0]() is None
