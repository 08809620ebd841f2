"""A watchdog on the event loop of a ``python -m engine serve`` process, for
``bench/scale_bench.py --watch-loop``.

Python's site module imports this file when its directory is on the
server's ``PYTHONPATH``; it does nothing unless ``TIDELOG_LOOP_WATCH``
names a file prefix and the process is a server. Then a task on the event
loop beats every millisecond, and a thread looks every millisecond: while
the beat is more than ``TIDELOG_LOOP_WATCH_LATE_MS`` (4) late it samples
the loop thread's Python stack, its kernel state (the system call it is
in, or ``running``) and the other threads' stacks; when the beat resumes
it writes one JSON line for the stall: its start (wall clock), length,
every thread's CPU time over it and its schedstat (ms run, ms waited for a
CPU). A stall's work, not its wall time, says what the loop waited behind.

A diagnostic only: the thread takes the GIL a thousand times a second.
"""

from __future__ import annotations

import os
import sys

if os.environ.get("TIDELOG_LOOP_WATCH") and "serve" in sys.argv:
    import asyncio
    import json
    import threading
    import time
    from collections.abc import Coroutine
    from types import FrameType
    from typing import Any

    import uvloop

    _PREFIX = os.environ["TIDELOG_LOOP_WATCH"]
    _LATE_S = float(os.environ.get("TIDELOG_LOOP_WATCH_LATE_MS", "4")) / 1000
    _SAMPLES = 12
    _beat = {"at": time.perf_counter()}

    def _cpu(ident: int) -> float:
        try:
            return time.clock_gettime(time.pthread_getcpuclockid(ident))
        except (OSError, ValueError):
            return 0.0

    def _schedstat(native_id: int) -> tuple[float, float]:
        try:
            with open(f"/proc/self/task/{native_id}/schedstat", encoding="ascii") as stat:
                ran, waited, _ = stat.read().split()
        except OSError:
            return 0.0, 0.0
        return int(ran) / 1e6, int(waited) / 1e6

    def _kernel_state(native_id: int) -> str:
        try:
            with open(f"/proc/self/task/{native_id}/syscall", encoding="ascii") as call:
                return call.read().split()[0]
        except (OSError, IndexError):
            return "?"

    def _stack(frame: FrameType | None, depth: int = 12) -> list[str]:
        out = []
        while frame is not None and len(out) < depth:
            code = frame.f_code
            out.append(f"{os.path.basename(code.co_filename)}:{frame.f_lineno}:{code.co_name}")
            frame = frame.f_back
        return out

    def _watch(loop_thread: threading.Thread) -> None:
        out = f"{_PREFIX}.{os.getpid()}.jsonl"
        ident, native = loop_thread.ident or 0, loop_thread.native_id or 0
        before: dict[int, float] = {}
        stall: dict[str, Any] | None = None
        while True:
            time.sleep(0.001)
            threads = {t.ident: t for t in threading.enumerate() if t.ident is not None}
            cpus = {i: _cpu(i) for i in threads}
            late = time.perf_counter() - _beat["at"]
            if late > _LATE_S:
                if stall is None:
                    stall = {
                        "t": time.time() - late,
                        "began": _beat["at"],
                        "cpu": before,
                        "sched": {t.name: _schedstat(t.native_id or 0) for t in threads.values()},
                        "samples": [],
                    }
                if len(stall["samples"]) < _SAMPLES:
                    frames = sys._current_frames()
                    others = {
                        threads[i].name: _stack(f, 3)
                        for i, f in frames.items()
                        if i != ident and i in threads
                    }
                    stall["samples"].append(
                        [_stack(frames.get(ident)), _kernel_state(native), others]
                    )
            elif stall is not None:
                names = {i: t.name for i, t in threads.items()}
                sched = {}
                for thread in threads.values():
                    start = stall["sched"].get(thread.name)
                    if start is not None:
                        ran, waited = _schedstat(thread.native_id or 0)
                        sched[thread.name] = [round(ran - start[0], 2), round(waited - start[1], 2)]
                line = {
                    "t": stall["t"],
                    "ms": round((_beat["at"] - stall["began"]) * 1000, 2),
                    "cpu_ms": {
                        names[i]: round((cpus[i] - stall["cpu"][i]) * 1000, 2)
                        for i in cpus
                        if i in stall["cpu"]
                    },
                    "sched_ms": sched,
                    "loop": names.get(ident, ""),
                    "samples": stall["samples"],
                }
                with open(out, "a", encoding="utf-8") as file:
                    file.write(json.dumps(line) + "\n")
                stall = None
            before = cpus

    async def _beating() -> None:
        loop_thread = threading.current_thread()
        threading.Thread(target=_watch, args=(loop_thread,), name="loop-watch", daemon=True).start()
        while True:
            _beat["at"] = time.perf_counter()
            await asyncio.sleep(0.001)

    _run = uvloop.run

    def _watched_run(main: Coroutine[Any, Any, Any], **kwargs: Any) -> Any:
        async def watched() -> Any:
            beat = asyncio.get_running_loop().create_task(_beating())
            try:
                return await main
            finally:
                beat.cancel()

        return _run(watched(), **kwargs)

    uvloop.run = _watched_run
