"""A consumer's offsets in its group: committing them (as a member of the
group's generation when subscribed, else from outside the group) and
reading the committed ones back.

A commit waited for (``commit_steps``: the sync commit and the asyncio
one) is sent again after a coordinator answer Kafka's consumer retries,
NOT_COORDINATOR (the group's write failed) or COORDINATOR_NOT_AVAILABLE
(refused for room), until its timeout, as Kafka's commitSync does
(ConsumerCoordinator.commitOffsetsSync: the coordinator marked unknown,
retry.backoff.ms, found again, the same offsets sent again). A commit
not waited for reports the error at once, as commitAsync reports it to
its callback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, NamedTuple

from engine.client.group_member import JOIN_RETRY_BACKOFF_MAX_S, JOIN_RETRY_BACKOFF_S
from engine.client.membership import group_error
from engine.client.poll_steps import RETRY_BACKOFF_S, Steps
from engine.errors import (
    CoordinatorCannotWrite,
    CoordinatorNotAvailable,
    EngineClosed,
    EngineError,
    GroupCoordinatorClosed,
    NotCoordinator,
    UnknownPartition,
    UnknownTopic,
)
from engine.protocol.kafka_code import KafkaCode
from engine.types import OffsetAndMetadata, TopicPartition

if TYPE_CHECKING:
    from engine.client.group_member import GroupMember
    from engine.client.host import ClientHost

log = logging.getLogger("tidelog.consumer")

Offsets = (
    Mapping[TopicPartition, int | OffsetAndMetadata]
    | Mapping[tuple[str, int], int | OffsetAndMetadata]
)


class OffsetCommits:
    """The offsets of one consumer in group ``group_id``."""

    def __init__(
        self, host: ClientHost, group_id: str, member: GroupMember | None, read_committed: bool
    ) -> None:
        self._host = host
        self.group_id = group_id
        self._member = member
        self._read_committed = read_committed
        self.last_committed: dict[TopicPartition, int] = {}
        """What this consumer last committed per partition (auto-commit skips
        a position that has not moved)."""
        self._closing = _Closing()
        """Set when the consumer closes: a commit backing off stops."""

    def close(self) -> None:
        """Stops the commits backing off before they are sent again."""
        self._closing.set()

    def commit_steps(
        self, offsets: Offsets, timeout: float
    ) -> Steps[dict[TopicPartition, OffsetAndMetadata]]:
        """Commits ``offsets``, sent again after NOT_COORDINATOR or
        COORDINATOR_NOT_AVAILABLE (backing off 100 ms doubling to 1 s, the
        member's join backoff) until ``timeout`` seconds have passed; then,
        or once the consumer closes, raises the error last answered. The
        same offsets each time, never a position polled meanwhile. An
        answer not given within what is left of ``timeout`` raises
        TimeoutError, as any wait of the embedded API."""
        _check_timeout(timeout)
        clock = self._host.clock
        deadline = clock.monotonic() + timeout
        backoff = JOIN_RETRY_BACKOFF_S
        # Taken once, as Kafka's commitSync copies the offsets: a caller's
        # mapping moved on meanwhile is not a later position sent. The
        # generation too: Kafka's commitSync runs on the thread that polls,
        # so its retries never straddle a rebalance; here poll may rejoin
        # on another thread meanwhile, and a retry under the new generation
        # would commit a partition that may be another member's by then.
        wanted = _normalized(offsets)
        identity = self._identity() if wanted else None
        while True:
            answer = self._send(wanted, identity)
            try:
                done: dict[TopicPartition, OffsetAndMetadata] = yield _Answer(
                    answer, max(0.0, deadline - clock.monotonic())
                )
                return done
            except (NotCoordinator, CoordinatorNotAvailable) as error:
                # Kafka's own answers to a coordinator that cannot write
                # again, or a closed engine, end the commit at once.
                if isinstance(error, CoordinatorCannotWrite | EngineClosed):
                    raise
                remaining = deadline - clock.monotonic()
                if remaining <= 0 or self._closing.is_set():
                    raise
                log.info("group %s: commit refused (%s); sending it again", self.group_id, error)
                yield _Backoff(self._closing, min(backoff, remaining))
                if self._closing.is_set() or clock.monotonic() >= deadline:
                    raise
                backoff = min(2 * backoff, JOIN_RETRY_BACKOFF_MAX_S)

    def commit(self, offsets: Offsets) -> Future[dict[TopicPartition, OffsetAndMetadata]]:
        """Commits as a member of the group's generation when subscribed,
        else from outside the group (accepted while it has no members)."""
        wanted = _normalized(offsets)
        return self._send(wanted, self._identity() if wanted else None)

    def _identity(self) -> tuple[int, str, str | None]:
        """The generation, member id and instance id a commit is made with
        now: the member's when subscribed, else none (from outside)."""
        member = self._member
        if member is not None and member.subscribed:
            return member.commit_identity()
        return -1, "", None

    def _send(
        self,
        wanted: dict[TopicPartition, OffsetAndMetadata],
        identity: tuple[int, str, str | None] | None,
    ) -> Future[dict[TopicPartition, OffsetAndMetadata]]:
        """Sends ``wanted`` with ``identity`` (None only when ``wanted`` is
        empty: nothing to send)."""
        result: Future[dict[TopicPartition, OffsetAndMetadata]] = Future()
        result.set_running_or_notify_cancel()
        if not wanted or identity is None:
            result.set_result({})
            return result
        generation, member_id, instance_id = identity
        answer = self._host.groups.commit_offsets(
            self.group_id, generation, member_id, instance_id, wanted
        )

        def done(answered: Future[dict[TopicPartition, KafkaCode]]) -> None:
            try:
                codes = answered.result()
            except BaseException as error:
                result.set_exception(error)
                return
            failed = {tp: code for tp, code in codes.items() if code != KafkaCode.NONE}
            for tp, om in wanted.items():
                if tp not in failed:
                    self.last_committed[tp] = om.offset
            if failed:
                result.set_exception(self._commit_error(failed))
            else:
                result.set_result(wanted)

        answer.add_done_callback(done)
        return result

    def _commit_error(self, failed: Mapping[TopicPartition, KafkaCode]) -> EngineError:
        tp, code = next(iter(sorted(failed.items())))
        if code == KafkaCode.COORDINATOR_NOT_AVAILABLE and self._host.closed:
            # The engine closed after the commit found it open: the group
            # coordinator answered what it answers a wire client, which
            # retries elsewhere; an embedded caller stops (docs/design/0109).
            return GroupCoordinatorClosed()
        if code == KafkaCode.UNKNOWN_TOPIC_OR_PARTITION:
            count = len(self._host.topic_partitions([tp.topic]))
            if count == 0:
                return UnknownTopic(tp.topic)
            return UnknownPartition(tp.topic, tp.partition, count)
        names = ", ".join(f"{t.topic}-{t.partition}" for t in sorted(failed))
        return group_error(code, f"group {self.group_id}: committing {names} failed")

    def auto_commit(
        self, positions: Mapping[TopicPartition, int]
    ) -> Future[dict[TopicPartition, OffsetAndMetadata]] | None:
        """Commits the positions that changed since the last commit
        (failures are logged); None if there is nothing to commit."""
        offsets = {
            tp: offset for tp, offset in positions.items() if self.last_committed.get(tp) != offset
        }
        if not offsets:
            return None
        try:
            future = self.commit(offsets)
        except EngineError as error:
            log.info("group %s: auto-commit skipped: %s", self.group_id, error)
            return None
        future.add_done_callback(self._log_commit_failure)
        return future

    def _log_commit_failure(self, future: Future[Any]) -> None:
        error = future.exception()
        if error is not None:
            log.warning("group %s: auto-commit failed: %s", self.group_id, error)

    def committed(
        self, partitions: Iterable[TopicPartition | tuple[str, int]], timeout: float
    ) -> dict[TopicPartition, OffsetAndMetadata | None]:
        """The committed offset of each partition (None: none). Read
        committed, an offset a transaction has pending is waited for (up to
        ``timeout``, then UnstableOffsetCommit)."""
        wanted = [TopicPartition(*tp) for tp in partitions]
        clock = self._host.clock
        deadline = clock.monotonic() + timeout
        while True:
            answer = self._host.groups.fetch_offsets(
                self.group_id, wanted, require_stable=self._read_committed
            )
            unstable = any(code == KafkaCode.UNSTABLE_OFFSET_COMMIT for _, code in answer.values())
            if not unstable or clock.monotonic() >= deadline:
                break
            time.sleep(RETRY_BACKOFF_S)
        found: dict[TopicPartition, OffsetAndMetadata | None] = {}
        for tp, (offset, code) in answer.items():
            if code != KafkaCode.NONE:
                raise group_error(code, f"{tp.topic}-{tp.partition}: no committed offset")
            found[tp] = offset
        return found

    def committed_offset(self, tp: TopicPartition) -> int | None:
        """Where the group has ``tp`` (None: nowhere); raises
        UnstableOffsetCommit, read committed, while a transaction holds it."""
        found, code = self._host.groups.fetch_offsets(
            self.group_id, [tp], require_stable=self._read_committed
        )[tp]
        if code != KafkaCode.NONE:
            raise group_error(code, f"{tp.topic}-{tp.partition}: reading the committed offset")
        return None if found is None else found.offset


def _check_timeout(timeout: float) -> None:
    """ValueError, before anything is sent, unless ``timeout`` is a finite
    number of seconds, 0 or more: Kafka's Timer refuses a negative one, NaN
    would never run out, infinity is no bound (and no wait takes it)."""
    number = isinstance(timeout, int | float) and not isinstance(timeout, bool)
    if not (number and math.isfinite(timeout) and timeout >= 0):
        raise ValueError(f"timeout must be a finite number of seconds, 0 or more, not {timeout!r}")


def _normalized(offsets: Offsets) -> dict[TopicPartition, OffsetAndMetadata]:
    """A copy of ``offsets``, each an OffsetAndMetadata."""
    return {
        TopicPartition(*tp): om if isinstance(om, OffsetAndMetadata) else OffsetAndMetadata(om)
        for tp, om in offsets.items()
    }


class _Answer(NamedTuple):
    """A commit's answer, waited for at most ``timeout`` seconds."""

    answer: Future[dict[TopicPartition, OffsetAndMetadata]]
    timeout: float

    def run(self) -> dict[TopicPartition, OffsetAndMetadata]:
        return self.answer.result(self.timeout)

    async def run_async(self) -> dict[TopicPartition, OffsetAndMetadata]:
        waited = asyncio.wrap_future(self.answer)
        done, _ = await asyncio.wait([waited], timeout=self.timeout)
        if not done:
            waited.cancel()  # the commit's future runs on: nobody can cancel it
            raise TimeoutError(f"no commit answer within {self.timeout} s")
        return waited.result()


class _Closing:
    """The consumer's close, as commits backing off wait for it: a thread
    waits on the event; a task registers a waker for the while it waits
    and takes it away after (a callback left on a future for each backoff
    would keep a waiter, and its event loop, per backoff until the close)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._wakers: set[Callable[[], None]] = set()

    def set(self) -> None:
        with self._lock:
            self._event.set()
            wakers = list(self._wakers)
        for wake in wakers:
            wake()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> None:
        self._event.wait(seconds)

    async def wait_async(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            def resolve() -> None:
                if not woken.done():
                    woken.set_result(None)

            # The loop may have closed since: nothing waits on it then.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(resolve)

        with self._lock:
            if self._event.is_set():
                return
            self._wakers.add(wake)
        try:
            await asyncio.wait([woken], timeout=seconds)
        finally:
            with self._lock:
                self._wakers.discard(wake)


class _Backoff(NamedTuple):
    """The wait before a commit is sent again, ended at once by ``closing``."""

    closing: _Closing
    seconds: float

    def run(self) -> None:
        self.closing.wait(self.seconds)

    async def run_async(self) -> None:
        await self.closing.wait_async(self.seconds)
