"""File writes in calls of a WAL group (4 MB) beside the same bytes in a call per MiB of the file.

    python bench/write_span_bench.py [--rounds 3] [--round-mb 1024] [--file-mb 32]
                                     [--rest 5] [--quick] [--json] [--dir PATH]

Each round writes ``--round-mb`` into new files of ``--file-mb``, in
buffers of 1,000,000 bytes (about one produce request's batch) four to a
group, as the WAL writes a group at full rate, in one of two ways, round
by round in turns (so a machine that slows down part-way slows both):

- ``whole``: a ``pwritev`` per group, as the WAL did;
- ``spans``: the group in calls that each end on a multiple of 1 MiB of
  the file (wal/write_spans.py), as the local object store writes now
  (the WAL cuts a group of 2 MiB or more at odd MiB: no call of either
  holds a whole aligned 2 MiB).

Each file is fsynced once written, and a round's files are deleted at its
end, as the WAL deletes trimmed segments; ``--rest`` seconds (5) pass
before each round, so that no round writes into memory the one before
has just freed (the host takes free memory back after about 2 s).
Reported per way:
the writes' CPU per MiB and MiB/s (medians over the rounds), and
``spans_vs_whole_cpu``, the ratio of the CPU medians. Where a write
covering a whole aligned 2 MiB gets a 2 MiB folio, and such blocks are
memory a virtual machine's host takes back (free page reporting), the
ratio is far below 1 (docs/design/0023-produce-cpu-breakdown.md);
elsewhere it is near 1.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import _harness

from native.buffers import BytesLike
from wal.write_spans import write_spans

MIB = 1 << 20
BUFFER_BYTES = 1_000_000
GROUP_BUFFERS = 4


def _whole(buffers: Sequence[BytesLike], offset: int) -> list[Sequence[BytesLike]]:
    return [buffers]


LABELS = {"whole": "a group (4 x 1 MB) per call", "spans": "a MiB of the file per call"}
WAYS: dict[str, Callable[[Sequence[BytesLike], int], Any]] = {
    "whole": _whole,
    "spans": write_spans,
}


def one_round(directory: Path, way: str, round_mb: int, file_mb: int) -> dict[str, float]:
    directory.mkdir()
    group = [os.urandom(BUFFER_BYTES) for _ in range(GROUP_BUFFERS)]
    group_bytes = BUFFER_BYTES * GROUP_BUFFERS
    calls_of = WAYS[way]
    files = max(1, round_mb // file_mb)
    written = 0
    cpu, started = time.process_time(), time.perf_counter()
    for number in range(files):
        fd = os.open(directory / f"file-{number}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            offset = 0
            while offset + group_bytes <= file_mb * MIB:
                for call in calls_of(group, offset):
                    offset += os.pwritev(fd, call, offset)
            os.fsync(fd)
        finally:
            os.close(fd)
        written += offset
    cpu, elapsed = time.process_time() - cpu, time.perf_counter() - started
    for file in directory.iterdir():
        file.unlink()
    mib = written / MIB
    return {"cpu_ms_per_mib": cpu * 1000 / mib, "mb_s": mib / elapsed}


def run(directory: Path, rounds: int, round_mb: int, file_mb: int, rest: float) -> dict[str, Any]:
    by_way: dict[str, list[dict[str, float]]] = {way: [] for way in WAYS}
    for number in range(rounds):
        for way in WAYS:
            time.sleep(rest)
            by_way[way].append(one_round(directory / f"{way}-{number}", way, round_mb, file_mb))
    results: dict[str, Any] = {
        "rounds": rounds,
        "rest_s": rest,
        "round_mb": round_mb,
        "file_mb": file_mb,
        "load_average": round(os.getloadavg()[0], 2),
        **_harness.cpus(),
    }
    for way, runs in by_way.items():
        for figure in ("cpu_ms_per_mib", "mb_s"):
            results[f"{way}_{figure}"] = round(statistics.median(r[figure] for r in runs), 3)
    results["spans_vs_whole_cpu"] = round(
        results["spans_cpu_ms_per_mib"] / results["whole_cpu_ms_per_mib"], 3
    )
    return results


def print_table(results: dict[str, Any]) -> None:
    print(
        f"{results['rounds']} rounds of {results['round_mb']} MiB per way into new files of "
        f"{results['file_mb']} MiB, medians (load average {results['load_average']})"
    )
    print(f"{'calls':<28} {'CPU ms/MiB':>11} {'MiB/s':>9}")
    for way, label in LABELS.items():
        print(f"{label:<28} {results[f'{way}_cpu_ms_per_mib']:11.3f} {results[f'{way}_mb_s']:9.1f}")
    print(f"spans / whole CPU: {results['spans_vs_whole_cpu']}")


def main() -> None:
    parser = _harness.parser(
        __doc__, quick="a smoke test: one round of 64 MiB, 16 MiB files, no rest"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds per way (3)")
    parser.add_argument("--round-mb", type=int, default=1024, help="MiB written per round (1024)")
    parser.add_argument("--file-mb", type=int, default=32, help="MiB per file (32)")
    parser.add_argument("--rest", type=float, default=5.0, help="seconds before each round (5)")
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args()
    rounds, round_mb, file_mb, rest = (
        (1, 64, 16, 0.0) if args.quick else (args.rounds, args.round_mb, args.file_mb, args.rest)
    )
    with _harness.scratch(args.dir, "tidelog-write-span-bench-") as directory:
        results = run(directory, rounds, round_mb, file_mb, rest)
    _harness.report(results, args.json, print_table)


if __name__ == "__main__":
    main()
