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
and run it twice before believing a change of less than a third."""

from __future__ import annotations

import json
import os
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


def _process_s(code: str, bytecode: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=_env(bytecode), timeout=120)
    return time.perf_counter() - started


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


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


def _serve(scratch: Path, bytecode: Path) -> tuple[float, float]:
    """Seconds from spawning `tidelog serve` until it answers ApiVersions,
    and its RSS then."""
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
                return time.perf_counter() - started, _rss_mib(child.pid)
            time.sleep(0.002)
    finally:
        child.terminate()
        child.wait(SERVE_TIMEOUT_S)


def _measure(rounds: int, scratch: Path) -> dict[str, Any]:
    bytecode = scratch / "bytecode"
    _compile(bytecode)
    baseline = [_process_s("pass", bytecode) for _ in range(rounds)]
    import_engine = [_process_s("import engine", bytecode) for _ in range(rounds)]
    serves = [_serve(scratch, bytecode) for _ in range(rounds)]
    probes: list[dict[str, float]] = []
    for _ in range(rounds):
        out = subprocess.run(
            [sys.executable, "-c", FIXTURE_PROBE],
            check=True,
            env=_env(bytecode),
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        probes.append(json.loads(out))
    base = statistics.median(baseline)
    serve_s = statistics.median(s for s, _ in serves)
    import_s = statistics.median(import_engine)
    return {
        "rounds": rounds,
        "python_pass_s": base,
        "import_engine_s": import_s,
        "import_engine_vs_pass": import_s / base,
        "serve_listening_s": serve_s,
        "serve_listening_vs_pass": serve_s / base,
        "serve_rss_mib": statistics.median(r for _, r in serves),
        "fixture_import_s": statistics.median(p["import_s"] for p in probes),
        "fixture_ready_s": statistics.median(p["ready_s"] for p in probes),
        "fixture_ready_vs_pass": statistics.median(p["ready_s"] for p in probes) / base,
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
        ("python -c 'import engine'", results["import_engine_s"], ""),
        ("tidelog serve, until it answers", results["serve_listening_s"], "serve_rss_mib"),
        ("engine + server modules imported", results["fixture_import_s"], ""),
        ("then engine.testing.start() answers", results["fixture_ready_s"], "fixture_rss_mib"),
    ]
    print(f"{'':36} {'ms':>8} {'x pass':>7} {'RSS MiB':>8}")
    for name, seconds, rss in rows:
        shown = f"{results[rss]:>8.1f}" if rss else f"{'':>8}"
        print(f"{name:36} {seconds * 1000:>8.1f} {seconds / base:>7.2f} {shown}")


if __name__ == "__main__":
    main()
