"""The WAL's fdatasync beside the local object store's puts, by the step
the object's direct writes take.

    python bench/wal_beside_puts_bench.py [--rounds 3] [--write-mb 32]
                                          [--steps-kib 1024,512,256] [--no-ioprio]
                                          [--quick] [--json] [--dir PATH]

The WAL side writes ``--write-mb`` into a recycled segment (16 MiB
longer, written whole once and renamed back after each setting) through the
WAL's own ``SegmentWriter``, as the group committer does under load: a
write of 16 KiB, 64 KiB, 256 KiB or 1 MiB (in turn), then its fdatasync,
back to back (bench/wal_extent_bench.py's ``recycled`` kind). Beside it,
a thread puts objects of 1, 2, 4 and 8 MiB (in turn, the sizes the
uploader makes; in parts of 1,000,000 bytes and the rest, as it hands over a
produce request's batches) into a ``LocalStore`` on the same disk, one
after another until the WAL's writes end, each deleted after its put.
The settings, in turns round by round (a machine that slows down
part-way slows every setting):

- ``control``: the WAL's writes alone, no puts;
- ``step_<KiB>``: puts whose direct writes (s3stream/store/direct_writes.py's
  ``STEP``) are that many KiB each;
- ``step_<KiB>_ordered``: the largest step, each of the put's fsyncs
  (the object's and its directory's) held back while a WAL fdatasync is
  in flight, and no WAL fdatasync begun while one of them is: ordering
  the two writers' cache flushes instead of pacing the bytes (with
  O_DIRECT at most one step is in flight already: there are no dirty
  pages for ``sync_file_range`` to bound);
- ``step_<KiB>_idle``: the largest step, the putting thread in the idle
  I/O priority class (``ioprio_set``), where the disk's scheduler serves
  classes (bfq; mq-deadline since Linux 5.14); left out where it does not
  (``none``, kyber) or with ``--no-ioprio``.

Reported per setting (medians over the rounds, and each round's): the
fdatasync's p50, p99 and max, syncs of 20 ms or more (the WAL's
``tidelog.stalls`` threshold) as a sum, the ratio of the p99 to
``control``'s; the same p99 and count with each sync's wait for a CPU
taken off (``off_cpu_*``: the thread's run-queue time during the sync,
/proc/thread-self/schedstat), which tells the disk's waits from the
cores', and the mean run-queue wait a sync; the device's cache flushes
a sync, time per flush and per write, and its busy share
(/proc/diskstats, the whole device's: other processes on the disk count
too); and the putting thread's CPU per MiB (its run time over its puts)
and MiB/s (bytes over the puts' own wall time).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import _harness
from wal_extent_bench import (
    SLOW_MS,
    WRITE_SIZES,
    _device_of,
    _diskstats,
    _recycled_file,
    sync_figures,
)

from s3stream.store import direct_writes
from s3stream.store.local import LocalStore
from wal.segment import SegmentWriter

MIB = 1 << 20
KIB = 1024
OBJECT_MIBS = (1, 2, 4, 8)
PART_BYTES = 1_000_000
IOPRIO_CLASS_IDLE = 3
_IOPRIO_CLASS_SHIFT = 13
_IOPRIO_WHO_PROCESS = 1
_SYS_IOPRIO_SET = {"x86_64": 251, "aarch64": 30}
"""ioprio_set's number (asm/unistd.h); Python's os has no call for it."""
PRIORITY_SCHEDULERS = ("bfq", "mq-deadline")
"""Block schedulers that dispatch by I/O priority class (block/bfq-iosched.c;
block/mq-deadline.c since 5.14): under ``none`` or kyber a class changes
nothing, so it is not measured there."""


def scheduler_of(device: str | None) -> str:
    """The disk's active I/O scheduler (the bracketed one), "" where unknown.
    A partition's queue is its disk's."""
    if device is None:
        return ""
    for name in (device, device.rstrip("0123456789")):
        try:
            with open(f"/sys/block/{name}/queue/scheduler", encoding="ascii") as listed:
                words = listed.read().split()
        except OSError:
            continue
        return next((w.strip("[]") for w in words if w.startswith("[")), "")
    return ""


def set_thread_ioprio(priority_class: int) -> None:
    """Puts the calling thread in ``priority_class`` (its data 0)."""
    number = _SYS_IOPRIO_SET.get(os.uname().machine)
    if number is None:
        raise OSError(f"no ioprio_set number known for {os.uname().machine}")
    libc = ctypes.CDLL(None, use_errno=True)
    value = priority_class << _IOPRIO_CLASS_SHIFT
    if libc.syscall(number, _IOPRIO_WHO_PROCESS, threading.get_native_id(), value) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def device_counts(device: str | None) -> dict[str, int] | None:
    """The device's completed writes, ms writing, ms busy, flushes and ms
    flushing (Documentation/admin-guide/iostats.rst's fields 5, 8, 10, 16
    and 17 after the major, minor and name; flushes since kernel 5.5)."""
    if device is None:
        return None
    for fields in _diskstats():
        if fields[2] == device and len(fields) >= 20:
            return {
                "writes": int(fields[7]),
                "write_ms": int(fields[10]),
                "busy_ms": int(fields[12]),
                "flushes": int(fields[18]),
                "flush_ms": int(fields[19]),
            }
    return None


class _FlushGate:
    """One cache flush at a time between the WAL and the puts: the WAL's
    fdatasync and, while installed, the putting thread's ``os.fsync``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._fsync = os.fsync

    def gated_fsync(self, fd: Any) -> None:  # os.fsync takes a descriptor or a file
        with self.lock:
            self._fsync(fd)

    def __enter__(self) -> _FlushGate:
        os.fsync = self.gated_fsync
        return self

    def __exit__(self, *_: object) -> None:
        os.fsync = self._fsync


def object_parts(size: int) -> list[bytes]:
    """``size`` random bytes in parts of ``PART_BYTES``, the last one the
    rest: whole parts alone would make the 1 MiB object 1,000,000 bytes,
    under ``direct_writes.DIRECT_MIN_BYTES``, and write it through the page
    cache whatever the step."""
    whole, rest = divmod(size, PART_BYTES)
    parts = [os.urandom(PART_BYTES) for _ in range(whole)]
    return [*parts, os.urandom(rest)] if rest else parts


class _Putter:
    """Puts objects of the uploader's sizes one after another until
    stopped; the thread's CPU and the puts' own wall time are counted."""

    def __init__(self, root: Path, priority_class: int | None) -> None:
        self.store = LocalStore(root)
        self.priority_class = priority_class
        self.objects = [object_parts(mib * MIB) for mib in OBJECT_MIBS]
        self.stop = threading.Event()
        self.bytes = 0
        self.cpu_s = 0.0
        self.put_s = 0.0
        self.failed: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="puts-beside")

    def _run(self) -> None:
        try:
            if self.priority_class is not None:
                set_thread_ioprio(self.priority_class)
            count = 0
            while not self.stop.is_set():
                parts = self.objects[count % len(self.objects)]
                key = f"objects/{count}"
                cpu, started = time.thread_time(), time.perf_counter()
                self.store.put(key, parts)
                self.put_s += time.perf_counter() - started
                self.cpu_s += time.thread_time() - cpu
                self.bytes += sum(map(len, parts))
                self.store.delete(key)
                count += 1
        except BaseException as error:
            self.failed.append(error)

    def join(self) -> None:
        self.stop.set()
        self.thread.join()
        if self.failed:
            # Syncs reported "beside puts" that had none beside them would mislead.
            raise RuntimeError("the puts beside the WAL's writes failed") from self.failed[0]


class _RunQueueClock:
    """The calling thread's time waiting for a CPU, in ns (the second field
    of /proc/thread-self/schedstat), or 0 where the kernel keeps none: a
    sync's wall time less that wait is the time it was off the CPU, the
    disk's (and the locks') part of it. The GIL is one of those locks: a
    putting thread preempted while it copies into its bounce buffer keeps
    the WAL thread waiting off the CPU, so the split leans to the disk."""

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            self._fd = None

    def waited_ns(self) -> int:
        if self._fd is None:
            return 0
        return int(os.pread(self._fd, 128, 0).split()[1])

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)


def _wal_syncs(
    segment: SegmentWriter, write_bytes: int, gate: _FlushGate | None
) -> tuple[list[float], list[float]]:
    """Each sync's wall time and its run-queue wait, in ms."""
    chunks = [memoryview(os.urandom(n)) for n in WRITE_SIZES]
    latencies: list[float] = []
    queued: list[float] = []
    written = 0
    clock = _RunQueueClock()
    try:
        while written < write_bytes:
            chunk = chunks[len(latencies) % len(chunks)]
            segment.write([chunk])
            # The run-queue reads sit inside the timed span: a wait for a core
            # just outside it would otherwise be taken off a wall time that
            # never held it, and a slow sync counted as the CPU's.
            started = time.perf_counter()
            waited = clock.waited_ns()
            if gate is None:
                segment.sync()
            else:
                with gate.lock:
                    segment.sync()
            waited = clock.waited_ns() - waited
            latencies.append((time.perf_counter() - started) * 1000)
            queued.append(waited / 1e6)
            written += len(chunk)
    finally:
        clock.close()
    return latencies, queued


def one_setting(
    setting: str, directory: Path, write_bytes: int, sequence: int, recycled: str
) -> dict[str, Any]:
    step_kib, way = _parse(setting)
    segment = SegmentWriter.create(
        str(directory), sequence, os.stat(recycled).st_size, preallocate=True, reuse=recycled
    )
    gate = _FlushGate() if way == "ordered" else None
    putter = None
    saved_step = direct_writes.STEP
    # Set up inside the try: a setting that fails part-way still gives the
    # store its step back and the recycled file its name, for the next one.
    try:
        device = _device_of(directory)
        if step_kib is not None:
            direct_writes.STEP = step_kib * KIB
            direct_writes._spare.clear()  # bounce buffers are a step long
            putter = _Putter(directory / "store", IOPRIO_CLASS_IDLE if way == "idle" else None)
        os.sync()  # the setting's own syncs, not what an earlier one left
        before = device_counts(device)
        began = time.perf_counter()
        with gate or contextlib.nullcontext():
            if putter is not None:
                putter.thread.start()
            try:
                latencies, queued = _wal_syncs(segment, write_bytes, gate)
            finally:
                if putter is not None:
                    putter.join()
        seconds = time.perf_counter() - began
        after = device_counts(device)
    finally:
        direct_writes.STEP = saved_step
        direct_writes._spare.clear()
        segment.close()
        os.rename(segment.path, recycled)
    syncs = len(latencies)
    figures = sync_figures(latencies)
    off_cpu = sorted(ms - wait for ms, wait in zip(latencies, queued, strict=True))
    figures["off_cpu_p99_ms"] = off_cpu[min(syncs - 1, int(0.99 * syncs))]
    figures["slow_off_cpu"] = sum(1 for ms in off_cpu if ms >= SLOW_MS)
    figures["run_queue_ms_per_sync"] = sum(queued) / syncs
    if putter is not None:
        mib = putter.bytes / MIB
        figures["put_mib"] = mib
        figures["put_cpu_ms_per_mib"] = putter.cpu_s * 1000 / mib if mib else 0.0
        figures["put_mb_s"] = mib / putter.put_s if putter.put_s else 0.0
    if before is not None and after is not None:
        moved = {name: after[name] - before[name] for name in after}
        figures["flush_ms_per_flush"] = moved["flush_ms"] / max(1, moved["flushes"])
        figures["write_ms_per_write"] = moved["write_ms"] / max(1, moved["writes"])
        figures["flushes_per_sync"] = moved["flushes"] / syncs
        figures["busy_share"] = moved["busy_ms"] / (seconds * 1000)
    return figures


def _parse(setting: str) -> tuple[int | None, str]:
    """A setting's step in KiB (None: no puts) and its way ("" plain)."""
    if setting == "control":
        return None, ""
    words = setting.split("_")
    return int(words[1]), words[2] if len(words) > 2 else ""


def settings_for(steps_kib: list[int], with_idle: bool) -> list[str]:
    settings = ["control", *(f"step_{kib}" for kib in steps_kib), f"step_{max(steps_kib)}_ordered"]
    if with_idle:
        settings.append(f"step_{max(steps_kib)}_idle")
    return settings


FIGURES = ("p50_ms", "p99_ms", "max_ms", "off_cpu_p99_ms", "run_queue_ms_per_sync")
PUT_FIGURES = ("put_cpu_ms_per_mib", "put_mb_s")
DEVICE_FIGURES = ("flushes_per_sync", "flush_ms_per_flush", "write_ms_per_write", "busy_share")


def run(
    directory: Path, rounds: int, write_mb: int, steps_kib: list[int], ioprio: bool
) -> dict[str, Any]:
    device = _device_of(directory)
    scheduler = scheduler_of(device)
    with_idle = ioprio and scheduler in PRIORITY_SCHEDULERS
    settings = settings_for(steps_kib, with_idle)
    by_setting: dict[str, list[dict[str, Any]]] = {s: [] for s in settings}
    # One file written whole, renamed into each setting's segment and back:
    # every setting writes into the same written blocks.
    recycled = _recycled_file(directory, (write_mb + 16) * MIB)
    sequence = 0
    loads = []
    for _ in range(rounds):
        loads.append(round(os.getloadavg()[0], 2))
        for setting in settings:
            sequence += 1
            figures = one_setting(setting, directory, write_mb * MIB, sequence, recycled)
            by_setting[setting].append(figures)
    results: dict[str, Any] = {
        "rounds": rounds,
        "write_mb": write_mb,
        "write_sizes": list(WRITE_SIZES),
        "object_mibs": list(OBJECT_MIBS),
        "settings": settings,
        "scheduler": scheduler,
        "load_average_rounds": loads,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        **_harness.cpus(),
    }
    for setting, runs in by_setting.items():
        for name in (*FIGURES, *PUT_FIGURES, *DEVICE_FIGURES):
            if all(name in r for r in runs):
                values = [r[name] for r in runs]
                results[f"{setting}_{name}"] = round(statistics.median(values), 3)
                results[f"{setting}_{name}_runs"] = [round(v, 3) for v in values]
        results[f"{setting}_slow_syncs"] = sum(r["slow"] for r in runs)
        results[f"{setting}_slow_off_cpu_syncs"] = sum(r["slow_off_cpu"] for r in runs)
        results[f"{setting}_syncs"] = sum(r["syncs"] for r in runs)
    for setting in settings:
        base = results["control_p99_ms"]
        results[f"{setting}_vs_control_p99"] = (
            round(results[f"{setting}_p99_ms"] / base, 2) if base else None
        )
        runs = by_setting[setting]
        results[f"{setting}_vs_control_p99_runs"] = [
            round(r["p99_ms"] / c["p99_ms"], 2) if c["p99_ms"] else None
            for r, c in zip(runs, by_setting["control"], strict=True)
        ]
    return results


def _cell(results: dict[str, Any], key: str, width: int, digits: int) -> str:
    value = results.get(key)
    return f"{'-':>{width}}" if value is None else f"{value:{width}.{digits}f}"


def print_table(results: dict[str, Any]) -> None:
    sizes = "/".join(f"{n // KIB}" for n in WRITE_SIZES)
    objects = "/".join(str(n) for n in results["object_mibs"])
    print(
        f"{results['write_mb']} MiB of WAL writes ({sizes} KiB, each then fdatasync) a setting,"
        f" beside puts of {objects} MiB objects; medians of {results['rounds']} rounds"
        f" (load {results['load_average_rounds']}; scheduler {results['scheduler'] or 'unknown'})"
    )
    print(
        f"{'setting':<18}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'>=20ms':>7}{'p99/ctl':>8}"
        f"{'off-CPU p99':>12}{'off >=20':>9}"
        f"{'fl/sync':>8}{'flush ms':>9}{'busy':>6}{'put CPU ms/MiB':>15}{'put MiB/s':>10}  p99 runs"
    )
    for setting in results["settings"]:
        print(
            f"{setting:<18}{results[f'{setting}_p50_ms']:8.2f}{results[f'{setting}_p99_ms']:8.2f}"
            f"{results[f'{setting}_max_ms']:8.1f}{results[f'{setting}_slow_syncs']:7d}"
            f"{results[f'{setting}_vs_control_p99']!s:>8}"
            f"{results[f'{setting}_off_cpu_p99_ms']:12.2f}"
            f"{results[f'{setting}_slow_off_cpu_syncs']:9d}"
            f"{_cell(results, f'{setting}_flushes_per_sync', 8, 2)}"
            f"{_cell(results, f'{setting}_flush_ms_per_flush', 9, 2)}"
            f"{_cell(results, f'{setting}_busy_share', 6, 2)}"
            f"{_cell(results, f'{setting}_put_cpu_ms_per_mib', 15, 3)}"
            f"{_cell(results, f'{setting}_put_mb_s', 10, 1)}"
            f"  {results[f'{setting}_p99_ms_runs']}"
        )


def _steps(text: str) -> list[int]:
    """Steps in KiB, each a whole number of direct_writes.ALIGNMENT."""
    steps = [int(word) for word in text.split(",") if word]
    if not steps or any(kib < 4 or kib * KIB % direct_writes.ALIGNMENT for kib in steps):
        raise argparse.ArgumentTypeError(f"{text}: steps of 4 KiB multiples, at least one")
    return steps


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not at least 1")
    return value


def main() -> None:
    parser = _harness.parser(__doc__, "1 round, 4 MiB of WAL writes")
    parser.add_argument("--rounds", type=_positive, default=3)
    parser.add_argument("--write-mb", type=_positive, default=32)
    parser.add_argument("--steps-kib", type=_steps, default=[1024, 512, 256])
    parser.add_argument("--no-ioprio", action="store_true", help="leave out the idle class")
    parser.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.write_mb = 1, 4
    with _harness.scratch(args.dir, "tidelog-wal-beside-puts-") as scratch:
        results = run(scratch, args.rounds, args.write_mb, args.steps_kib, not args.no_ioprio)
    _harness.report(results, args.json, print_table)


if __name__ == "__main__":
    main()
