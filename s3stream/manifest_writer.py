"""The one way the stream store's parts change the manifest: commits made
one at a time, and the fence check; either learning that another writer
has taken over stops the whole store.

A commit whose answer was lost and that its caller gave up on (a permanent
error while checking it) may have landed: the serial section settles it
before its holder reads the manifest's state (or fails, with the store's
error, if it cannot), so what is decided there is decided from the version
the store holds, and a stream such a commit
created for a caller that was told it failed (a fork, or a creation) is
deleted once it is known to have landed: its id was never handed out, so
nothing names it, and nothing else would delete it before a restart (whose
engine deletes the streams no topic names), while a fork's ranges would
keep the objects it shares alive."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Protocol, cast

from s3stream.errors import DeadlinePassed, Fenced
from s3stream.manifest import Manifest
from s3stream.manifest_state import ManifestState, Op
from s3stream.store import ObjectStoreClosed, ObjectStoreError
from wal.interrupts import Releasing, release

log = logging.getLogger("tidelog.s3stream")


class _OwnedLock(Protocol):
    """threading.RLock as the section uses it: its C ``_is_owned`` is not
    in the stubs."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool: ...
    def release(self) -> None: ...
    def _is_owned(self) -> bool: ...


class SerialSection(Releasing):
    """The writer's lock, and on entry the settling of a write whose
    outcome is unknown and the deletion of streams abandoned by it."""

    def __init__(self, writer: ManifestWriter) -> None:
        # An RLock for the one thing a Lock cannot say: whether this thread
        # holds it. The interpreter looks for signals after every call's
        # return, so a KeyboardInterrupt (the main thread's: a compaction
        # run there) can land after acquire() has taken the lock and before
        # anything has recorded it; the handlers release it if this thread
        # holds it, never taking it twice (see _take), so it is never left
        # held (docs/design/0097). A second interrupt, arriving while a
        # release runs, waits for it to end (wal/interrupts.py): the
        # window is the main thread's, which alone receives signals.
        super().__init__()
        self._lock = cast(_OwnedLock, threading.RLock())
        self._writer = writer

    def __enter__(self) -> None:
        # Released here on an error: a with statement calls no __exit__
        # when __enter__ raises, even after the section was taken.
        self._refuse_holder()
        try:
            self._open_window()
            self._enter(None)
        except BaseException:
            self._leave_and_close()
            raise

    @release
    def _leave_and_close(self) -> None:
        self._leave()
        self._close_window()

    def _enter(self, deadline: float | None) -> None:
        """Takes and settles the section (its caller has refused a holder)."""
        try:
            self._take(deadline)
            self._writer.settle_abandoned(deadline)
        except ObjectStoreError as error:
            self._leave()
            if deadline is None or not error.transient or time.monotonic() < deadline:
                raise
            raise DeadlinePassed("settling a manifest commit", error) from error
        except BaseException:
            self._leave()
            raise

    def _refuse_holder(self) -> None:
        """Raised before any handler that releases: the holder's section
        is not this entry's to release."""
        if self._lock._is_owned():
            # A Lock would wait for itself for good here; the RLock would
            # let a second holder in.
            raise RuntimeError("the manifest's serial section entered by its holder")

    def _take(self, deadline: float | None) -> None:
        if deadline is None:
            self._lock.acquire()
        elif not self._lock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            # Another commit holds the manifest (an upload retrying through
            # the same outage, say).
            raise DeadlinePassed("entering the manifest's serial section")

    @release
    def _leave(self) -> None:
        """Releases the section if this thread holds it."""
        if self._lock._is_owned():
            self._lock.release()

    def until(self, deadline: float | None) -> _SectionUntil:
        """The section, entered and settled by ``deadline`` (a
        time.monotonic() value; None: however long it takes), else
        DeadlinePassed; a commit in it given the same deadline that fails
        transiently until then raises DeadlinePassed too."""
        return _SectionUntil(self, deadline)

    @release
    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._lock.release()
        finally:  # a release that raised (not the holder's) leaves no window open
            self._close_window()


class _SectionUntil(Releasing):
    """SerialSection.until's context manager: a class, not a generator,
    whose __enter__ releases the section on any error (a generator's
    context manager looks for signals after the generator has taken it)."""

    __slots__ = ("_deadline", "_section")

    def __init__(self, section: SerialSection, deadline: float | None) -> None:
        self._window = False
        self._section = section
        self._deadline = deadline

    def __enter__(self) -> None:
        self._section._refuse_holder()
        try:
            self._open_window()
            self._section._enter(self._deadline)
        except BaseException:
            self._leave_and_close()
            raise

    @release
    def _leave_and_close(self) -> None:
        self._section._leave()
        self._close_window()

    @release
    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._section._lock.release()
        finally:  # a release that raised (not the holder's) leaves no window open
            self._close_window()
        deadline = self._deadline
        if (
            isinstance(error, ObjectStoreError)
            and deadline is not None
            and error.transient
            and time.monotonic() >= deadline
        ):
            raise DeadlinePassed("a manifest commit", error) from error


class ManifestWriter:
    def __init__(self, manifest: Manifest, on_fenced: Callable[[Fenced], None]) -> None:
        self.manifest = manifest
        self.serial = SerialSection(self)
        """Held around reading the manifest's state and committing what was
        decided from it, so no other commit slips in between."""
        self._on_fenced = on_fenced
        self._abandoned: set[int] = set()
        """Streams created by a commit whose outcome was unknown when its
        caller was told it failed."""

    def abandon_if_landed(self, stream_ids: Iterable[int]) -> None:
        """``stream_ids`` were created by a commit that failed with its
        outcome unknown: deleted once it settles as landed (the caller
        holds ``serial``)."""
        if self.manifest.unsettled:
            self._abandoned.update(stream_ids)

    def settle_abandoned(self, deadline: float | None = None) -> None:
        """Settles an unknown outcome, then deletes the abandoned streams it
        created. A store error is raised to the section's holder, as its
        own commit would raise it, both left to the next section: nothing
        is decided in a section from a state that is not the store's."""
        if not self.manifest.unsettled and not self._abandoned:
            return
        try:
            self.manifest.settle(deadline)
        except Fenced as error:
            self._on_fenced(error)
            raise
        landed = sorted(s for s in self._abandoned if s in self.manifest.state.streams)
        if landed:
            log.info("deleting streams %s: their failed commit landed after all", landed)
            self.commit([["delete_stream", stream_id] for stream_id in landed], deadline)
        self._abandoned.clear()

    def commit(self, ops: list[Op], deadline: float | None = None) -> ManifestState:
        """Commits ``ops`` in one version (the caller holds ``serial``), by
        ``deadline`` if given (Manifest.commit)."""
        try:
            return self.manifest.commit(ops, deadline=deadline)
        except Fenced as error:
            self._on_fenced(error)
            raise

    def check_fence(self, *, certain: bool = False) -> None:
        """One small request to the manifest: raises Fenced (and stops the
        store) if another writer has taken over since our last commit.
        With ``certain``, a store error that leaves it unknown is raised;
        else it is logged, and the next check, or commit, tries again
        (ObjectStoreClosed is raised all the same: no check gets past it)."""
        try:
            self.manifest.check_fenced()
        except Fenced as error:
            self._on_fenced(error)
            raise
        except ObjectStoreError as error:
            if certain or isinstance(error, ObjectStoreClosed):
                raise
            log.debug("fence check failed: %s", error)
