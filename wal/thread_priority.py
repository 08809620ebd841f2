"""The OS scheduling priority of the stream store's and the WAL's threads.

On a machine with fewer cores than runnable threads, an acknowledgement
waits for a CPU as often as for the disk: the event loop, the WAL's writer
and its sync thread must run the moment they can. The other threads do
work nobody waits for: the uploader laying out and writing 32 MiB objects
(a SHA-256 chain and CRC32C over every batch) while no append asks for
remote durability, compaction, the manifest's checkpoints and deletions,
the WAL's spare segments, catch-up reads of history. On Linux each thread
has a nice value of its own, and a thread may always lower its own
priority; so each of those threads, when it starts, sets its nice value to
a fixed amount more than that of the thread that opened the store
(``[store] background_nice``, ``read_nice`` for the read threads). Their
work then takes the CPU time the acknowledgement path leaves.

A priority is fixed relative to the opener, not to the thread that starts
a worker (a thread inherits the nice value of the one that starts it, and
workers are started from all sorts of threads), and a thread never raises
its own priority again: without privileges it cannot. Work that an
acknowledgement may wait for therefore never runs on a lowered thread: it
goes to one that never was (see s3stream/uploader.py for remote
acknowledgements).

This module sits in ``wal``, the lowest package with threads of its own,
so that every layer above it can use it. Where the OS refuses a lower
priority (a sandbox) or has no per-thread priority, the threads run at the
process's priority and nothing else changes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

log = logging.getLogger("tidelog.wal")

MOST_NICE = 19
"""The lowest priority Linux gives a thread."""


def own_priority() -> int | None:
    """The calling thread's nice value (None where threads have none of their own)."""
    if not sys.platform.startswith("linux"):
        return None
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def lower_own_priority(nice: int) -> None:
    """Sets the calling thread's nice value to ``nice`` (at most MOST_NICE)
    if that is lower priority than it has, on Linux, where nice values are
    per thread; never raises a thread's priority."""
    if not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        if os.getpriority(os.PRIO_PROCESS, thread) < nice:
            os.setpriority(os.PRIO_PROCESS, thread, min(MOST_NICE, nice))
    except OSError as error:  # a sandbox that forbids it: the work still runs
        log.debug("thread %d keeps its priority: %s", thread, error)


class ThreadPriority(NamedTuple):
    """The nice value some threads take when they start (None: they keep
    the one they inherit)."""

    nice: int | None = None

    @classmethod
    def below_caller(cls, nice: int) -> ThreadPriority:
        """``nice`` lower than the calling thread's priority (the opener's);
        0 or less: no change."""
        base = own_priority()
        if nice <= 0 or base is None:
            return cls(None)
        return cls(min(MOST_NICE, base + nice))

    def apply(self) -> None:
        """Lowers the calling thread to this priority (never raises it)."""
        if self.nice is not None:
            lower_own_priority(self.nice)

    def pool(self, workers: int, name: str) -> ThreadPoolExecutor:
        """A pool of ``workers`` threads named ``name``, each at this priority."""
        if self.nice is None:
            return ThreadPoolExecutor(workers, name)
        return ThreadPoolExecutor(
            workers, name, initializer=lower_own_priority, initargs=(self.nice,)
        )

    def started_pool(self, workers: int, name: str, timeout_s: float) -> ThreadPoolExecutor:
        """A pool of ``workers`` threads named ``name``, at this priority,
        every one started now, from the calling thread (the opener).

        A pool otherwise starts its threads from whichever thread first
        submits work, and a thread starts at its starter's priority: one
        started by a lowered thread (a reader, the compactor) would keep
        that priority, which a thread cannot raise again, even in a pool
        meant to keep the opener's (NORMAL). Waits up to ``timeout_s`` for
        them; on a starved machine some may start later, still in the pool."""
        pool = self.pool(workers, name)
        started = threading.Barrier(workers + 1)
        for _ in range(workers):  # each waits at the barrier: no thread is idle for the next
            pool.submit(started.wait, timeout_s)
        with contextlib.suppress(threading.BrokenBarrierError):
            started.wait(timeout_s)
        return pool

    def thread(
        self, target: Callable[..., object], name: str, args: tuple[object, ...] = ()
    ) -> threading.Thread:
        """A daemon thread (not started) that runs ``target`` at this priority."""

        def run() -> None:
            self.apply()
            target(*args)

        return threading.Thread(target=run, name=name, daemon=True)


NORMAL = ThreadPriority()
"""Threads that keep the priority they inherit."""


def read_pool(workers: int, name: str, nice: int) -> ThreadPoolExecutor:
    """A pool of ``workers`` read threads named ``name``, each ``nice``
    below the priority of the thread that makes the pool. The pool's
    threads start when work is submitted, from whichever thread submits it
    (a read thread, for read-ahead): so the priority is fixed here, not
    relative to the thread that starts each one."""
    return ThreadPriority.below_caller(nice).pool(workers, name)
