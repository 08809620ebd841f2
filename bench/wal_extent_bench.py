"""The WAL's fdatasync by what lies under the write: fallocate'd, zero-filled
or recycled blocks, alone and beside a spare's zero fill.

    python bench/wal_extent_bench.py [--rounds 3] [--segment-mb 64] [--write-mb 32]
                                     [--fill-step-kib 512] [--quick] [--json] [--dir PATH]

Each kind writes ``--write-mb`` into a fresh segment through the WAL's own
``SegmentWriter``, as the group committer does under load: a write of 16
KiB, 64 KiB, 256 KiB or 1 MiB (in turn), then its fdatasync, back to back.
The kinds, in turns round by round (a machine that slows down part-way
slows every kind):

- ``fallocated``: a segment ``SegmentWriter.create`` preallocates, as an
  open or a roll without a spare makes it: its extents are unwritten, so
  each fdatasync also converts the range written (and, on a journalled
  ext4, commits the journal for it);
- ``zero_filled``: a spare of written zeros (``zero_filled_file``) taken by
  the segment, as a roll into a spare made from nothing;
- ``recycled``: a segment written whole before, recycled;
- ``zero_filled_beside_fill`` / ``recycled_beside_fill``: the same while a
  thread zero-fills another segment's worth of spare (again and again,
  until the kind's writes end), as the spare maker does beside the writer,
  written out ``--fill-step-kib`` at a time (the spare maker's step by
  default); ``*_fills_beside`` counts the fills it finished meanwhile and
  ``*_fills_per_s`` their rate (median over the rounds): what the step
  costs the spare maker.

Reported per kind (medians over the rounds): the fdatasync's p50, p99 and
max, syncs of 20 ms or more (the WAL's ``tidelog.stalls`` threshold) as a
sum over the rounds, and, where ``perf`` can read tracepoints, the kind's
calls of ext4's unwritten-extent handler (ext4:ext4_ext_handle_unwritten_extents
on the segment's inode: this file's alone; two for each range converted,
the split when its write is submitted and the conversion when it
completes) and journal commits
(jbd2:jbd2_start_commit, the whole machine's) per sync, and the disk's
write requests and cache flushes per sync (/proc/diskstats, the whole
device's); beside the p99, its ratio to ``recycled``'s. What each kind
is, the file system says (FIEMAP, no perf needed): the segment's bytes
written, still unwritten (fallocate'd) and still delayed (not yet on the
disk) when its writes begin, each round's in ``*_written_bytes_before_runs``
and the like: only ``fallocated`` has unwritten ones, the others are
written whole, and no kind's are delayed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import shutil
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _harness
from _extents import extents_of

from wal import segment
from wal.segment import SegmentWriter, zero_filled_file

MIB = 1 << 20
WRITE_SIZES = (16 * 1024, 64 * 1024, 256 * 1024, MIB)
SLOW_MS = 20.0
"""wal/syncer.py's SLOW_SYNC_S, in ms."""
KINDS = (
    "fallocated",
    "zero_filled",
    "recycled",
    "zero_filled_beside_fill",
    "recycled_beside_fill",
)
CONVERSIONS = "ext4:ext4_ext_handle_unwritten_extents"
COMMITS = "jbd2:jbd2_start_commit"


def _diskstats() -> list[list[str]]:
    """/proc/diskstats's lines split in fields; none where it cannot be
    read (not Linux, a sandbox without /proc): the disk's counts are then
    left out, the times still measured."""
    try:
        with open("/proc/diskstats", encoding="ascii") as stats:
            return [line.split() for line in stats]
    except OSError:
        return []


def _device_of(directory: Path) -> str | None:
    """The name /proc/diskstats gives the device ``directory`` is on."""
    dev = os.stat(directory).st_dev
    major, minor = os.major(dev), os.minor(dev)
    for fields in _diskstats():
        if int(fields[0]) == major and int(fields[1]) == minor:
            return fields[2]
    return None


def _disk_counts(device: str | None) -> tuple[int, int] | None:
    """The device's completed writes and cache flushes (statistics 5 and
    16 of Documentation/admin-guide/iostats.rst, after the major, minor and
    name; flushes since kernel 5.5)."""
    if device is None:
        return None
    for fields in _diskstats():
        if fields[2] == device and len(fields) >= 20:
            return int(fields[7]), int(fields[18])
    return None


def journal_of(device: str | None) -> str:
    """ext4's journal thread for the device, "<none>" on a file system made
    without a journal, "" where that cannot be read."""
    if device is None:
        return ""
    try:
        with open(f"/sys/fs/ext4/{device}/journal_task", encoding="ascii") as journal:
            return journal.read().strip()
    except OSError:
        return ""


PERF_ANSWER_S = 30.0
"""How long perf may take to open or close its counters on a loaded machine."""


def _tell_perf(control: int, acks: int, command: bytes) -> bool:
    """Sends perf stat a --control command; whether perf acknowledged it
    (it has not if it exited: no permission, no such tracepoint, a perf
    without --control)."""
    try:
        os.write(control, command)
    except BrokenPipeError:
        return False
    ready, _, _ = select.select([acks], [], [], PERF_ANSWER_S)
    return bool(ready) and os.read(acks, 16).startswith(b"ack")


@contextlib.contextmanager
def tracepoints(inode: int, found: dict[str, int]) -> Iterator[None]:
    """Counts extent conversions on ``inode`` and the machine's journal
    commits while the block runs, into ``found`` (left empty where perf
    cannot count them).

    perf starts with its counters disabled and counts from its
    acknowledgement of "enable" to that of "disable": on a loaded machine
    its start can take longer than any fixed wait, and a count that missed
    the kind's first syncs would read as fewer conversions per sync."""
    perf = shutil.which("perf")
    if perf is None:
        yield
        return
    control_read, control = os.pipe()
    acks, ack_write = os.pipe()
    command = [perf, "stat", "-a", "-x", ",", "--delay", "-1"]
    command += ["--control", f"fd:{control_read},{ack_write}"]
    command += ["-e", CONVERSIONS, "--filter", f"ino == {inode}"]
    command += ["-e", COMMITS]  # system-wide
    try:
        child = subprocess.Popen(
            command, stderr=subprocess.PIPE, text=True, pass_fds=(control_read, ack_write)
        )
    finally:
        os.close(control_read)
        os.close(ack_write)
    counting = False
    try:
        counting = _tell_perf(control, acks, b"enable\n")
        yield
        counting = counting and _tell_perf(control, acks, b"disable\n")
    finally:
        os.close(control)
        os.close(acks)
        child.send_signal(signal.SIGINT)
        try:
            _, errors = child.communicate(timeout=PERF_ANSWER_S)
        except subprocess.TimeoutExpired:
            # A perf that will not stop would count the whole machine on,
            # after the bench: killed, and its counts not trusted.
            child.kill()
            child.communicate()
            counting = False
    if not counting:
        return
    for line in errors.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2] in (CONVERSIONS, COMMITS) and fields[0].isdigit():
            found[fields[2]] = int(fields[0])


def _recycled_file(directory: Path, size: int) -> str:
    """A segment-sized file written whole with data, as a trimmed segment is."""
    path = directory / "free-recycled.wal"
    data = memoryview(os.urandom(MIB))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for offset in range(0, size, MIB):
            os.pwrite(fd, data[: size - offset], offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    return str(path)


def _make_segment(kind: str, directory: Path, size: int, sequence: int) -> SegmentWriter:
    if kind == "fallocated":
        return SegmentWriter.create(str(directory), sequence, size, preallocate=True)
    if kind.startswith("zero_filled"):
        reuse = zero_filled_file(str(directory), size, "free-spare.wal")
    else:
        reuse = _recycled_file(directory, size)
    return SegmentWriter.create(str(directory), sequence, size, preallocate=True, reuse=reuse)


def _fill_beside(directory: Path, size: int, stop: threading.Event) -> Callable[[], int]:
    """Zero-fills spares of ``size`` one after another until ``stop``; the
    returned call joins the thread and says how many it finished, or raises
    what stopped the fill early: syncs reported "beside a fill" that had no
    fill beside them would mislead."""
    made = [0]
    failed: list[BaseException] = []

    def fill() -> None:
        try:
            while not stop.is_set():
                path = zero_filled_file(str(directory), size, "free-beside.wal")
                os.unlink(path)
                made[0] += 1
        except BaseException as error:
            failed.append(error)

    thread = threading.Thread(target=fill, name="zero-fill-beside")
    thread.start()

    def join() -> int:
        stop.set()
        thread.join()
        if failed:
            raise RuntimeError("the zero fill beside the writes failed") from failed[0]
        return made[0]

    return join


def one_kind(
    kind: str, directory: Path, size: int, write_bytes: int, sequence: int
) -> dict[str, Any]:
    segment = _make_segment(kind, directory, size, sequence)
    device = _device_of(directory)
    chunks = [memoryview(os.urandom(n)) for n in WRITE_SIZES]
    latencies: list[float] = []
    counted: dict[str, int] = {}
    fills = 0
    try:
        os.sync()  # the kind's own syncs, not what an earlier one left
        extents = extents_of(segment.path)
        disk_before = _disk_counts(device)
        with tracepoints(os.stat(segment.path).st_ino, counted):
            join = _fill_beside(directory, size, threading.Event()) if "beside" in kind else None
            written = 0
            began = time.perf_counter()
            try:
                while written < write_bytes:
                    chunk = chunks[len(latencies) % len(chunks)]
                    segment.write([chunk])
                    started = time.perf_counter()
                    segment.sync()
                    latencies.append((time.perf_counter() - started) * 1000)
                    written += len(chunk)
            finally:
                # Also when a write fails: the fill would otherwise run on,
                # and keep the process from exiting.
                if join is not None:
                    fills = join()
            seconds = time.perf_counter() - began
        disk_after = _disk_counts(device)
    finally:
        segment.close()
        os.unlink(segment.path)
    syncs = len(latencies)
    figures = {**sync_figures(latencies), "fills_beside": fills, "fills_per_s": fills / seconds}
    if disk_before is not None and disk_after is not None:
        figures["disk_writes_per_sync"] = (disk_after[0] - disk_before[0]) / syncs
        figures["flushes_per_sync"] = (disk_after[1] - disk_before[1]) / syncs
    if extents is not None:
        figures["written_bytes_before"] = extents.written
        figures["unwritten_bytes_before"] = extents.unwritten
        figures["delayed_bytes_before"] = extents.delayed
    if CONVERSIONS in counted:
        figures["conversions_per_sync"] = counted[CONVERSIONS] / syncs
    if COMMITS in counted:
        figures["commits_per_sync"] = counted[COMMITS] / syncs
    return figures


def sync_figures(latencies_ms: list[float]) -> dict[str, Any]:
    """The syncs' count, p50, p99 and max, and how many took ``SLOW_MS`` or more."""
    ordered = sorted(latencies_ms)
    syncs = len(ordered)
    return {
        "syncs": syncs,
        "p50_ms": ordered[syncs // 2],
        "p99_ms": ordered[min(syncs - 1, int(0.99 * syncs))],
        "max_ms": ordered[-1],
        "slow": sum(1 for ms in ordered if ms >= SLOW_MS),
    }


COUNTS = ("conversions_per_sync", "commits_per_sync", "disk_writes_per_sync", "flushes_per_sync")
EXTENT_STATES = ("written_bytes_before", "unwritten_bytes_before", "delayed_bytes_before")


def run(directory: Path, rounds: int, segment_mb: int, write_mb: int) -> dict[str, Any]:
    by_kind: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    sequence = 0
    for _ in range(rounds):
        for kind in KINDS:  # in turns: a machine that slows down slows every kind
            sequence += 1
            by_kind[kind].append(
                one_kind(kind, directory, segment_mb * MIB, write_mb * MIB, sequence)
            )
    results: dict[str, Any] = {
        "rounds": rounds,
        "segment_mb": segment_mb,
        "write_mb": write_mb,
        "write_sizes": list(WRITE_SIZES),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "ext4_journal": journal_of(_device_of(directory)),
        **_harness.cpus(),
    }
    for kind, runs in by_kind.items():
        for name in ("p50_ms", "p99_ms", "max_ms"):
            results[f"{kind}_{name}"] = round(statistics.median(r[name] for r in runs), 3)
            results[f"{kind}_{name}_runs"] = [round(r[name], 2) for r in runs]
        results[f"{kind}_slow_syncs"] = sum(r["slow"] for r in runs)
        results[f"{kind}_slow_syncs_runs"] = [r["slow"] for r in runs]
        results[f"{kind}_syncs"] = sum(r["syncs"] for r in runs)
        for name in COUNTS:
            if all(name in r for r in runs):
                results[f"{kind}_{name}"] = round(statistics.median(r[name] for r in runs), 3)
        for name in EXTENT_STATES:
            if all(name in r for r in runs):
                results[f"{kind}_{name}_runs"] = [r[name] for r in runs]
        if "beside" in kind:
            results[f"{kind}_fills_beside"] = sum(r["fills_beside"] for r in runs)
            results[f"{kind}_fills_per_s"] = round(
                statistics.median(r["fills_per_s"] for r in runs), 2
            )
    for kind in KINDS:
        for name in ("p50_ms", "p99_ms", "max_ms"):
            base = results[f"recycled_{name}"]
            results[f"{kind}_vs_recycled_{name.removesuffix('_ms')}"] = (
                round(results[f"{kind}_{name}"] / base, 2) if base else None
            )
    return results


def _count(results: dict[str, Any], kind: str, name: str) -> str:
    """A kind's count per sync, or "-" where it could not be counted."""
    value = results.get(f"{kind}_{name}")
    return "-" if value is None else f"{value:.2f}"


def _unwritten_mib(results: dict[str, Any], kind: str) -> str:
    """The kind's segment's unwritten MiB when its writes began (the most
    of any round), or "-" where the file system cannot say."""
    rounds = results.get(f"{kind}_unwritten_bytes_before_runs")
    return "-" if rounds is None else f"{max(rounds) / MIB:.1f}"


def print_table(results: dict[str, Any]) -> None:
    sizes = "/".join(f"{n // 1024}" for n in WRITE_SIZES)
    print(
        f"{results['write_mb']} MiB per kind into {results['segment_mb']} MiB segments, "
        f"writes of {sizes} KiB each followed by fdatasync; medians of {results['rounds']} "
        f"rounds (load average {results['load_average']}; ext4 journal: "
        f"{results['ext4_journal'] or 'unknown'})"
    )
    print(
        f"{'kind':<26}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'>=20ms':>8}"
        f"{'conv/sync':>10}{'jbd2/sync':>10}{'wr/sync':>8}{'flush/sync':>11}{'p99/recycled':>13}"
        f"{'unwritten MiB':>14}"
    )
    for kind in KINDS:
        counts = "".join(
            f"{_count(results, kind, name):>{width}}"
            for name, width in zip(COUNTS, (10, 10, 8, 11), strict=True)
        )
        print(
            f"{kind:<26}{results[f'{kind}_p50_ms']:8.2f}{results[f'{kind}_p99_ms']:8.2f}"
            f"{results[f'{kind}_max_ms']:8.1f}{results[f'{kind}_slow_syncs']:8d}{counts}"
            f"{results[f'{kind}_vs_recycled_p99']!s:>13}{_unwritten_mib(results, kind):>14}"
        )


def _positive(text: str) -> int:
    """A count of at least one: no rounds leave no median, a step of 0
    never ends a fill, and no writes no syncs to time."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not at least 1")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=_positive, default=3)
    parser.add_argument("--segment-mb", type=_positive, default=64)
    parser.add_argument("--write-mb", type=_positive, default=32)
    parser.add_argument("--quick", action="store_true", help="1 round, 8 MiB segments")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    parser.add_argument(
        "--fill-step-kib",
        type=_positive,
        default=segment.ZERO_FILL_CHUNK // 1024,
        help="the zero fill's step (wal/segment.py's ZERO_FILL_CHUNK) for every fill of the run",
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.segment_mb, args.write_mb = 1, 8, 4
    if args.write_mb >= args.segment_mb:
        # The last writes would run past the segment's end, into blocks the
        # file gains as it grows, whatever its kind.
        parser.error("--write-mb must be less than --segment-mb")
    segment.ZERO_FILL_CHUNK = args.fill_step_kib * 1024
    with _harness.scratch(args.dir, "tidelog-extent-bench-") as scratch:
        results = run(scratch, args.rounds, args.segment_mb, args.write_mb)
    results["fill_step_kib"] = args.fill_step_kib
    _harness.report(results, args.json, print_table)


if __name__ == "__main__":
    main()
