"""Where the coordinator's work runs: one lock over every group and
offset, a timer thread, the clock, and durable writes to the "groups"
state log.

Nothing waits while holding the lock. Futures resolved under it are
settled once the outermost holder releases it; what follows a write
becoming durable runs on the timer thread, under the lock (the WAL's
thread, which makes it durable, must not wait for that lock). What a
failed write's callback answers is held until the groups the write
touched are rebuilt from the state log (failed_writes.py), as Kafka's
coordinator answers a failed write after reverting to its snapshot.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any, NamedTuple

from engine.clock import Clock
from engine.futures import running_future, settle
from engine.groups.timers import Timer, TimerThread
from engine.protocol.kafka_code import KafkaCode
from engine.state_log import StateLog
from s3stream import AppendTooLarge, NoRoom
from wal.interrupts import released_contextmanager

log = logging.getLogger("tidelog.groups")


class GroupExecutor:
    def __init__(self, state_log: StateLog, clock: Clock) -> None:
        self.state_log = state_log
        self._clock = clock
        self._lock = threading.RLock()
        self._depth = 0
        self._ready: list[tuple[Future[Any], Any]] = []
        self._timers = TimerThread("tidelog-groups", clock)
        self.closed = False
        """Set (under the lock) when the coordinator closes."""
        self.on_failed_write: Callable[[list[Hashable], list[Hashable]], None] | None = None
        """Called with a failed write's puts' keys and deletes, under the
        lock, as its outermost holder releases it (failed_writes.py)."""
        self._failed: list[_Failed] = []
        self._outstanding = 0
        """Writes the store accepted whose outcome the coordinator has not
        taken yet (their ``then`` not run); the failed writes' groups are
        rebuilt only once there are none (``_restorable``)."""
        self._counting = threading.Lock()
        """Guards ``_outstanding`` and ``_failed`` between the WAL's thread
        and the coordinator's."""
        self._awaited: list[Future[KafkaCode]] | None = None

    def now_ms(self) -> int:
        return self._clock.time_ms()

    def monotonic(self) -> float:
        return self._clock.monotonic()

    def resolve(self, future: Future[Any], value: Any) -> None:
        """Settles ``future`` with ``value`` once the lock is released."""
        self._ready.append((future, value))

    @released_contextmanager
    def locked(self) -> Iterator[None]:
        """The coordinator's lock; futures resolved under it are settled
        once the outermost holder releases it. The release runs whole
        through a second Ctrl-C (wal/interrupts.py): cut short, it would
        leave the lock held and every group request waiting for good."""
        ready: list[tuple[Future[Any], Any]] = []
        try:
            with self._lock:
                self._depth += 1
                try:
                    yield
                finally:
                    try:
                        # Once the request that wrote is done with the group:
                        # its objects are replaced.
                        while self._depth == 1 and self.on_failed_write is not None:
                            failed = self._restorable()
                            if failed is None:
                                break
                            keys, deletes = list(failed.keys), list(failed.deletes)
                            try:
                                if keys or deletes:
                                    self.on_failed_write(keys, deletes)
                            except Exception:
                                # Not the releasing request's failure, and the
                                # held answers (NOT_COORDINATOR) are still due:
                                # a client must not wait forever on them.
                                log.exception("rebuilding the groups of a failed write failed")
                            # Answered once the group is what the state log
                            # holds, and before what the rebuild answers.
                            self._ready[:0] = failed.answers
                    finally:
                        self._depth -= 1
                        if self._depth == 0:
                            ready, self._ready = self._ready, []
        finally:
            # Settled even if the block raised (what it resolved, a held
            # answer among them, has no other way out), never under the lock.
            for future, value in ready:
                settle(future, value)

    def _restorable(self) -> _Failed | None:
        """The next failed write whose groups may be rebuilt from the state
        log: once every write accepted before or after it has its outcome
        taken. Until then the state log holds a record still being written
        (a commit's, read back as if it were durable) and the offsets hold
        a commit whose visibility waits for it; a failed write means a
        failed or fenced store, which refuses what follows, so the wait is
        one WAL commit."""
        with self._counting:
            if not self._failed or self._outstanding:
                return None
            return self._failed.pop(0)

    def _note_failed(self, failed: _Failed) -> None:
        with self._counting:
            self._failed.append(failed)

    def _taken(self) -> bool:
        """A write's outcome is taken; whether failed writes now wait for
        nothing else (their groups are to be rebuilt)."""
        with self._counting:
            self._outstanding -= 1
            return not self._outstanding and bool(self._failed)

    def _fail(
        self, failed: _Failed, then: Callable[[KafkaCode], None] | None, error: KafkaCode
    ) -> None:
        """Notes a failed write and runs its ``then``, keeping what it
        answers: those answers are settled once the write's groups are
        rebuilt (``locked``), never while a group still shows what the
        write changed. Noted first, so that a ``then`` that raises still
        has its groups rebuilt; a nested write that fails at once keeps
        its own answers."""
        answers: _Answers = []
        self._note_failed(failed._replace(answers=answers))
        if then is None:
            return
        outer, self._ready = self._ready, []
        try:
            then(error)
        finally:
            answers.extend(self._ready)
            self._ready = outer

    @contextlib.contextmanager
    def awaiting_writes(self) -> Iterator[list[Future[KafkaCode]]]:
        """Under the lock: each write begun in the block, as a future of its
        error code, settled once it is durable (after its own ``then``) or,
        if it failed, once its groups are rebuilt from the state log, as
        every failed write's answers are (``_fail``), so that a
        request whose change is written on the way and not by a callback
        of its own (a LeaveGroup emptying its group) is answered after
        that write, by a group that is what the state log holds."""
        awaited: list[Future[KafkaCode]] = []
        outer, self._awaited = self._awaited, awaited
        try:
            yield awaited
        finally:
            self._awaited = outer

    def store_stopped(self) -> bool:
        """Whether the coordinator closed or its store failed, was fenced
        or closed: no write succeeds until the engine is opened again."""
        return self.closed or self.state_log.store.fenced_or_failed()

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Timer:
        """Calls ``callback`` on the timer thread after ``delay_s`` (it takes
        the lock itself if it needs it)."""
        return self._timers.call_later(delay_s, callback)

    def write(
        self,
        puts: dict[Hashable, Any],
        deletes: list[Hashable],
        then: Callable[[KafkaCode], None] | None = None,
        rebuilt: bool = True,
    ) -> None:
        """Appends to the state log; ``then(error_code)`` runs under the
        lock once the records are durable (NOT_COORDINATOR if they failed,
        as Kafka answers a write its log refused; ``on_failed_write`` then
        puts back what the write changed, and what ``then`` answered is
        settled after that). ``rebuilt`` False: a failure leaves memory as
        ``then`` leaves it (a classic group's assignment, applied once
        durable; its Empty record; a takeover, whose ``then`` puts the
        classic group back: docs/design/0102, 0109), so its groups are
        not rebuilt; its answers still wait for the failed writes before it."""
        if self._awaited is not None:
            written: Future[KafkaCode] = running_future()
            self._awaited.append(written)
            then = _then_settle(then, written, self.resolve)
        # The writer makes new keys and deletes for each write.
        failed = _Failed(puts.keys(), deletes) if rebuilt else _Failed((), ())
        try:
            appended = self.state_log.update(puts=puts or None, deletes=deletes or None)
        except Exception as error:  # the store refused: fenced, closed, failed or full
            log.warning("writing group state failed: %s", error)
            # Kafka's coordinator answers a write its log could not take in
            # time (REQUEST_TIMED_OUT) COORDINATOR_NOT_AVAILABLE, which
            # clients retry where they are: a store past its unuploaded
            # headroom takes the write once uploads resume. One that stopped
            # is NOT_COORDINATOR, as for a failed log dir.
            # A record larger than the WAL takes is refused before the store
            # hears of it (it keeps serving): Kafka 4's group coordinator
            # answers an append refused with RECORD_LIST_TOO_LARGE or
            # MESSAGE_TOO_LARGE UNKNOWN_SERVER_ERROR, for every request,
            # an OffsetCommit's too (CoordinatorOperationExceptionHelper).
            if isinstance(error, NoRoom):
                code = KafkaCode.COORDINATOR_NOT_AVAILABLE
            elif isinstance(error, AppendTooLarge):
                code = KafkaCode.UNKNOWN_SERVER_ERROR
            else:
                code = KafkaCode.NOT_COORDINATOR
            self._fail(failed, then, code)
            return
        with self._counting:
            self._outstanding += 1

        def durable(future: Future[int]) -> None:
            # On the WAL's thread, which must not wait for the coordinator's
            # lock: the rest runs on the coordinator's thread.
            error = KafkaCode.NONE if future.exception() is None else KafkaCode.NOT_COORDINATOR
            if error != KafkaCode.NONE:
                log.warning("writing group state failed: %s", future.exception())
            elif then is None:
                if self._taken():  # the last one failed writes waited for
                    self._timers.call_soon(self._restore)
                return

            def run() -> None:
                with self.locked():
                    try:
                        if error != KafkaCode.NONE:
                            self._fail(failed, then, error)
                        elif then is not None:
                            then(error)
                    finally:
                        self._taken()

            self._timers.call_soon(run)

        appended.add_done_callback(durable)

    def _restore(self) -> None:
        with self.locked():  # its release rebuilds the failed writes' groups
            pass

    def stop(self) -> None:
        """Stops the timer thread (the coordinator has closed)."""
        self._timers.stop()


_Answers = list[tuple[Future[Any], Any]]
"""Futures and the values to settle them with."""


class _Failed(NamedTuple):
    """A failed write: the keys it put and deleted (none if its groups are
    not rebuilt), and what its ``then`` answered, settled once they are."""

    keys: Iterable[Hashable]
    deletes: Iterable[Hashable]
    answers: Sequence[tuple[Future[Any], Any]] = ()


def _then_settle(
    then: Callable[[KafkaCode], None] | None,
    future: Future[KafkaCode],
    resolve: Callable[[Future[Any], Any], None],
) -> Callable[[KafkaCode], None]:
    """``then``, after which the write's ``future`` is settled with its
    code (a failed one's once its groups are rebuilt: GroupExecutor.locked)."""

    def both(error: KafkaCode) -> None:
        try:
            if then is not None:
                then(error)
        finally:
            resolve(future, error)

    return both
