"""The threads that read from object storage, and their OS scheduling priority.

Catch-up reads (a replay of history) run on two pools: the fetch threads,
which answer a read the log cache cannot, and the read-ahead workers, which
fetch and check the blocks ahead of it. On a machine with fewer cores than
runnable threads, their work (file reads, CRC checks, block parsing)
competes for the CPUs with the event loop and the WAL's threads, and a
live produce or tail fetch waits for a CPU behind a replay's megabytes.
So the read threads ask the OS for a lower priority: on Linux each thread
has a nice value of its own, and each sets its own, when it starts, to
``read_nice`` more than that of the thread that opened the store. The
replay then takes the CPU time the live path leaves.

A lower priority is the one change a thread may make to itself without
privileges; where the OS refuses it or has no per-thread priority, the
threads run at the process's priority and nothing else changes. Most of a
read's CPU (pread, CRC32C over a block) runs without the GIL, so a read
thread waiting for a CPU seldom holds the GIL the event loop needs.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("tidelog.s3stream")

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
    except OSError as error:  # a sandbox that forbids it: the reads still run
        log.debug("read thread %d keeps its priority: %s", thread, error)


def read_pool(workers: int, name: str, nice: int) -> ThreadPoolExecutor:
    """A pool of ``workers`` read threads named ``name``, each ``nice``
    below the priority of the thread that makes the pool. The pool's
    threads start when work is submitted, from whichever thread submits it
    (a read thread, for read-ahead): so the priority is fixed here, not
    relative to the thread that starts each one."""
    base = own_priority()
    if nice <= 0 or base is None:
        return ThreadPoolExecutor(workers, name)
    return ThreadPoolExecutor(
        workers, name, initializer=lower_own_priority, initargs=(base + nice,)
    )
