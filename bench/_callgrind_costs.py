"""Instruction counts per function from one callgrind dump, read from
callgrind's own format (valgrind's "Callgrind Format Specification")
rather than through callgrind_annotate, whose 3.19 release folds a
thread's dump taken after ``callgrind_control -z`` into one recursive
frame."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

_NAMED = re.compile(r"^(c?fn)=\((\d+)\)(?: (.*))?$")


def costs(path: Path) -> tuple[int, dict[str, int]]:
    """The dump's summary (the thread's instructions since the counters
    were zeroed) and each function's exclusive count. The exclusive counts
    add up to more than the summary where recursion is cut into cycles
    ('2 suffixes): rank functions by them, total the thread by the summary."""
    names: dict[str, str] = {}
    exclusive: dict[str, int] = defaultdict(int)
    summary = 0
    current = "?"
    after_call = False
    with open(path, encoding="utf-8", errors="replace") as dump:
        for line in dump:
            first = line[:1]
            if first.isdigit() or first in ("+", "-", "*"):
                if after_call:  # a call's inclusive cost: the callee's, not this one's
                    after_call = False
                else:
                    parts = line.split()
                    exclusive[current] += int(parts[1]) if len(parts) > 1 else 0
            elif line.startswith(("fn=", "cfn=")):
                match = _NAMED.match(line.rstrip("\n"))
                if match is None:
                    continue
                kind, number, name = match.groups()
                if name is not None:
                    names[number] = name
                if kind == "fn":
                    current = names.get(number, number)
            elif line.startswith("calls="):
                after_call = True
            elif line.startswith("summary:"):
                summary = int(line.split()[1])
    return summary, dict(exclusive)


def call_count(path: Path, callee: str) -> int:
    """How many times the dump's thread called the function of that name."""
    names: dict[str, str] = {}
    target = ""
    count = 0
    with open(path, encoding="utf-8", errors="replace") as dump:
        for line in dump:
            if line.startswith(("fn=", "cfn=")):
                # A name is given at its first use, as a caller or a callee.
                match = _NAMED.match(line.rstrip("\n"))
                if match is not None:
                    kind, number, name = match.groups()
                    if name is not None:
                        names[number] = name
                    if kind == "cfn":
                        target = names.get(number, number)
            elif line.startswith("calls=") and target == callee:
                count += int(line[6:].split()[0])
    return count


def calls(path: Path, name: str) -> bool:
    """Whether the dump's thread ran a function whose name starts so."""
    pattern = re.compile(rf"^c?fn=\(\d+\) {re.escape(name)}", re.MULTILINE)
    return pattern.search(path.read_text(errors="replace")) is not None


def thread_instructions(tree: Path, argv: Sequence[str]) -> list[int]:
    """Each thread's instructions when ``python *argv`` runs under callgrind
    from a source tree (its code imported first), in the order the threads
    started: the main thread's first. Hash seeds are fixed, so that two runs
    of one tree differ only by where objects land in memory."""
    with tempfile.TemporaryDirectory() as out:
        env = os.environ | {"PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--separate-threads=yes",
                f"--callgrind-out-file={os.path.join(out, 'callgrind.out')}",
                sys.executable,
                *argv,
            ],
            cwd=tree,
            env=env,
            check=True,
            capture_output=True,
        )
        # One dump a thread, named by the thread's number: callgrind.out-01 ...
        dumps = sorted(Path(out).glob("callgrind.out-*"), key=lambda d: int(d.name.rsplit("-")[-1]))
        if not dumps:
            raise RuntimeError(f"callgrind wrote no dump for {tree}")
        return [_total(dump) for dump in dumps]


def run_in_windows(
    tree: Path, argv: Sequence[str], out: Path, windows: Sequence[str], *, counted: bool
) -> None:
    """Runs ``python *argv`` from a source tree (its code imported first;
    under callgrind when ``counted``, counting nothing until told, its
    dumps ``out/callgrind.out.N-TT``), which prints each of ``windows`` in
    turn and waits for a line on its stdin after each: the counters are
    zeroed and started at the first, dumped at each after it (dump N
    holds window N), and stopped at the last. Hash seeds are fixed.
    Raises with the tail of the child's stderr if it says anything else
    or fails."""
    command = [sys.executable, *argv]
    if counted:
        command[:0] = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            "--separate-threads=yes",
            f"--callgrind-out-file={out}/callgrind.out",
        ]
    env = os.environ | {"PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    with open(out / "stderr", "w") as errors:
        child = subprocess.Popen(
            command,
            cwd=tree,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        assert child.stdin is not None and child.stdout is not None
        for number, expected in enumerate(windows):
            line = child.stdout.readline().strip()
            if line != expected:
                child.kill()
                child.wait()
                raise RuntimeError(f"the child said {line!r}, not {expected!r}:\n{_tail(out)}")
            control = ["--zero", "--instr=on"] if number == 0 else ["--dump"]
            if number == len(windows) - 1:
                control.append("--instr=off")
            for word in control if counted else ():
                subprocess.run(
                    ["callgrind_control", word, str(child.pid)], check=True, capture_output=True
                )
            child.stdin.write("go\n")
            child.stdin.flush()
        failed = child.wait(3600) != 0
    if failed:
        raise RuntimeError(f"the child failed in {tree}:\n{_tail(out)}")


def _tail(out: Path) -> str:
    return (out / "stderr").read_text()[-2000:]


def _total(dump: Path) -> int:
    """A dump's instructions: its summary line, or its totals line where
    a valgrind release writes that instead."""
    total = 0
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            total = max(total, int(line.split()[1]))
    return total


def report(figures: dict[str, dict[str, float]], heading: str, *, as_json: bool) -> None:
    """Prints each figure by tree (``figures[kind][tree]``): as JSON, or as
    a table with a column a tree (the last 28 characters of its path), the
    trees of one run side by side."""
    if as_json:
        print(json.dumps(figures, indent=2))
        return
    trees = list(next(iter(figures.values()), {}))
    width = max(len(name) for name in [heading, *figures]) + 2
    print(f"{heading:<{width}}" + "".join(f"{tree[-28:]:>30}" for tree in trees))
    for kind, by_tree in figures.items():
        print(f"{kind:<{width}}" + "".join(f"{by_tree[tree]:>30.0f}" for tree in trees))
