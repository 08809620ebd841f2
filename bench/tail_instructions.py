"""Instructions a one-partition tail costs the server, counted by callgrind.

    python bench/tail_instructions.py [--tree DIR]... [--rate N] [--warm N]
        [--records N] [--rounds N] [--catch-up] [--plain | --profile [--keep DIR]] [--json]

For each source tree (a checkout of any revision, its C extension built;
this checkout when none is named), ``python -m engine serve`` runs under
``valgrind --tool=callgrind`` with its counters off. One topic of one
partition; a librdkafka producer sends 1 KiB records at ``--rate`` a
second (acks=all; at a few a second, each its own Produce), and one
librdkafka consumer tails the partition: every Fetch waits for the next
record and is woken by it. After ``--warm`` records the counters are
zeroed and switched on, and dumped after ``--records`` more are consumed.
``--catch-up`` counts instead what scale_bench's partitions run counts at
one partition: every record produced first, then read from offset 0 by a
consumer that starts then.

The figures are instructions per record consumed and per Fetch (the
consumer's own count of Fetches sent, from librdkafka's statistics), of
the event loop's thread, the WAL's (the busiest other thread calling
fdatasync) and the rest of the server's threads; and what the kernel
counted for the server meanwhile (CPU ticks, page faults, read and write
calls), which instructions counted in user space leave out. Neither moves
with the machine's load, as the CPU time of a few 10 ms ticks does
(docs/design/0088). ``--plain`` runs without valgrind (the kernel's
counts only); ``--profile`` runs with cProfile on the event loop's thread
over the same window and prints its costliest calls (``--keep DIR`` keeps
the profiles there), for the Python calls per Fetch, function by
function. Each run's scratch is removed however the run ends.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import _harness
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

HOST = "127.0.0.1"
TOPIC = "tail"
RECORD = os.urandom(1024)
HERE = Path(__file__).resolve().parents[1]

PROFILER = r"""
import asyncio, cProfile, signal, sys, runpy
import uvloop
profile = cProfile.Profile()
out = sys.argv[1]
def stop():
    profile.disable()
    profile.dump_stats(out)
run = uvloop.run
async def _signalled(coroutine):
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, profile.enable)
    loop.add_signal_handler(signal.SIGUSR2, stop)
    return await coroutine
uvloop.run = lambda coroutine, **kw: run(_signalled(coroutine), **kw)
sys.argv = ["engine"] + sys.argv[2:]
runpy.run_module("engine", run_name="__main__", alter_sys=True)
"""
"""Runs the server with cProfile started and stopped by signals, handled
on the event loop's thread (cProfile profiles the thread that enables it)."""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class _Server:
    def __init__(
        self, tree: Path, scratch: Path, mode: str, script: tuple[str, list[str]] | None = None
    ) -> None:
        """``mode`` callgrind, plain or profile; or any other with ``script``,
        a wrapper's text and its arguments before serve's, which SIGUSR1 and
        SIGUSR2 start and stop as they do the profiler."""
        self.port = _free_port()
        self.scratch = scratch
        self.mode = mode
        serve = ["serve", "--listen", f"{HOST}:{self.port}", "--data-dir", str(scratch / "data")]
        serve += ["--log-level", "INFO"]
        python = sys.executable
        if mode == "callgrind":
            command = [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                "--separate-threads=yes",
                f"--callgrind-out-file={scratch}/callgrind.out.%p",
                python,
                "-m",
                "engine",
                *serve,
            ]
        elif mode == "plain":
            command = [python, "-m", "engine", *serve]
        else:
            text, arguments = script or (PROFILER, [str(scratch / "profile.out")])
            # Not "profile.py": the wrapper's directory comes first on the path,
            # and cProfile's own "import profile" would find it.
            wrapper = scratch / f"serve_under_{mode}.py"
            wrapper.write_text(text)
            command = [python, str(wrapper), *arguments, *serve]
        env = dict(os.environ, PYTHONPATH=str(tree), PYTHONUNBUFFERED="1")
        self.log = open(scratch / "server.log", "w+b")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command, cwd=tree, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 600
        while f"listening on {HOST}:{self.port}".encode() not in _read(scratch / "server.log"):
            ended = self.process.poll()
            if ended is not None or time.monotonic() > deadline:
                said = _read(scratch / "server.log")[-3000:].decode("utf-8", "replace")
                # Ended, so that the caller can remove its scratch: a server
                # that never listened is still writing there.
                self.process.kill()
                self.process.wait()
                self.log.close()
                how = "did not listen in time" if ended is None else _harness.how_it_ended(ended)
                raise RuntimeError(f"the server {how}:\n{said}")
            time.sleep(0.2)

    def counting(self, on: bool) -> None:
        figures = _proc_figures(self.process.pid)
        if on:
            self.before = figures
        else:
            self.counted = {k: figures[k] - self.before[k] for k in figures}
        if self.mode == "callgrind":
            if on:
                self._control("--zero")
                self._control("--instr=on")
            else:
                self._control("--dump")
                self._control("--instr=off")
        elif self.mode != "plain":
            self.process.send_signal(signal.SIGUSR1 if on else signal.SIGUSR2)

    def _control(self, what: str) -> None:
        subprocess.run(
            ["callgrind_control", what, str(self.process.pid)], check=True, capture_output=True
        )

    def stop(self) -> None:
        """Stops the server; raises _harness.ServerEnded if it had ended
        (a crash) before."""
        try:
            _harness.stop_server(self.process, self.scratch / "server.log")
        finally:
            self.log.close()


def _proc_figures(pid: int) -> dict[str, int]:
    """The server's CPU ticks (user, system), page faults, read and write
    calls and context switches so far, every thread's: what the kernel
    does for it, which instructions counted in user space leave out."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    figures = {
        "utime_ticks": int(fields[11]),
        "stime_ticks": int(fields[12]),
        "minor_faults": int(fields[7]),
    }
    with open(f"/proc/{pid}/io", encoding="ascii") as io:
        for line in io:
            name, _, value = line.partition(":")
            if name in ("syscr", "syscw"):
                figures[name] = int(value)
    switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError), open(task / "status", encoding="ascii") as status:
            for line in status:
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    switches += int(line.split()[1])
    figures["context_switches"] = switches
    return figures


def _read(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


def _fetches(stats: dict[str, Any]) -> int:
    return sum(
        int(broker.get("req", {}).get("Fetch", 0))
        for name, broker in stats.get("brokers", {}).items()
        if not name.startswith("GroupCoordinator")
    )


def _consumer(address: str, latest: dict[str, Any], group: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": address,
            "group.id": group,
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 * 2**20,
            "statistics.interval.ms": 100,
            "stats_cb": lambda text: latest.update(json.loads(text)),
            "log_level": 3,
        }
    )


def produce_all(producer: Producer, count: int, rate: float) -> None:
    started = time.perf_counter()
    sent = 0
    while sent < count:
        due = min(count, int((time.perf_counter() - started) * rate))
        while sent < due:
            producer.produce(TOPIC, RECORD, partition=0)
            sent += 1
        producer.poll(0.001)
    if producer.flush(600) > 0:
        raise RuntimeError("records undelivered after 600 s")


def run_one(
    tree: Path,
    rate: float,
    warm: int,
    records: int,
    mode: str,
    catch_up: bool = False,
    profile_to: Path | None = None,
) -> dict[str, Any]:
    """One run in a scratch directory of its own, removed however the run
    ends (callgrind's dumps are hundreds of MB); in profile mode the
    profile is copied to ``profile_to`` first, a file the caller owns."""
    with _harness.scratch(None, "tail-instructions-") as directory:
        return _run_in(directory, tree, rate, warm, records, mode, catch_up, profile_to)


def _run_in(
    scratch: Path,
    tree: Path,
    rate: float,
    warm: int,
    records: int,
    mode: str,
    catch_up: bool,
    profile_to: Path | None,
) -> dict[str, Any]:
    server = _Server(tree, scratch, mode)
    try:
        address = f"{HOST}:{server.port}"
        admin = AdminClient({"bootstrap.servers": address})
        for future in admin.create_topics([NewTopic(TOPIC, 1, 1)]).values():
            future.result(300)
        latest: dict[str, Any] = {}
        consumer = _consumer(address, latest, group="tail")
        consumer.assign([TopicPartition(TOPIC, 0, 0)])
        producer = Producer(
            {"bootstrap.servers": address, "acks": "all", "linger.ms": 5, "log_level": 3}
        )
        stop = threading.Event()

        def produce() -> None:
            started = time.perf_counter()
            sent = 0
            while not stop.is_set():
                due = int((time.perf_counter() - started) * rate)
                while sent < due:
                    producer.produce(TOPIC, RECORD, partition=0)
                    sent += 1
                producer.poll(0.01)
            producer.flush(60)

        thread: threading.Thread | None = threading.Thread(target=produce, daemon=True)
        window_fetches = 0
        started = 0.0
        if catch_up:
            # scale_bench's partitions run: every record produced first,
            # then read from offset 0 by a consumer that starts then.
            consumer.close()
            stop.set()
            produce_all(producer, warm + records, rate)
            latest = {}  # the new consumer's statistics only: its Fetches from 0
            consumer = _consumer(address, latest, group="catch-up")
            server.counting(True)
            started = time.perf_counter()
            consumer.assign([TopicPartition(TOPIC, 0, 0)])
            got = 0
            while got < warm + records:
                got += sum(1 for m in consumer.consume(10_000, 0.5) if m.error() is None)
            thread = None
        else:
            assert thread is not None
            thread.start()
            got = 0
        while thread is not None and got < warm + records:
            message = consumer.poll(0.1)
            if message is None or message.error() is not None:
                continue
            got += 1
            if got == warm:
                consumer.poll(0.3)  # fresh statistics
                server.counting(True)
                started = time.perf_counter()
                window_fetches = _fetches(latest)
        server.counting(False)
        elapsed = time.perf_counter() - started
        time.sleep(0.3)
        window_fetches = _fetches(latest) - window_fetches
        stop.set()
        if thread is not None:
            thread.join(60)
        consumer.close()
        time.sleep(1.0 if mode == "callgrind" else 0.3)
    finally:
        server.stop()
    result: dict[str, Any] = {
        "kernel": server.counted,
        "records": records + (warm if catch_up else 0),
        "fetches": window_fetches,
        "seconds": elapsed,
    }
    if mode == "callgrind":
        result["threads"] = _callgrind_threads(scratch, server.process.pid)
    elif mode == "profile":
        result["profile"] = keep_profile(scratch, profile_to)
    return result


def keep_profile(scratch: Path, profile_to: Path | None) -> str:
    """The run's profile copied out of its scratch to ``profile_to``; its path."""
    assert profile_to is not None, "a profile run needs a file to keep its profile in"
    shutil.copyfile(scratch / "profile.out", profile_to)
    return str(profile_to)


def print_profile(label: str, path: str, lines: int = 25) -> None:
    """The profile's costliest calls, by cumulative time."""
    print(f"{label}: {path}", flush=True)
    pstats.Stats(path).sort_stats("cumulative").print_stats(lines)


@contextmanager
def profiles_to(keep: Path | None) -> Iterator[Path]:
    """Where a run's profiles go: ``keep`` when given (made if need be),
    else a directory of the caller's removed once it is done with them."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="profiles-") as held:
        yield Path(held)


def _callgrind_threads(scratch: Path, pid: int) -> dict[str, int]:
    """Instructions per thread of the first dump (the window): the event
    loop's (thread 1), the WAL's (the busiest other one calling
    fdatasync), the rest."""
    figures = {"loop": 0, "wal": 0, "other": 0}
    syncing = []
    for path in sorted(scratch.glob(f"callgrind.out.{pid}.1-*")):
        text = path.read_text(errors="replace")
        found = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
        total = int(found.group(1)) if found else 0
        if int(path.name.rsplit("-", 1)[1]) == 1:
            figures["loop"] += total
        elif "fdatasync" in text:
            syncing.append(total)
        else:
            figures["other"] += total
    if syncing:
        figures["wal"] = max(syncing)
        figures["other"] += sum(syncing) - figures["wal"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", type=Path, default=[])
    parser.add_argument("--rate", type=float, default=5.0, help="records per second")
    parser.add_argument("--warm", type=int, default=10)
    parser.add_argument("--records", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="cProfile instead of callgrind")
    parser.add_argument(
        "--plain", action="store_true", help="no valgrind: the kernel's counts only"
    )
    parser.add_argument(
        "--catch-up",
        action="store_true",
        help="count a consumer reading every record from offset 0 after they are produced",
    )
    parser.add_argument("--keep", type=Path, help="keep each --profile run's profile here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not (args.profile or args.plain) and shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    trees = args.tree or [HERE]
    results: dict[str, list[dict[str, Any]]] = {str(t): [] for t in trees}
    mode = "profile" if args.profile else "plain" if args.plain else "callgrind"
    with profiles_to(args.keep) as profiles:
        for round_number in range(args.rounds):
            for i, tree in enumerate(trees):
                profile_to = profiles / f"{i}-{tree.name}-{round_number}.prof"
                results[str(tree)].append(
                    run_one(
                        tree, args.rate, args.warm, args.records, mode, args.catch_up, profile_to
                    )
                )
        if args.json:
            print(json.dumps(results, indent=1))
            return
        for tree, runs in results.items():
            for one in runs:
                said = f"{tree}: {one['records']} records, {one['fetches']} fetches"
                if mode == "callgrind":
                    per = {k: v / one["records"] for k, v in one["threads"].items()}
                    per_fetch = {k: v / max(1, one["fetches"]) for k, v in one["threads"].items()}
                    print(
                        f"{said}; per record loop {per['loop']:,.0f} wal {per['wal']:,.0f}"
                        f" other {per['other']:,.0f}; per fetch loop {per_fetch['loop']:,.0f}"
                    )
                elif mode == "profile":
                    print_profile(said, one["profile"])
                else:
                    print(f"{said}; the kernel's counts {one['kernel']}")


if __name__ == "__main__":
    main()
