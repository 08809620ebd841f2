"""The embedded producer's max_block_ms: a send that finds the queue full
waits for space at most that long, then raises BufferExhausted, as Kafka's
producer raises after max.block.ms, instead of blocking for ever while the
engine takes no appends. The refused record was not queued, what was queued
is written once the engine takes appends again, and the producer goes on.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

import engine
import native
from engine.client.producer import Producer
from engine.clock import ManualClock
from engine.errors import BufferExhausted, EngineClosed
from engine.partition import AppendResult
from engine.types import SentBatch
from tests.engine.conftest import EngineFactory

TIMEOUT = 30.0
VALUE = b"v" * 100
"""One record queues a little more than max_queued_bytes below."""
MAX_QUEUED = 100
MAX_BLOCK_MS = 5_000.0
T = TypeVar("T")


class HeldAppends:
    """Fault injection: the engine takes no appends until ``release`` (a store
    that does not answer with max_unuploaded_bytes reached looks the same to a
    producer: its batches are never durable)."""

    def __init__(self, e: engine.Engine) -> None:
        self._submit = e.submit
        self._held: list[tuple[tuple[Any, ...], dict[str, Any], Future[AppendResult]]] = []
        self._released = False
        self._lock = threading.Lock()
        self.first_held = threading.Event()

    def submit(self, *args: Any, **kwargs: Any) -> Future[AppendResult]:
        with self._lock:
            if not self._released:
                held: Future[AppendResult] = Future()
                self._held.append((args, kwargs, held))
                self.first_held.set()
                return held
        return self._submit(*args, **kwargs)

    def release(self) -> None:
        with self._lock:
            self._released = True
            held, self._held = self._held, []
        for args, kwargs, future in held:
            written = self._submit(*args, **kwargs).result(TIMEOUT)
            future.set_result(written)


@pytest.fixture
def held(engine_factory: EngineFactory) -> Iterator[tuple[engine.Engine, ManualClock, HeldAppends]]:
    clock = ManualClock()
    e = engine_factory(clock=clock)
    e.create_topic("t", partitions=1)
    appends = HeldAppends(e)
    e.submit = appends.submit  # type: ignore[method-assign]
    yield e, clock, appends
    appends.release()


def one_batch_held(
    e: engine.Engine, appends: HeldAppends, max_block_ms: float = MAX_BLOCK_MS
) -> Producer:
    """A producer whose first batch is held in the engine, its queue empty."""
    producer = e.producer(
        max_queued_bytes=MAX_QUEUED, max_block_ms=max_block_ms, max_in_flight=1, batch_size=128
    )
    producer.send("t", VALUE + b"0")
    assert appends.first_held.wait(TIMEOUT)
    return producer


def fill_queue(e: engine.Engine, appends: HeldAppends) -> Producer:
    """A producer whose first batch is held in the engine and whose queue
    holds more than max_queued_bytes behind it."""
    producer = one_batch_held(e, appends)
    producer.send("t", VALUE + b"1")  # queued behind it: the queue is now full
    return producer


def advance_until(clock: ManualClock, finished: Callable[[], bool]) -> None:
    """Moves the clock past max_block_ms again and again (each wait reads it
    anew when woken) until ``finished``, for a bounded number of steps."""
    stop = threading.Event()
    for _ in range(200):
        if finished():
            return
        clock.advance(MAX_BLOCK_MS / 1000)
        stop.wait(0.05)


def on_a_loop_thread(main: Callable[[], Coroutine[Any, Any, T]]) -> list[T]:
    """``main``'s result, run on an event loop in a thread of its own: an
    empty list if the loop is still blocked after TIMEOUT."""
    outcome: list[T] = []
    loop_thread = threading.Thread(target=lambda: outcome.append(asyncio.run(main())), daemon=True)
    loop_thread.start()
    loop_thread.join(TIMEOUT)
    return outcome


def values(e: engine.Engine) -> list[bytes | None]:
    out: list[bytes | None] = []
    for batch in e.fetch("t", 0, 0, 1 << 20).records:
        out += [r.value for r in native.decode_records(batch, skip_control=True)]
    return out


def written_once_released(
    e: engine.Engine, appends: HeldAppends, producer: Producer
) -> list[bytes | None]:
    """What the topic holds once the engine takes appends again and the
    producer has sent what it queued."""
    appends.release()
    producer.close(TIMEOUT)
    return values(e)


def test_a_send_into_a_full_queue_raises_after_max_block_ms_and_nothing_queued_is_lost(
    held: tuple[engine.Engine, ManualClock, HeldAppends],
) -> None:
    e, clock, appends = held
    producer = fill_queue(e, appends)
    outcome: list[BaseException | None] = []

    def blocked_send() -> None:
        try:
            producer.send("t", VALUE + b"2")
            outcome.append(None)
        except BaseException as error:  # the outcome is what is checked
            outcome.append(error)

    sender = threading.Thread(target=blocked_send, daemon=True)
    sender.start()
    advance_until(clock, lambda: not sender.is_alive())
    sender.join(TIMEOUT)
    assert len(outcome) == 1, "the send still waits for queue space"
    assert isinstance(outcome[0], BufferExhausted)
    assert isinstance(outcome[0], TimeoutError)
    assert outcome[0].max_block_ms == MAX_BLOCK_MS

    appends.release()
    again = producer.send("t", VALUE + b"2")  # the producer goes on
    assert again.result(TIMEOUT).offset == 2
    producer.close(TIMEOUT)
    assert values(e) == [VALUE + b"0", VALUE + b"1", VALUE + b"2"]


def test_max_block_ms_zero_refuses_at_once_and_send_many_of_a_full_queue_too(
    held: tuple[engine.Engine, ManualClock, HeldAppends],
) -> None:
    e, _, appends = held
    producer = fill_queue(e, appends)
    producer.max_block_s = 0.0
    with pytest.raises(BufferExhausted):
        producer.send("t", b"refused")
    with pytest.raises(BufferExhausted):
        producer.send_many("t", [b"refused", b"too"])
    assert written_once_released(e, appends, producer) == [VALUE + b"0", VALUE + b"1"]


def test_send_many_cut_short_fails_its_future_and_keeps_what_it_queued(
    held: tuple[engine.Engine, ManualClock, HeldAppends],
) -> None:
    e, _, appends = held
    producer = one_batch_held(e, appends, max_block_ms=0)
    # The first batch of the call is queued; the second finds the queue full.
    future = producer.send_many("t", [VALUE + b"1", VALUE + b"2"])
    appends.release()
    with pytest.raises(BufferExhausted):
        future.result(TIMEOUT)
    producer.close(TIMEOUT)
    assert values(e) == [VALUE + b"0", VALUE + b"1"]


def test_send_async_into_a_full_queue_raises_and_leaves_the_loop_free(
    held: tuple[engine.Engine, ManualClock, HeldAppends],
) -> None:
    e, clock, appends = held
    producer = fill_queue(e, appends)

    async def send_while_the_loop_runs() -> tuple[BaseException | None, int]:
        ticks = 0
        waiting = asyncio.ensure_future(producer.send_async("t", VALUE + b"2"))
        for _ in range(200):
            await asyncio.sleep(0.05)  # the loop keeps running while the send waits
            ticks += 1
            if waiting.done():
                break
            clock.advance(MAX_BLOCK_MS / 1000)
        return (waiting.exception() if waiting.done() else None), ticks

    outcome = on_a_loop_thread(send_while_the_loop_runs)
    assert outcome, "the send blocked the event loop"
    error, ticks = outcome[0]
    assert isinstance(error, BufferExhausted)
    assert ticks > 1
    assert written_once_released(e, appends, producer) == [VALUE + b"0", VALUE + b"1"]


def test_max_block_ms_must_be_a_finite_number_of_at_least_zero(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="max_block_ms"):
            e.producer(max_block_ms=bad)


def test_a_send_waiting_for_space_when_the_producer_closes_is_refused_not_queued(
    held: tuple[engine.Engine, ManualClock, HeldAppends],
) -> None:
    e, _, appends = held
    producer = fill_queue(e, appends)
    outcome: list[BaseException | None] = []
    waiting = threading.Event()

    def blocked_send() -> None:
        try:
            waiting.set()
            producer.send("t", VALUE + b"2")
            outcome.append(None)
        except BaseException as error:  # the outcome is what is checked
            outcome.append(error)

    sender = threading.Thread(target=blocked_send, daemon=True)
    sender.start()
    assert waiting.wait(TIMEOUT)
    threading.Event().wait(0.1)  # lets the send reach its wait for space
    # close(0) gives up flushing at once; the send's wait then sees it closed.
    producer.close(0)
    sender.join(TIMEOUT)
    assert len(outcome) == 1, "the send still waits for queue space"
    assert isinstance(outcome[0], EngineClosed)
    assert written_once_released(e, appends, producer) == [VALUE + b"0", VALUE + b"1"]


def test_async_sends_waiting_for_space_leave_the_default_executor_free(
    held: tuple[engine.Engine, ManualClock, HeldAppends],
) -> None:
    e, clock, appends = held
    producer = fill_queue(e, appends)

    async def other_executor_work_while_a_send_waits() -> tuple[bool, BaseException | None]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(1))  # one thread: a waiter would hold it
        waiting = asyncio.ensure_future(producer.send_async("t", VALUE + b"2"))
        await asyncio.sleep(0.05)  # the send is now waiting for space
        other = loop.run_in_executor(None, lambda: True)
        done, _ = await asyncio.wait([other], timeout=TIMEOUT / 3)
        other_ran = bool(done)
        for _ in range(200):
            if waiting.done():
                break
            clock.advance(MAX_BLOCK_MS / 1000)
            await asyncio.sleep(0.05)
        if not done:
            await other
        return other_ran, waiting.exception() if waiting.done() else None

    other_ran, error = asyncio.run(other_executor_work_while_a_send_waits())
    assert other_ran, "the waiting send held the loop's default executor"
    assert isinstance(error, BufferExhausted)
    assert written_once_released(e, appends, producer) == [VALUE + b"0", VALUE + b"1"]


def test_send_many_async_that_fills_the_queue_waits_for_space_off_the_loop(
    held: tuple[engine.Engine, ManualClock, HeldAppends],
) -> None:
    e, _, appends = held
    producer = one_batch_held(e, appends)

    async def send_while_the_loop_runs() -> tuple[int, list[SentBatch]]:
        # The queue has room for the call's first batch; its second finds
        # the queue filled by the first, and waits for space.
        waiting = asyncio.ensure_future(producer.send_many_async("t", [VALUE + b"1", VALUE + b"2"]))
        ticks = 0
        for _ in range(5):
            await asyncio.sleep(0.05)  # the loop keeps running while the call waits
            ticks += 1 if not waiting.done() else 0
        await asyncio.to_thread(appends.release)
        return ticks, await waiting

    outcome = on_a_loop_thread(send_while_the_loop_runs)
    assert outcome, "the call blocked the event loop"
    ticks, sent = outcome[0]
    assert ticks == 5, "the call did not wait for space"
    assert [(b.base_offset, b.record_count) for b in sent] == [(1, 1), (2, 1)]
    producer.close(TIMEOUT)
    assert values(e) == [VALUE + b"0", VALUE + b"1", VALUE + b"2"]
