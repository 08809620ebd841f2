"""The server's page faults per MiB produced, split into memory it touched for
the first time and memory it touched again, beside what the log cache held.

    python bench/produce_faults_bench.py [--produce-mb 1024] [--paced-mb 400]
                                         [--paced-mb-s 60] [--pairs 3]
                                         [--quick] [--json]

Each pair starts ``python -m engine serve`` (bench/kafka_bench.py's server,
with ``--http`` for its gauges) twice, in turns, with two allocator settings:

- ``glibc``: the allocator as the server runs it (glibc's defaults: its mmap
  threshold moves between 128 KiB and 32 MiB, freed memory at the heap's top
  is returned past twice that threshold);
- ``fixed``: ``MALLOC_MMAP_THRESHOLD_`` 32 MiB and ``MALLOC_TRIM_THRESHOLD_``
  256 MiB (what ``mallopt`` would set at the server's start): request buffers
  never mmap'd, freed memory kept up to the log cache's default size.

Each server sees two phases, the figures of each counted from the server's
/proc over the phase alone:

- ``burst``: librdkafka (acks=all, linger.ms=5, 1 KiB records, one
  partition, kafka_bench's producer) flat out for ``--produce-mb``, from a
  fresh server, as kafka_bench's produce phase;
- ``steady``: then ``--paced-mb`` at ``--paced-mb-s``, a rate the uploads
  keep up with on the two-core machine these figures come from, so that the
  log cache evicts what was uploaded while the phase runs.

Per phase: ``faults_per_mib`` (minor faults of the event loop's thread, the
main one, and of the whole server: ``all_faults_per_mib``), of which
``first_touch_per_mib`` are pages the resident set grew by and
``refaults_per_mib`` the rest (memory touched again after the allocator gave
it back to the kernel); ``server_ms_per_mib`` (the server's CPU per MiB);
``rss_peak_mib``; ``log_cache_peak_mib`` and ``unuploaded_peak_mib`` (the
server's gauges, sampled every 50 ms). ``produce_vs_mock`` is the burst's
MiB/s over librdkafka's own mock cluster's, measured before each pair.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _harness
import kafka_bench

MIB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
TOPIC = "faults"
SAMPLE_SECONDS = 0.05
ALLOCATORS: dict[str, dict[str, str]] = {
    "glibc": {},
    "fixed": {"MALLOC_MMAP_THRESHOLD_": str(32 * MIB), "MALLOC_TRIM_THRESHOLD_": str(256 * MIB)},
}
GAUGES = {
    "tidelog_log_cache_bytes": "log_cache_peak_mib",
    "tidelog_wal_unuploaded_bytes": "unuploaded_peak_mib",
}


@dataclass(frozen=True)
class ThreadCounts:
    minor_faults: int
    cpu_ticks: int


def parse_stat(line: str) -> ThreadCounts:
    """minflt and utime + stime of one /proc/<pid>/task/<tid>/stat line. The
    command name sits in parentheses and may itself hold spaces and ')', so
    the fields are counted from the last ')'."""
    fields = line[line.rindex(")") + 2 :].split()
    # After the name: state(3) ppid pgrp session tty_nr tpgid flags minflt(10)
    # cminflt majflt cmajflt utime(14) stime(15), numbered as proc(5) does.
    return ThreadCounts(int(fields[7]), int(fields[11]) + int(fields[12]))


def thread_counts(pid: int) -> dict[int, ThreadCounts]:
    counts = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", encoding="utf-8") as stat:
                counts[int(tid)] = parse_stat(stat.read())
        except OSError:
            continue  # the thread ended between the listing and the read
    return counts


def resident_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def gauges(port: int) -> dict[str, int]:
    """The server's log cache gauges, in bytes."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in GAUGES:
            found[name] = int(float(value))
    return found


class Sampler:
    """The server's resident set and gauges every SAMPLE_SECONDS, peaks kept."""

    def __init__(self, pid: int, http_port: int) -> None:
        self.pid, self.http_port = pid, http_port
        self.rss_peak_kib = 0
        self.peaks = dict.fromkeys(GAUGES, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample()

    def _sample(self) -> None:
        self.rss_peak_kib = max(self.rss_peak_kib, resident_kib(self.pid))
        for name, value in gauges(self.http_port).items():
            self.peaks[name] = max(self.peaks[name], value)

    def stop(self) -> None:
        """Stops sampling, with one sample more of the gauges as the phase
        left them: the last periodic one can come up to SAMPLE_SECONDS
        before the phase's last request, some 15 MiB of a burst at 300
        MiB/s, and a peak that the end holds would be missed."""
        self._stop.set()
        self._thread.join()
        self._sample()


class FaultServer(kafka_bench.ServerProcess):
    """kafka_bench's server, with its /metrics on a port of its own."""

    def __init__(self, scratch: Path, allocator: dict[str, str]) -> None:
        super().__init__(scratch / "data", kafka_bench.free_port(), scratch)
        self.http_port = kafka_bench.free_port()
        self.env.update(allocator)

    def command(self) -> list[str]:
        return [*super().command(), "--http", f"127.0.0.1:{self.http_port}"]


def phase(server: FaultServer, mb: int, produce: Any) -> dict[str, Any]:
    """One phase's figures, counted over ``produce()`` alone."""
    pid = server.pid
    sampler = Sampler(pid, server.http_port)
    rss_before, before = resident_kib(pid), thread_counts(pid)
    rate = produce()
    after, rss_after = thread_counts(pid), resident_kib(pid)
    sampler.stop()
    zero = ThreadCounts(0, 0)
    faults = sum(c.minor_faults - before.get(t, zero).minor_faults for t, c in after.items())
    ticks = sum(c.cpu_ticks - before.get(t, zero).cpu_ticks for t, c in after.items())
    loop_faults = after[pid].minor_faults - before[pid].minor_faults
    # Faults the resident set's growth accounts for (it may grow by a few
    # pages more than faulted: file pages mapped in, the kernel's own rounding).
    first_touch = min(faults, max(0, rss_after - rss_before) * 1024 // PAGE)
    return {
        "mb_s": round(rate, 1),
        "faults_per_mib": round(loop_faults / mb, 1),
        "all_faults_per_mib": round(faults / mb, 1),
        "first_touch_per_mib": round(first_touch / mb, 1),
        "refaults_per_mib": round((faults - first_touch) / mb, 1),
        "server_ms_per_mib": round(ticks / os.sysconf("SC_CLK_TCK") * 1000 / mb, 3),
        "rss_peak_mib": round(max(sampler.rss_peak_kib, rss_after) / 1024, 1),
        **{key: sampler.peaks[name] // MIB for name, key in GAUGES.items()},
    }


def one_server(
    scratch: Path, allocator: dict[str, str], settings: dict[str, Any], values: list[bytes]
) -> dict[str, Any]:
    server = FaultServer(scratch, allocator)
    server.start()
    try:
        server.wait_ready()
        kafka_bench.create_topics(server.address, 1, TOPIC)
        address = {"bootstrap.servers": server.address}
        records = settings["produce_mb"] * MIB // kafka_bench.RECORD_BYTES
        burst = phase(
            server,
            settings["produce_mb"],
            lambda: kafka_bench.produce_flat_out(address, TOPIC, 1, records, values)["mb_s"],
        )
        rate, paced = settings["paced_mb_s"], settings["paced_mb"]
        steady = phase(
            server,
            paced,
            lambda: kafka_bench.produce_paced(server.address, TOPIC, 1, rate, paced / rate, values)[
                "achieved_mb_s"
            ],
        )
        return {"burst": burst, "steady": steady}
    finally:
        server.stop()


def run(scratch: Path, settings: dict[str, Any]) -> dict[str, Any]:
    values = kafka_bench.make_values()
    records = settings["produce_mb"] * MIB // kafka_bench.RECORD_BYTES
    runs: list[dict[str, Any]] = []
    for pair in range(settings["pairs"]):
        cluster = kafka_bench.MockCluster()
        try:
            mock = kafka_bench.produce_flat_out(
                {"bootstrap.servers": cluster.address}, TOPIC, 1, records, values
            )["mb_s"]
        finally:
            cluster.close()
        for name, allocator in ALLOCATORS.items():
            with _harness.scratch(str(scratch), f"{name}-") as directory:
                figures = one_server(directory, allocator, settings, values)
            figures["burst"]["produce_vs_mock"] = round(figures["burst"]["mb_s"] / mock, 3)
            runs.append(
                {
                    "pair": pair,
                    "allocator": name,
                    "mock_mb_s": round(mock, 1),
                    "load_average": round(os.getloadavg()[0], 2),
                    **figures,
                }
            )
    return {**settings, **_harness.cpus(), "runs": runs, **ratios(runs)}


def ratios(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per pair, each figure of ``fixed`` over ``glibc`` (None where glibc's is 0)."""
    out: dict[str, Any] = {}
    by_pair: dict[int, dict[str, dict[str, Any]]] = {}
    for entry in runs:
        by_pair.setdefault(entry["pair"], {})[entry["allocator"]] = entry
    for phase_name in ("burst", "steady"):
        for key in ("faults_per_mib", "server_ms_per_mib", "rss_peak_mib"):
            out[f"{phase_name}_{key}_fixed_vs_glibc"] = [
                round(p["fixed"][phase_name][key] / p["glibc"][phase_name][key], 3)
                if p["glibc"][phase_name][key]
                else None
                for p in by_pair.values()
            ]
    return out


COLUMNS = (
    ("mb_s", "MiB/s"),
    ("faults_per_mib", "loop flt/MiB"),
    ("all_faults_per_mib", "all flt/MiB"),
    ("first_touch_per_mib", "new pg/MiB"),
    ("refaults_per_mib", "again/MiB"),
    ("server_ms_per_mib", "ms/MiB"),
    ("rss_peak_mib", "RSS MiB"),
    ("log_cache_peak_mib", "cache MiB"),
    ("unuploaded_peak_mib", "unupl MiB"),
)


def print_table(results: dict[str, Any]) -> None:
    print(
        f"burst {results['produce_mb']} MiB flat out, then steady {results['paced_mb']} MiB "
        f"at {results['paced_mb_s']} MiB/s; {results['cpus_usable']} usable CPUs"
    )
    header = "".join(f"{title:>13}" for _, title in COLUMNS)
    print(f"{'pair alloc phase':<22}{header}{'vs mock':>9}{'load':>7}")
    for entry in results["runs"]:
        for phase_name in ("burst", "steady"):
            figures = entry[phase_name]
            cells = "".join(f"{figures[key]:>13}" for key, _ in COLUMNS)
            vs_mock = figures.get("produce_vs_mock", "")
            label = f"{entry['pair']} {entry['allocator']} {phase_name}"
            print(f"{label:<22}{cells}{vs_mock:>9}{entry['load_average']:>7}")
    for key, values in results.items():
        if key.endswith("_fixed_vs_glibc"):
            print(f"  {key}: {values}")


def main() -> None:
    parser = _harness.parser(__doc__, "64 MiB burst, 32 MiB steady, one pair")
    parser.add_argument("--produce-mb", type=int, default=None, help="burst MiB (1024)")
    parser.add_argument("--paced-mb", type=int, default=None, help="steady MiB (400)")
    parser.add_argument("--paced-mb-s", type=float, default=60.0, help="steady MiB/s")
    parser.add_argument("--pairs", type=int, default=None, help="pairs of servers (3)")
    parser.add_argument("--data-dir", default=None, help="parent of the scratch directory")
    args = parser.parse_args()
    quick = args.quick
    settings = {
        "produce_mb": args.produce_mb or (64 if quick else 1024),
        "paced_mb": args.paced_mb or (32 if quick else 400),
        "paced_mb_s": args.paced_mb_s,
        "pairs": args.pairs or (1 if quick else 3),
    }
    started = time.monotonic()
    with _harness.scratch(args.data_dir, "produce-faults-") as scratch:
        results = run(scratch, settings)
    results["seconds"] = round(time.monotonic() - started, 1)
    _harness.report(results, args.json, print_table)


if __name__ == "__main__":
    main()
