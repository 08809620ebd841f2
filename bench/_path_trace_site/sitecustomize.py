"""Timestamps along a produce request's path inside ``tidelog serve``, for
bench/produce_path.py (loaded through PYTHONPATH into the server it starts).

Active only when ``TIDELOG_PATH_TRACE`` names an output prefix and the
process is a server. It wraps, in place, the methods a produce request
passes through and notes ``perf_counter_ns`` at each: the first bytes of a
large request read, the request read whole and handled (event loop), the
WAL append queued, the group taken, written and synced (writer or sync
thread), the group settled and its waiters woken on the loop, and the
response written. Also per request the page faults of the reading thread
(``getrusage(RUSAGE_THREAD)``), each object-store write and WAL spare, and
every 50 ms each thread's run and run-queue time (/proc schedstat). At exit
everything is pickled to ``<prefix>.<pid>``.

A measuring aid only: it costs about a microsecond per note and a
sampling thread, and nothing in the server imports it.
"""

from __future__ import annotations

import atexit
import os
import pickle
import resource
import sys
import threading
import time
from typing import Any

_OUTPUT = os.environ.get("TIDELOG_PATH_TRACE")


def _install(output: str) -> None:
    from engine.server import connection
    from s3stream.store import local as local_store
    from wal import group_commit
    from wal import log as wal_log
    from wal.segment import SegmentWriter

    now = time.perf_counter_ns
    events: list[tuple[int, str, Any]] = []
    note = events.append
    faults: list[tuple[str, int]] = []
    samples: list[tuple[int, dict[int, tuple[str, int, int]]]] = []
    names: dict[int, str] = {}
    sequence: dict[int, int] = {}
    counter = [0]

    def thread_faults() -> int:
        return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt

    def key(waiter: object) -> int | None:
        return sequence.get(id(waiter))

    def wrap(owner: Any, name: str, make: Any) -> None:
        setattr(owner, name, make(getattr(owner, name)))

    def traced_request(original: Any) -> Any:
        def request(self: Any, frame: bytearray) -> None:
            note((now(), "read", len(frame)))
            faults.append(("read", thread_faults()))
            original(self, frame)
            note((now(), "handled", len(frame)))

        return request

    def traced_start_body(original: Any) -> Any:
        def start_body(self: Any, size: int, first: memoryview) -> None:
            note((now(), "first", size))
            faults.append(("first", thread_faults()))
            original(self, size, first)

        return start_body

    def traced_flush(original: Any) -> Any:
        def flush(self: Any) -> None:
            if self._outgoing:
                note((now(), "flush", None))
            original(self)

        return flush

    def traced_submit(original: Any) -> Any:
        def submit(self: Any, pending: Any) -> None:
            counter[0] += 1
            sequence[id(pending.waiter)] = counter[0]
            note((now(), "submit", counter[0]))
            original(self, pending)

        return submit

    def traced_next_group(original: Any) -> Any:
        def next_group(self: Any) -> Any:
            group = original(self)
            note((now(), "taken", [key(p.waiter) for p in group] if group else None))
            return group

        return next_group

    def traced_write(original: Any) -> Any:
        def write(self: Any, buffers: Any) -> None:
            note((now(), "write", threading.current_thread().name))
            original(self, buffers)
            note((now(), "written", None))

        return write

    def traced_sync(original: Any) -> Any:
        def sync(self: Any) -> None:
            note((now(), "sync", threading.current_thread().name))
            original(self)
            note((now(), "synced", None))

        return sync

    def traced_settle(original: Any) -> Any:
        def settle(group: Any, outcomes: Any) -> None:
            note((now(), "settle", [key(p.waiter) for p in group]))
            original(group, outcomes)

        return settle

    def traced_on_loop(original: Any) -> Any:
        def on_loop(waiters: Any, outcomes: Any, futures_only: bool) -> None:
            note((now(), "on_loop", [sequence.pop(id(w), None) for w in waiters]))
            original(waiters, outcomes, futures_only)

        return on_loop

    def timed(stage: str) -> Any:
        def make(original: Any) -> Any:
            def call(*args: Any) -> Any:
                began = now()
                try:
                    return original(*args)
                finally:
                    note((began, stage, now() - began))

            return call

        return make

    wrap(connection.Connection, "_request", traced_request)
    wrap(connection.Connection, "_start_body", traced_start_body)
    wrap(connection.Connection, "_flush", traced_flush)
    wrap(group_commit.GroupCommitter, "submit", traced_submit)
    wrap(group_commit.GroupCommitter, "_next_group", traced_next_group)
    wrap(SegmentWriter, "write", traced_write)
    wrap(SegmentWriter, "sync", traced_sync)
    wrap(group_commit, "_settle", traced_settle)
    wrap(group_commit, "_settle_on_loop", traced_on_loop)
    wrap(local_store.LocalStore, "_write", timed("object_put"))
    wrap(wal_log.WriteAheadLog, "_make_spare", timed("spare"))

    def sample() -> None:
        pid = os.getpid()
        while True:
            for thread in threading.enumerate():
                if thread.native_id is not None:
                    names[thread.native_id] = thread.name
            row = {}
            for task in os.listdir(f"/proc/{pid}/task"):
                try:
                    with open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as stat:
                        ran, waited, _ = stat.read().split()
                except (OSError, ValueError):
                    continue
                row[int(task)] = (names.get(int(task), "?"), int(ran), int(waited))
            samples.append((now(), row))
            time.sleep(0.05)

    threading.Thread(target=sample, name="path-trace-sampler", daemon=True).start()

    def dump() -> None:
        anchor = (time.perf_counter_ns(), time.time())
        with open(f"{output}.{os.getpid()}", "wb") as out:
            pickle.dump(
                {"events": events, "faults": faults, "samples": samples, "anchor": anchor}, out
            )

    atexit.register(dump)


if _OUTPUT and "serve" in sys.argv:
    _install(_OUTPUT)
