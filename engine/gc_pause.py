"""Pausing Python's cyclic garbage collector around bulk allocations.

A full collection walks every object in the process while holding the GIL,
and one is due each time the long-lived objects grow by a quarter. A change
that makes many long-lived objects at once (creating thousands of topics:
some 30 objects per partition) would otherwise set off several full
collections in a row, each stalling every other thread (the event loop
serving produce and fetch) for a hundred milliseconds or more on a large
engine. Paused, the collector runs at most once after, instead of many
times during. Reference counting still frees everything acyclic meanwhile,
and the changes that pause it are bounded (Kafka's bound of records per
request, or one engine call).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Coroutine, Generator, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar, cast

from wal.interrupts import Releasing, release

T = TypeVar("T")

PAUSE_BOUND = 200_000
"""The most objects the young generation may hold for a pause to start or
to be joined: about twice what a Fetch of 10,000 partitions with records
makes (60,000 to 100,000: six to ten per partition read and answered,
measured). Pauses
on several threads (the event loop's Fetch steps, the admin thread's bulk
work, another server in the process) may overlap so that one always holds
the collector off when another leaves; past the bound, no new pause
begins, the ones under way end with their step, and the collection
already due runs. Counted in objects, not time: the objects are what the
collector would have freed, and the young generation's count is what
sets a collection off."""


class _Pauses:
    """Who is pausing the collector now, and whether to resume it after."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.resume = True


_pauses = _Pauses()


class _Part:
    """One pauser's share of the count. ``counted`` is set in the locked
    step that counts it and cleared in the one that takes it back, so the
    caller's finally ends exactly the pause that was counted: a
    KeyboardInterrupt raised between the count and the caller's try (the
    interpreter looks for signals after every call's return) would
    otherwise leave it counted and the collector off for good
    (docs/design/0097)."""

    __slots__ = ("counted",)

    def __init__(self) -> None:
        self.counted = False


class _Counted(Protocol):
    counted: bool


class CollectorPaused(Releasing):
    """Pauses the collector inside a with block (if ``pause``); nests and
    works across threads: the collector resumes when the last pauser
    leaves, and only if it was enabled when the first came. Past
    PAUSE_BOUND young objects it does not pause (a collection is due, and
    no pause may put it off for good).

    A class, not a generator's context manager: its ``__enter__`` ends
    the pause itself if interrupted once it has counted it (a generator's
    would leave it to the generator's finally, once the exception's
    traceback is dropped), and its ``__exit__`` ends it on any exception
    at once, a second Ctrl-C landing as it starts included
    (wal/interrupts.py; docs/design/0111). Its own share of the count,
    as a _Part's: no second object per use."""

    __slots__ = ("_wanted", "counted")

    def __init__(self, pause: bool = True) -> None:
        self._window = False
        self.counted = False
        self._wanted = pause

    def __enter__(self) -> None:
        if not self._wanted:
            return
        try:
            self._open_window()
            _pause(self)
        except BaseException:
            self.__exit__(None, None, None)
            raise

    @release
    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with _pauses.lock:  # not acquire() then try: see _pause
            if self.counted:
                self.counted = False
                _pauses.count -= 1
                if _pauses.count == 0 and _pauses.resume:
                    gc.enable()
        self._close_window()


def _pause(part: _Counted) -> None:
    """Pauses the collector unless PAUSE_BOUND is passed; ``part.counted``
    says whether it did (then its release ends the pause). Called inside
    the try whose handler releases."""
    # A with statement, not acquire() then try: the interpreter looks for
    # signals after the call that took the lock, before the try, and a
    # KeyboardInterrupt raised there (the main thread's: an embedded
    # engine's bulk creation) would leave the lock held and every later
    # pause on every thread (each Fetch's steps) blocked for good. The
    # with statement takes it with no look between (docs/design/0097).
    with _pauses.lock:
        if gc.get_count()[0] >= PAUSE_BOUND:
            return
        # Counted before the collector is touched, with no call between:
        # an interrupt after any call below finds the pause counted, and
        # its release puts the collector back as it found it.
        _pauses.count += 1
        part.counted = True
        if _pauses.count == 1:
            _pauses.resume = False  # until read: never turn on what no pause turned off
            _pauses.resume = gc.isenabled()
            gc.disable()


@contextmanager
def what_start_made_frozen() -> Iterator[None]:
    """Moves every object the collector tracks now into its permanent
    generation, which no collection walks again, until the with block
    ends.

    Entered once a server has started: what its start made (modules,
    classes, functions, the engine's and the server's state) lives as long
    as the server. A full collection holds the GIL for as long as it walks,
    and so holds the event loop that acknowledges produces: on a server
    that has opened and imported all it serves, tens of milliseconds per
    collection for objects that can never be garbage. Frozen, a full
    collection walks only what was made since. Cycles already garbage at
    the moment of the call stay allocated: a bounded, one-time amount.

    On leaving, the objects are given back to the collections (``serve``
    run in a process that lives on after it: a test, a script calling the
    CLI's main), unless something was frozen before: the permanent
    generation cannot be given back in part, and what the application
    froze stays frozen as it asked, with what this froze beside it.
    """
    frozen_before = gc.get_freeze_count()
    gc.freeze()
    try:
        yield
    finally:
        if not frozen_before:
            gc.unfreeze()


SERVING_GEN0_THRESHOLD = 20_000
"""The young generation's threshold ``tidelog serve`` sets once started,
in place of CPython's 700 (the older generations keep theirs).

What a Produce request leaves alive is mostly its batch in the log cache (the
StoredBatch, its memoryview and the view's buffer: three tracked objects
a batch, alive until evicted after upload); everything else it makes is
freed by reference counting before the next request. At 700, those
survivors set off a young collection every hundred requests or so, an
older one every thousand and a full one, which walks the whole log
cache, every ten thousand: some 2,000 to 9,000 of a small request's
176,000 instructions on the event loop, and most of their spread. At
20,000 a young collection runs every 5,000-6,000 requests and the
collector's CPU a request fell to a third (80,000 requests). The longest
pause is no shorter, only rarer: the batches that survive young
collections now wait in the middle generation, whose collection, every
60,000-70,000 requests, walks them all as a full one did every 10,000
(55-62 ms of CPU against 72-85 ms, measured); a full one waits for ten
middle ones (docs/design/0152; 5,000 and 50,000 measured too). The cost
is cyclic garbage freed later: at most 20,000 tracked objects' worth
between young collections, and whatever large buffers those hold (a
Produce's refusals held the request's bytes so, until kept without their
tracebacks); acyclic objects are freed at once as before. Set by ``tidelog serve`` only: an engine
embedded in a user's process, with its wire server or without, leaves
the thresholds to the application that owns the interpreter."""


@contextmanager
def collecting_less_often_while_serving() -> Iterator[None]:
    """Raises the young generation's threshold to SERVING_GEN0_THRESHOLD
    inside the with block, keeping the older generations' as they are,
    and puts back all three on leaving: ``serve`` run in a process that
    lives on after it (a test, a script calling the CLI's main) leaves
    the collector as it found it."""
    kept = gc.get_threshold()
    gc.set_threshold(SERVING_GEN0_THRESHOLD, *kept[1:])
    try:
        yield
    finally:
        gc.set_threshold(*kept)


class PausedWhileRunning(_Part, Generic[T]):
    """Awaits ``coroutine`` with the collector paused while it runs and
    running while it waits (an await that gives the loop to others).

    A Fetch of thousands of partitions makes some ten objects per partition
    read, all alive until its answer is sent: each generation's threshold
    passed on the way sets off a collection that walks them, and a full one
    walks them with everything else (on a server holding 10,000
    partitions, half a second, as long as the request's own work). Paused,
    one young collection after the request walks them, or nothing once
    they are freed. Only the coroutine's own steps are paused, never its
    waits (an object read's, a long poll's), so the pause is bounded by
    the CPU the request takes, not by what it waits for; and, however many
    Fetches and threads overlap their pauses, by PAUSE_BOUND.
    """

    __slots__ = ("_coroutine",)

    def __init__(self, coroutine: Coroutine[Any, Any, T]) -> None:
        # Its own share of the count (a _Part): no second object per await.
        self.counted = False
        self._coroutine = coroutine

    def __await__(self) -> Generator[Any, Any, T]:
        coroutine = self._coroutine
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            # CollectorPaused without its with statement: a Fetch takes
            # several steps, each paused (docs/design/0085).
            try:
                _pause(self)  # each step's release clears what it counted
                if thrown is None:
                    waited = coroutine.send(sent)
                else:
                    waited, thrown = coroutine.throw(thrown), None
            except StopIteration as stop:
                return cast(T, stop.value)
            finally:
                # CollectorPaused.__exit__'s code inline, not a call: a call's start is
                # a look for signals before anything is given back, where a
                # second Ctrl-C (one landing while the first's exception
                # leaves the step) would leave the pause counted; a finally
                # has no look before its first call (wal/interrupts.py).
                with _pauses.lock:
                    if self.counted:
                        self.counted = False
                        _pauses.count -= 1
                        if _pauses.count == 0 and _pauses.resume:
                            gc.enable()
            try:
                sent = yield waited
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as error:  # cancellation, passed on as yield from does
                sent, thrown = None, error
