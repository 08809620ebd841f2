"""Start-up of tidelog beside the interpreter's own: ``python -c pass``,
``import engine``, ``tidelog serve`` on its embedded default (a fresh local
data directory, the local object store inside it) from exec until it
answers an ApiVersions request on its port (and its RSS then), and
engine.testing's broker (importing the engine and the wire server, then
from start() until it answers ApiVersions, and the process's RSS with it
running), each the median of fresh processes, with its ratio to
``python -c pass`` from the same run.

Modules are loaded from bytecode, as from an installed package: the run
compiles them once, before measuring, into a bytecode cache of its own
(PYTHONPYCACHEPREFIX), whatever PYTHONDONTWRITEBYTECODE says. From a
source checkout where no bytecode may be written, each start compiles
tidelog's modules first (half a second more on a two-core machine).

Every figure is wall time on a machine that may be busy: read the ratios,
and run it twice before believing a change of less than a third. The CPU
time `tidelog serve` and `python -c pass` spent (user and system) is given
too: it leaves out the waits on a busy disk and for a busy CPU."""

from __future__ import annotations

import json
import os
import resource
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _harness

ROOT = Path(__file__).resolve().parents[1]
SERVE_TIMEOUT_S = 60.0
"""The longest `tidelog serve` may take to listen before the run fails."""

API_VERSIONS_V0 = struct.pack(">ihhih", 10, 18, 0, 7, 0)
"""A whole ApiVersions v0 request: size, API key 18, version 0, correlation
id 7, an empty client id."""

FIXTURE_PROBE = """
import json, socket, sys, time
started = time.perf_counter()
import engine.testing
import engine.testing.brokers, engine.server.server  # what start() imports on first use
imported = time.perf_counter()
broker = engine.testing.start()
with socket.create_connection(("127.0.0.1", broker.port), timeout=30) as probe:
    probe.sendall(API_VERSIONS_V0)
    answer = b""
    while len(answer) < 10 and (chunk := probe.recv(10 - len(answer))):
        answer += chunk
ready = time.perf_counter()
assert answer[4:10] == bytes([0, 0, 0, 7, 0, 0]), answer  # correlation id 7, no error
with open("/proc/self/status") as status:
    rss_kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
broker.close()
print(json.dumps({"import_s": imported - started, "ready_s": ready - imported,
                  "rss_mib": rss_kib / 1024}))
""".replace("API_VERSIONS_V0", repr(API_VERSIONS_V0))


def _env(bytecode: Path) -> dict[str, str]:
    """The environment of every measured process: this checkout first on
    the path, and a bytecode cache that may be written (see the docstring)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONPYCACHEPREFIX"] = str(bytecode)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _compile(bytecode: Path) -> None:
    """Fills the bytecode cache with every module the measured processes load."""
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import engine.cli.serve, engine.testing.brokers, engine.server.server",
        ],
        check=True,
        env=_env(bytecode),
        timeout=120,
    )


def _process_s(code: str, bytecode: Path) -> tuple[float, float]:
    """Wall and CPU seconds of a ``python -c code`` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=_env(bytecode), timeout=120)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def _cpu_s(pid: int) -> float:
    """User and system CPU seconds a running process has spent (in clock ticks)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _answers_api_versions(port: int, deadline: float) -> bool:
    """Whether the port accepts a connection and answers ApiVersions (False
    if nothing listens yet)."""
    try:
        probe = socket.create_connection(("127.0.0.1", port), timeout=1.0)
    except OSError:
        return False
    with probe:
        probe.settimeout(max(0.1, deadline - time.perf_counter()))
        probe.sendall(API_VERSIONS_V0)
        answer = b""
        while len(answer) < 10 and (chunk := probe.recv(10 - len(answer))):
            answer += chunk
    if answer[4:10] != bytes([0, 0, 0, 7, 0, 0]):  # correlation id 7, no error
        raise RuntimeError(f"tidelog serve answered ApiVersions with {answer!r}")
    return True


def _serve(scratch: Path, bytecode: Path) -> tuple[float, float, float]:
    """Seconds from spawning `tidelog serve` until it answers ApiVersions,
    its RSS then, and the CPU seconds it had spent."""
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "engine",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--data-dir",
        str(scratch / f"serve-{port}"),
        "--log-level",
        "WARNING",
    ]
    started = time.perf_counter()
    child = subprocess.Popen(command, env=_env(bytecode), stderr=subprocess.DEVNULL)
    try:
        while True:
            if time.perf_counter() - started > SERVE_TIMEOUT_S or child.poll() is not None:
                raise RuntimeError(f"tidelog serve did not listen (exit {child.returncode})")
            if _answers_api_versions(port, started + SERVE_TIMEOUT_S):
                elapsed = time.perf_counter() - started
                return elapsed, _rss_mib(child.pid), _cpu_s(child.pid)
            time.sleep(0.002)
    finally:
        child.terminate()
        child.wait(SERVE_TIMEOUT_S)


def _fixture(bytecode: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", FIXTURE_PROBE],
        check=True,
        env=_env(bytecode),
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    probe: dict[str, float] = json.loads(out)
    return probe


def _measure(rounds: int, scratch: Path) -> dict[str, Any]:
    bytecode = scratch / "bytecode"
    _compile(bytecode)
    baseline: list[tuple[float, float]] = []
    import_engine: list[float] = []
    serves: list[tuple[float, float, float]] = []
    probes: list[dict[str, float]] = []
    for _ in range(rounds):  # each round one of each, so a busy spell touches all alike
        baseline.append(_process_s("pass", bytecode))
        import_engine.append(_process_s("import engine", bytecode)[0])
        serves.append(_serve(scratch, bytecode))
        probes.append(_fixture(bytecode))
    base = statistics.median(wall for wall, _ in baseline)
    base_cpu = statistics.median(cpu for _, cpu in baseline)
    serve_s = statistics.median(wall for wall, _, _ in serves)
    serve_cpu = statistics.median(cpu for _, _, cpu in serves)
    import_s = statistics.median(import_engine)
    ready_s = statistics.median(p["ready_s"] for p in probes)
    return {
        "rounds": rounds,
        "python_pass_s": base,
        "import_engine_s": import_s,
        "import_engine_vs_pass": import_s / base,
        "serve_listening_s": serve_s,
        "serve_listening_vs_pass": serve_s / base,
        "serve_listening_spread_s": [min(w for w, _, _ in serves), max(w for w, _, _ in serves)],
        "serve_rss_mib": statistics.median(r for _, r, _ in serves),
        "python_pass_cpu_s": base_cpu,
        "serve_cpu_s": serve_cpu,
        "serve_cpu_vs_pass": serve_cpu / base_cpu,
        "fixture_import_s": statistics.median(p["import_s"] for p in probes),
        "fixture_ready_s": ready_s,
        "fixture_ready_vs_pass": ready_s / base,
        "fixture_rss_mib": statistics.median(p["rss_mib"] for p in probes),
    }


def main() -> None:
    parser = _harness.parser(__doc__, "one process of each")
    parser.add_argument("--rounds", type=int, default=5, help="processes of each, median kept")
    parser.add_argument("--dir", help="where serve's data directories go (default: a temp dir)")
    args = parser.parse_args()
    with _harness.scratch(args.dir, "startup-bench-") as scratch:
        results: dict[str, Any] = {"cpus": _harness.cpus()}
        results.update(_measure(1 if args.quick else args.rounds, scratch))
    _harness.report(results, args.json, _print_table)


def _print_table(results: dict[str, Any]) -> None:
    print(f"cpus: {results['cpus']}, median of {results['rounds']} processes each")
    base = results["python_pass_s"]
    rows = [
        ("python -c pass", base, ""),
        ("  its CPU time", results["python_pass_cpu_s"], ""),
        ("python -c 'import engine'", results["import_engine_s"], ""),
        ("tidelog serve, until it answers", results["serve_listening_s"], "serve_rss_mib"),
        ("  its CPU time until then", results["serve_cpu_s"], ""),
        ("engine + server modules imported", results["fixture_import_s"], ""),
        ("then engine.testing.start() answers", results["fixture_ready_s"], "fixture_rss_mib"),
    ]
    print(f"{'':36} {'ms':>8} {'x pass':>7} {'RSS MiB':>8}")
    for name, seconds, rss in rows:
        shown = f"{results[rss]:>8.1f}" if rss else f"{'':>8}"
        ratio = seconds / (results["python_pass_cpu_s"] if "CPU" in name else base)
        print(f"{name:36} {seconds * 1000:>8.1f} {ratio:>7.2f} {shown}")
    low, high = results["serve_listening_spread_s"]
    print(f"tidelog serve, fastest and slowest: {low * 1000:.0f} and {high * 1000:.0f} ms")
    print("(CPU times are divided by python -c pass's CPU time)")


if __name__ == "__main__":
    main()
