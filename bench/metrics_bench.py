"""What the metrics cost the produce path: tidelog's server produced to by
librdkafka, with its /metrics endpoint scraped twice a second and without
the endpoint, and optionally a checkout without metrics as the baseline.

    python bench/metrics_bench.py [--produce-mb 64] [--rounds 2]
                                  [--baseline PATH] [--json]

Each variant is ``python -m engine serve`` in a child process (its code from
this checkout, or from ``--baseline``, another checkout's root), produced to
by a confluent_kafka Producer (1 KiB random records, acks=all, linger.ms=5)
until ``--produce-mb`` is delivered. The figures are the server's CPU time
per MiB (steadier than MiB/s on a shared machine) and MiB/s, the variants
run in turn ``--rounds`` times, best of each kept; the ratios are against
``unscraped`` (this checkout, endpoint off: the counters are always kept)
and against ``baseline`` when one is given.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import _harness
from confluent_kafka import Producer

ROOT = Path(__file__).resolve().parents[1]
RECORD = os.urandom(1024)
START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run(code_root: Path, http: bool, produce_mb: int, scratch: Path) -> dict[str, float]:
    port, http_port = _free_port(), _free_port()
    command = [sys.executable, "-m", "engine", "serve", "--listen", f"127.0.0.1:{port}"]
    command += ["--data-dir", str(scratch / "data")]
    if http:
        command += ["--http", f"127.0.0.1:{http_port}"]
    env = dict(os.environ, PYTHONPATH=str(code_root))
    log = (scratch / "server.log").open("wb")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=log, cwd=code_root)
    stop_scraping = threading.Event()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while b"listening on" not in (scratch / "server.log").read_bytes():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((scratch / "server.log").read_text())
            time.sleep(0.05)
        scrapes = 0

        def scrape() -> None:
            nonlocal scrapes
            while not stop_scraping.wait(0.5):
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10):
                    scrapes += 1

        scraper = threading.Thread(target=scrape, daemon=True)
        producer = Producer(
            {"bootstrap.servers": f"127.0.0.1:{port}", "linger.ms": 5, "acks": "all"}
        )
        producer.produce("bench-warmup", RECORD)
        producer.flush(30)
        if http:
            scraper.start()
        count = produce_mb * 1024
        cpu, started = _cpu_seconds(server.pid), time.perf_counter()
        for _ in range(count):
            while True:
                try:
                    producer.produce("bench-metrics", RECORD)
                    break
                except BufferError:
                    producer.poll(0.01)
        if producer.flush(120) != 0:
            raise RuntimeError("records left undelivered")
        seconds, cpu = time.perf_counter() - started, _cpu_seconds(server.pid) - cpu
        return {"mb_s": produce_mb / seconds, "cpu_s_per_mb": cpu / produce_mb, "scrapes": scrapes}
    finally:
        stop_scraping.set()
        try:
            _harness.stop_server(server, scratch / "server.log", 120)
        finally:
            log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--produce-mb", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline", type=Path, help="a checkout's root without metrics")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    variants = {"unscraped": (ROOT, False), "scraped": (ROOT, True)}
    if args.baseline is not None:
        variants["baseline"] = (args.baseline.resolve(), False)
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.rounds):
        for name, (code_root, http) in variants.items():
            with tempfile.TemporaryDirectory(prefix="metrics-bench-") as scratch:
                figures = _run(code_root, http, args.produce_mb, Path(scratch))
            kept = best.get(name)
            if kept is None or figures["cpu_s_per_mb"] < kept["cpu_s_per_mb"]:
                best[name] = figures
    result: dict[str, object] = {"variants": best}
    for against in ("unscraped", "baseline"):
        if against in best:
            for name, figures in best.items():
                if name != against:
                    result[f"{name}_vs_{against}_cpu_per_mb"] = (
                        figures["cpu_s_per_mb"] / best[against]["cpu_s_per_mb"]
                    )
                    result[f"{name}_vs_{against}_mb_s"] = figures["mb_s"] / best[against]["mb_s"]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'variant':<10} {'MiB/s':>8} {'server CPU s/MiB':>17} {'scrapes':>8}")
    for name, figures in best.items():
        print(
            f"{name:<10} {figures['mb_s']:>8.1f} {figures['cpu_s_per_mb']:>17.4f}"
            f" {figures['scrapes']:>8.0f}"
        )
    for key, value in result.items():
        if key != "variants":
            print(f"{key}: {value:.3f}")


if __name__ == "__main__":
    main()
