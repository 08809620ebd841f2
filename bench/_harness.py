"""What every benchmark in bench/ shares: its command line's common flags,
a scratch directory emptied after, the facts about the machine a figure
needs beside it, and the choice between a table for people and one JSON
object for machines. Each benchmark keeps its own measurements and fields."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def parser(doc: str | None, quick: str) -> argparse.ArgumentParser:
    """The benchmark's parser, described by its docstring's first paragraph,
    with ``--quick`` (a smoke test, as ``quick`` says) and ``--json``."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return parser


@contextmanager
def scratch(parent: str | None, prefix: str) -> Iterator[Path]:
    """A fresh directory (inside ``parent`` when given, else a temp dir),
    removed with all it holds once the benchmark is done."""
    if parent is not None:
        os.makedirs(parent, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def report(
    results: Mapping[str, Any],
    as_json: bool,
    print_table: Callable[[Any], None],
    indent: int | None = None,
) -> None:
    """One JSON object on stdout, or the benchmark's table."""
    if as_json:
        print(json.dumps(results, indent=indent))
    else:
        print_table(results)


def print_targets(targets: Mapping[str, bool]) -> None:
    for target, met in targets.items():
        print(f"  {target}: {'met' if met else 'NOT met'}")


def cpus() -> dict[str, int | None]:
    """The machine's CPUs, and those this process may run on (a container or
    a taskset may allow fewer): figures are read against the second."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"cpu_count": os.cpu_count(), "cpus_usable": usable}


def librdkafka_version() -> str:
    import confluent_kafka

    version = confluent_kafka.version()
    client = version if isinstance(version, str) else version[0]
    return f"{confluent_kafka.libversion()[0]} (confluent-kafka {client})"


def how_it_ended(returncode: int) -> str:
    """A child's exit status in words: a signal by its name, since a
    crashed server is otherwise seen only as its clients' reset connections."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "an unknown signal"
        return f"killed by {name} ({-returncode})"
    return f"exited with code {returncode}"


class ServerEnded(RuntimeError):
    """The served process ended before the benchmark stopped it."""


def stop_server(process: subprocess.Popen[bytes], log: Path, timeout: float = 300) -> None:
    """SIGTERM to a served process, then a wait (a kill after ``timeout``).
    One that ended otherwise than a SIGTERM ends it (code 0) raises
    ServerEnded with its exit status and the tail of ``log``: raised in a
    ``finally``, it follows the client's own error (a reset connection, an
    empty answer) with the server's cause. A crash can close the server's
    sockets before its process is seen to end, so one that ended while it
    was being stopped is named as well as one that had ended before."""
    ended_before = process.poll() is not None
    if not ended_before:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.returncode == 0 and not ended_before:
        return
    when = (
        "before it was stopped" if ended_before else "as it was stopped (a SIGTERM ends it with 0)"
    )
    tail = log.read_bytes()[-3000:].decode("utf-8", "replace") if log.exists() else ""
    raise ServerEnded(
        f"the server (pid {process.pid}) {how_it_ended(process.returncode)} {when};"
        f" the tail of {log}:\n{tail}"
    )


def child_json(tree: Path, *command: object, timeout: float = 1800) -> dict[str, Any]:
    """``python *command`` run in a child on ``tree``'s code (first on its
    path, its C extension: TIDELOG_PURE unset), for trees compared in turns;
    the JSON object its last line printed."""
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    environment.pop("TIDELOG_PURE", None)
    done = subprocess.run(
        [sys.executable, *map(str, command)],
        env=environment,
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def figure_cells(
    run: Mapping[str, Any],
    base: Mapping[str, Any],
    names: Iterable[str],
    no_ratio: Container[str] = (),
) -> list[str]:
    """A table row's cells for ``run``'s figures ``names``, each with its
    ratio to ``base``'s (a run of the other tree in the same round) unless
    ``run`` is the base, the base's figure is 0 or the figure is in
    ``no_ratio``."""
    cells = []
    for name in names:
        value = run[name]
        if run is base or not base[name] or name in no_ratio:
            cells.append(f"{value:.4g}")
        else:
            cells.append(f"{value:.4g} ({value / base[name]:.2f})")
    return cells
