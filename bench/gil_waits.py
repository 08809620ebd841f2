"""Where an acknowledgement waits for the GIL: the WAL's sync thread and the
event loop, over a delivery-latency run.

    python bench/gil_waits.py [--json] [--quick] [--whole] [--switch-interval S]

Runs ``bench/kafka_bench.py --latency-only`` (librdkafka at 50 MiB/s,
acks=all, against ``tidelog serve`` and librdkafka's mock cluster) with
bench/gil_probe/gil_probe.c preloaded into the server (built here with the
system's C compiler). The probe times every wait for the GIL (CPython
3.11's take_gil waits on a timed condition; its locks are semaphores) and
groups them by what the thread had just come back from:

- ``wal_sync``: from an fdatasync's return to the syncing thread's next
  block (waiting for the next group): settling the synced groups' waiters,
  each loop's share handed over by ``call_soon_threadsafe`` (one wake-up
  written each). The syncing thread is the WAL's sync thread, or its
  writer when nothing else was queued (``wal/syncer.py`` ``sync_here``):
  ``syncs_by_thread`` says how many each;
- ``loop``: from the event loop's wake-up (epoll_pwait's return) to its
  next poll: the turn that runs the waiters' callbacks and writes the
  answers.

Each is reported over the latency phase as p50 / p99 / p99.9 / max of the
episode's length and of its wait for the GIL (ms), the share of episodes
that waited at all, the GIL's ms per second of the phase, the share of
those waits the thread spent runnable without a CPU (its schedstat run
delay: the wait for a core, not for the GIL's holder), and the wake-ups
written per episode. Then the acknowledgement's chain, from an fdatasync's
return to the end of the loop's turn that ran its wake-up, and how much of
its slowest 1% was the GIL; and by Python thread (named through
bench/gil_probe/site), how often a second each was made to drop the GIL:
it had run Python a whole switch interval while another thread waited,
and each thread's waits for the GIL after a lock or queue woke it (the
WAL's writer taking a group among them). Beside them the run's delivery
p50 / p99 / p99.9 and the mock's.

``--whole`` runs every phase of kafka_bench (its ``produce_vs_mock``, the
flat-out produce rate against the mock's, is what a shorter switch
interval would cost). ``--switch-interval`` sets the server's
``sys.setswitchinterval`` through bench/gil_probe/site (the interpreter's
default is 0.005 s); ``--repo`` runs another checkout's server and
kafka_bench with the same probe.
"""

from __future__ import annotations

import argparse
import bisect
import json
import mmap
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROBE_SOURCE = HERE / "gil_probe" / "gil_probe.c"
SITE = HERE / "gil_probe" / "site"
_HEADER = struct.Struct("<QQQQ")
_RECORD = struct.Struct("<QQQQQIHBBQQQ")
"""returned_ns, call_ns, episode_ns, gil_ns, first_send_ns, tid, gil_waits, kind, sends,
gil_run_delay_ns, gil_before_send_ns, run_delay_before_send_ns"""
_MAGIC = 0x65626F72704C4947
KINDS = {1: "wal_sync", 2: "loop"}
FORCED_DROP = 3
WOKEN = 4
QUANTILES = (0.5, 0.99, 0.999)


def build_probe(directory: Path) -> Path:
    """The probe library, compiled into ``directory``."""
    library = directory / "gil_probe.so"
    subprocess.run(
        ["cc", "-O2", "-shared", "-fPIC", "-o", str(library), str(PROBE_SOURCE), "-ldl"],
        check=True,
    )
    return library


def read_records(path: Path) -> tuple[float, list[tuple[int, ...]]]:
    """The episodes a process wrote, and its CLOCK_MONOTONIC's offset from
    the wall clock (seconds to add to a monotonic time)."""
    with open(path, "rb") as raw:
        mapped = mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        magic, count, monotonic_ns, realtime_ns = _HEADER.unpack_from(mapped, 0)
        if magic != _MAGIC:
            return 0.0, []
        count = min(count, (len(mapped) - _HEADER.size) // _RECORD.size)
        records = [
            _RECORD.unpack_from(mapped, _HEADER.size + index * _RECORD.size)
            for index in range(count)
        ]
    finally:
        mapped.close()
    return (realtime_ns - monotonic_ns) / 1e9, records


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0


def summarize(records: list[tuple[int, ...]], seconds: float) -> dict[str, Any]:
    """Per kind of episode: lengths and GIL waits (ms) over the phase."""
    result: dict[str, Any] = {}
    for kind, name in KINDS.items():
        mine = [r for r in records if r[7] == kind]
        if not mine:
            continue
        lengths = sorted(r[2] / 1e6 for r in mine)
        waits = sorted(r[3] / 1e6 for r in mine)
        result[name] = {
            "episodes": len(mine),
            "episode_ms": [round(_quantile(lengths, q), 3) for q in QUANTILES]
            + [round(lengths[-1], 3)],
            "gil_ms": [round(_quantile(waits, q), 3) for q in QUANTILES] + [round(waits[-1], 3)],
            "waited_share": round(sum(1 for w in waits if w > 0) / len(waits), 3),
            "gil_ms_per_s": round(sum(waits) / seconds, 1),
            # Of the GIL's waits, the time the thread was runnable but had
            # no CPU (signalled, or woken by its timeout, and not yet run).
            "gil_run_delay_share": round(
                sum(r[9] for r in mine) / (sum(r[3] for r in mine) or 1), 3
            ),
            "episodes_gil_over_1ms": sum(1 for w in waits if w >= 1.0),
            "sends_per_episode": round(sum(r[8] for r in mine) / len(mine), 2),
        }
        if kind == 1:
            calls = sorted(r[1] / 1e6 for r in mine)
            result[name]["fdatasync_ms"] = [round(_quantile(calls, q), 3) for q in QUANTILES]
    chains = chains_of(records)
    if chains:
        lengths = sorted(chain[0] for chain in chains)
        gil = sorted(chain[1] for chain in chains)
        tail = sorted(chains)[int(len(chains) * 0.99) :]
        tail_gil = sum(chain[1] for chain in tail)
        result["ack_chain"] = {
            "syncs": len(chains),
            "ms": [round(_quantile(lengths, q), 3) for q in QUANTILES] + [round(lengths[-1], 3)],
            "gil_ms": [round(_quantile(gil, q), 3) for q in QUANTILES] + [round(gil[-1], 3)],
            "gil_share_of_slowest_1pct": round(
                tail_gil / (sum(chain[0] for chain in tail) or 1.0), 3
            ),
            "run_delay_share_of_their_gil": round(
                sum(chain[2] for chain in tail) / (tail_gil or 1.0), 3
            ),
        }
    return result


def chains_of(records: list[tuple[int, ...]]) -> list[tuple[float, float, float]]:
    """Per sync that woke a loop: (ms from the fdatasync's return to the end
    of the loop's turn that ran the wake-up, ms of it waiting for the GIL:
    the sync thread's up to its wake-up and that turn's, ms of that
    runnable without a CPU). The sync thread's waits after its wake-up are
    left out: they overlap the loop's turn (the loop holding the GIL, or
    both waiting for a third thread), and counting them would count the
    chain's own work, or one wait twice, as the GIL's."""
    loop = sorted((r[0], r[2], r[3], r[9]) for r in records if r[7] == 2)
    starts = [turn[0] for turn in loop]
    chains = []
    for sync in records:
        if sync[7] != 1 or sync[8] == 0:
            continue
        at = bisect.bisect_left(starts, sync[0] + sync[4])
        if at == len(loop):
            continue
        began, length, waited, delayed = loop[at]
        chains.append(
            (
                (began + length - sync[0]) / 1e6,
                (sync[10] + waited) / 1e6,
                (sync[11] + delayed) / 1e6,
            )
        )
    return chains


def forced_drops(
    records: list[tuple[int, ...]], names: dict[int, str], seconds: float
) -> dict[str, float]:
    """Per Python thread, how often a second it was made to drop the GIL:
    it had run Python a whole switch interval while another thread waited
    (at least: bench/gil_probe/gil_probe.c sees a forced drop only when the
    waiter had not yet run)."""
    counts: dict[str, int] = {}
    for record in records:
        if record[7] == FORCED_DROP and record[5] in names:
            name = names[record[5]]
            counts[name] = counts.get(name, 0) + 1
    return {
        name: round(count / seconds, 1)
        for name, count in sorted(counts.items(), key=lambda item: -item[1])
    }


def syncs_by_thread(records: list[tuple[int, ...]], names: dict[int, str]) -> dict[str, int]:
    """How many of the fdatasyncs each Python thread made, most first."""
    counts: dict[str, int] = {}
    for record in records:
        if record[7] == 1:
            name = names.get(record[5], str(record[5]))
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def woken_by_thread(
    records: list[tuple[int, ...]], names: dict[int, str], seconds: float
) -> dict[str, dict[str, float]]:
    """Per Python thread, its waits for the GIL after a lock or queue woke it
    (the WAL's writer taking a group, a worker its next job): p99 and p99.9
    (ms) and ms a second, the threads that waited most first."""
    waits: dict[str, list[float]] = {}
    for record in records:
        if record[7] == WOKEN and record[5] in names:
            waits.setdefault(names[record[5]], []).append(record[3] / 1e6)
    rows = {
        name: {
            "episodes": len(mine),
            "gil_p99_ms": round(_quantile(sorted(mine), 0.99), 3),
            "gil_p999_ms": round(_quantile(sorted(mine), 0.999), 3),
            "gil_ms_per_s": round(sum(mine) / seconds, 1),
        }
        for name, mine in waits.items()
    }
    return dict(sorted(rows.items(), key=lambda item: -item[1]["gil_ms_per_s"]))


def server_records(
    directory: Path, started_unix: float, seconds: float
) -> tuple[list[tuple[int, ...]], dict[int, str]] | None:
    """The latency phase's records, from the process that synced in it (the
    server, started again for the phase), and its threads' names."""
    # gil.<pid> only: gil.names.<pid> ends in digits too, and a process
    # ended before the probe sized its file leaves it shorter than a header.
    files = [
        p
        for p in directory.glob("gil.*")
        if p.name[len("gil.") :].isdigit() and p.stat().st_size >= _HEADER.size
    ]
    for path in sorted(files, key=lambda p: p.stat().st_mtime, reverse=True):
        offset, records = read_records(path)
        inside = [
            r for r in records if started_unix <= r[0] / 1e9 + offset <= started_unix + seconds
        ]
        if any(r[7] == 1 for r in inside):
            named = directory / f"gil.names{path.suffix}"
            names = json.loads(named.read_text()) if named.exists() else {}
            return inside, {int(tid): name for tid, name in names.items()}
    return None


def run(
    repo: Path,
    quick: bool,
    whole: bool,
    switch_interval: float | None,
    config: str | None,
    produce_mb: int | None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gil-waits-") as scratch:
        directory = Path(scratch)
        library = build_probe(directory)
        paths = [str(SITE), str(repo)]
        env = dict(
            os.environ,
            LD_PRELOAD=str(library),
            TIDELOG_GIL_PROBE=str(directory / "gil"),
            # The server only: kafka_bench's own process (its librdkafka
            # client, the mock cluster) is timed without the probe's reads.
            TIDELOG_GIL_PROBE_ARGUMENT="serve",
            PYTHONPATH=os.pathsep.join(paths),
        )
        if switch_interval is not None:
            env["TIDELOG_BENCH_SWITCH_INTERVAL"] = repr(switch_interval)
        command = [sys.executable, str(repo / "bench" / "kafka_bench.py"), "--json"]
        if not whole:
            command.append("--latency-only")
        if quick:
            command.append("--quick")
        if config is not None:
            command += ["--config", config]
        if produce_mb is not None:
            command += ["--produce-mb", str(produce_mb)]
        done = subprocess.run(
            command, env=env, cwd=repo, capture_output=True, check=True, text=True
        )
        bench = json.loads(done.stdout)
        started, seconds = bench["latency_started_unix"], bench["latency_seconds"]
        found = server_records(directory, started, seconds)
        if found is None:
            raise RuntimeError("no process synced during the latency phase: was the probe loaded?")
        records, names = found
    result: dict[str, Any] = {"switch_interval": switch_interval or sys.getswitchinterval()}
    for key in (
        "p50_ms",
        "p99_ms",
        "p999_ms",
        "mock_p50_ms",
        "mock_p99_ms",
        "produce_mb_s",
        "mock_produce_mb_s",
        "produce_vs_mock",
        "server_produce_cores",
    ):
        result[key] = bench.get(key)
    result["load_average"] = [round(v, 2) for v in os.getloadavg()]
    result.update(summarize(records, seconds))
    result["forced_drops_per_s"] = forced_drops(records, names, seconds)
    result["woken_by_thread"] = woken_by_thread(records, names, seconds)
    result["syncs_by_thread"] = syncs_by_thread(records, names)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--quick", action="store_true", help="kafka_bench's quick sizes")
    parser.add_argument(
        "--whole",
        action="store_true",
        help="all of kafka_bench's phases, not --latency-only (for produce_vs_mock)",
    )
    parser.add_argument("--switch-interval", type=float, default=None, help="seconds (0.005)")
    parser.add_argument("--config", default=None, help="a config file for the server (TOML)")
    parser.add_argument(
        "--produce-mb", type=int, default=None, help="kafka_bench's flat-out produce, MiB"
    )
    parser.add_argument("--repo", type=Path, default=HERE.parent, help="the checkout to run")
    args = parser.parse_args()
    result = run(
        args.repo.resolve(),
        args.quick,
        args.whole,
        args.switch_interval,
        args.config,
        args.produce_mb,
    )
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"switch interval {result['switch_interval'] * 1000:g} ms, load {result['load_average']}:"
        f" delivery p50 {result['p50_ms']:.2f} p99 {result['p99_ms']:.2f}"
        f" p99.9 {result['p999_ms']:.2f} ms (mock p99 {result['mock_p99_ms']:.2f})"
        + (
            f", produce_vs_mock {result['produce_vs_mock']:.3f}"
            if result.get("produce_vs_mock") is not None
            else ""
        )
    )
    print(
        f"{'episode':9s} {'count':>7s} {'length ms p50/p99/p99.9/max':>30s}"
        f" {'GIL ms p50/p99/p99.9/max':>30s}  waited  GIL ms/s  no CPU  >=1ms  sends"
    )
    for name in KINDS.values():
        if name not in result:
            continue
        row = result[name]
        length = "/".join(f"{v:.2f}" for v in row["episode_ms"])
        gil = "/".join(f"{v:.2f}" for v in row["gil_ms"])
        print(
            f"{name:9s} {row['episodes']:7d} {length:>30s} {gil:>30s}  {row['waited_share']:6.3f}"
            f"  {row['gil_ms_per_s']:8.1f}  {row['gil_run_delay_share']:6.3f}"
            f"  {row['episodes_gil_over_1ms']:5d}"
            f"  {row['sends_per_episode']:5.2f}"
        )
    print(
        "fdatasyncs by thread: "
        + ", ".join(f"{name} {count}" for name, count in result["syncs_by_thread"].items())
    )
    print(
        "made to drop the GIL after a whole switch interval, a second: "
        + ", ".join(f"{name} {rate:g}" for name, rate in result["forced_drops_per_s"].items())
    )
    print("woken by a lock or queue, then waited for the GIL (p99 / p99.9 ms, ms a second):")
    for name, row in list(result["woken_by_thread"].items())[:6]:
        print(
            f"  {name}: {row['gil_p99_ms']:.2f} / {row['gil_p999_ms']:.2f},"
            f" {row['gil_ms_per_s']:.1f} ms/s over {row['episodes']} wake-ups"
        )
    if "ack_chain" in result:
        chain = result["ack_chain"]
        print(
            "ack chain (fdatasync's return to the loop's turn that ran its wake-up, "
            f"{chain['syncs']} syncs) ms p50/p99/p99.9/max "
            + "/".join(f"{v:.2f}" for v in chain["ms"])
            + ", GIL of it "
            + "/".join(f"{v:.2f}" for v in chain["gil_ms"])
            + f"; GIL share of the slowest 1%: {chain['gil_share_of_slowest_1pct']:.3f}"
            + f", of which without a CPU {chain['run_delay_share_of_their_gil']:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
