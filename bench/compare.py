"""Two revisions of tidelog, each running its own benchmarks, side by side.

    python bench/compare.py [--base 4495dd4] [--head HEAD] [--between REV] [--rounds 3]
                            [--json] [--only REGEX] [--timeout 900] BENCH [BENCH ...]

Each BENCH is a script of bench/ with its arguments, one shell-quoted word:
``"engine_bench.py --records 20000 --rounds 1"``. Every revision gets a
temporary ``git worktree`` (detached, removed after) with its C extension
built in place, and runs its *own* copy of the script, with ``--json`` and
its own ``PYTHONPATH``: a revision is measured as it was written. Scripts'
command lines drift between revisions, so an option a revision's ``--help``
does not list is left out of its command (and named in the report).

The revisions alternate, base then head, round after round (A/B/A/B), so a
machine that slows down part-way slows both. ``--between REV`` adds a
revision in the middle (A/M/B/A/M/B...), to tell which of two sets of
changes moved a figure. Every numeric value of the JSON objects (nested
keys joined with dots) is a figure; for each figure every revision reported,
the report gives each revision's median over its rounds and its spread
((max - min) / median), the ratio of the medians from each revision to the
next (and head/base), and beside each ratio the lowest and highest ratio of
one round's pair: when those bracket 1.0 widely, the difference is noise.
``--json`` prints one JSON object instead of the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import _harness

REPO = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT_S = 600
OPTION = re.compile(r"(?<![\w-])(--[A-Za-z0-9][\w-]*)")


@dataclass(frozen=True)
class Bench:
    script: str
    args: tuple[str, ...]

    @classmethod
    def parse(cls, spec: str) -> Bench:
        words = shlex.split(spec)
        if not words:
            raise ValueError("an empty benchmark")
        script = words[0] if words[0].endswith(".py") else f"{words[0]}.py"
        return cls(script, tuple(words[1:]))

    @property
    def name(self) -> str:
        return self.script.removesuffix(".py")


@dataclass(frozen=True)
class Revision:
    label: str
    """Its worktree's directory name."""
    ref: str
    commit: str
    tree: Path


def flatten(value: Any, prefix: str = "") -> dict[str, float]:
    """Every number in a JSON object, by its dotted path. Booleans and
    strings are facts, not figures; lists (a benchmark's own rounds, which
    its medians already summarise) are left out too."""
    figures: dict[str, float] = {}
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return figures
    if isinstance(value, int | float):
        if math.isfinite(value):
            figures[prefix] = float(value)
        return figures
    if not isinstance(value, Mapping):
        return figures
    for key, item in value.items():
        figures.update(flatten(item, f"{prefix}.{key}" if prefix else key))
    return figures


def supported_options(help_text: str) -> set[str]:
    """The long options a script's ``--help`` lists."""
    return set(OPTION.findall(help_text))


def keep_supported(args: Sequence[str], supported: set[str]) -> tuple[list[str], list[str]]:
    """``args`` without the options (and their values) ``supported`` lacks,
    and the options left out. A value is the next word when it does not
    start with ``--``; ``--opt=value`` is one word."""
    kept: list[str] = []
    dropped: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        takes_next = i + 1 < len(args) and not args[i + 1].startswith("--")
        if word.startswith("--"):
            option = word.split("=", 1)[0]
            span = [word, args[i + 1]] if takes_next and "=" not in word else [word]
            if option in supported:
                kept.extend(span)
            else:
                dropped.append(option)
            i += len(span)
        else:
            kept.append(word)
            i += 1
    return kept, dropped


def spread(values: Sequence[float]) -> float | None:
    """(max - min) / median of one revision's rounds: how much it moved."""
    median = statistics.median(values)
    return (max(values) - min(values)) / abs(median) if median else None


def step(before: Sequence[float], after: Sequence[float]) -> dict[str, float | None]:
    """The ratio after/before of the medians, and the range of the per-round
    ratios (round i of ``after`` over round i of ``before``)."""
    median_before, median_after = statistics.median(before), statistics.median(after)
    pairs = [a / b for b, a in zip(before, after, strict=False) if b]
    return {
        "ratio": median_after / median_before if median_before else None,
        "round_ratio_min": min(pairs) if pairs else None,
        "round_ratio_max": max(pairs) if pairs else None,
    }


def compare_rounds(rounds: Mapping[str, Sequence[Mapping[str, float]]]) -> dict[str, Any]:
    """Per figure that every round of every revision reported (a figure one
    revision lacks, renamed or added, cannot be compared): each revision's
    median and spread, the step from each revision to the next, and the
    last over the first (``head/base``); and every round's value, for
    figures whose spread calls for a look at each pair."""
    labels = list(rounds)
    keys = set.intersection(*(set(r) for runs in rounds.values() for r in runs))
    figures: dict[str, Any] = {}
    for key in sorted(keys):
        values = {label: [r[key] for r in rounds[label]] for label in labels}
        figures[key] = {
            "median": {label: statistics.median(v) for label, v in values.items()},
            "spread": {label: spread(v) for label, v in values.items()},
            "rounds": values,
            "steps": [
                {"from": a, "to": b, **step(values[a], values[b])} for a, b in pairwise(labels)
            ],
            **step(values[labels[0]], values[labels[-1]]),
        }
    return figures


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True, timeout=120
    ).stdout.strip()


@contextmanager
def worktree(label: str, ref: str, parent: Path) -> Iterator[Revision]:
    """``ref`` checked out (detached) in a temporary worktree, its C
    extension built; the worktree is removed on the way out."""
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    tree = parent / label
    git("worktree", "add", "--detach", str(tree), commit)
    try:
        subprocess.run(
            [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
            cwd=tree,
            capture_output=True,
            check=True,
            timeout=BUILD_TIMEOUT_S,
        )
        yield Revision(label, ref, commit, tree)
    finally:
        try:
            git("worktree", "remove", "--force", str(tree))
        except subprocess.CalledProcessError:
            shutil.rmtree(tree, ignore_errors=True)
            git("worktree", "prune")


def environment(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    env.pop("TIDELOG_PURE", None)
    return env


def command(revision: Revision, bench: Bench, timeout: float) -> tuple[list[str], list[str]]:
    """The revision's command for ``bench`` and the options it left out."""
    script = revision.tree / "bench" / bench.script
    if not script.exists():
        raise SystemExit(f"{revision.ref} has no bench/{bench.script}")
    helped = subprocess.run(
        [sys.executable, str(script), "--help"],
        cwd=revision.tree,
        env=environment(revision.tree),
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
    ).stdout
    args, dropped = keep_supported([*bench.args, "--json"], supported_options(helped))
    if "--json" not in args:
        raise SystemExit(f"{revision.ref}'s bench/{bench.script} has no --json")
    return [sys.executable, str(script), *args], dropped


def run_once(revision: Revision, argv: list[str], timeout: float) -> dict[str, float]:
    result = subprocess.run(
        argv,
        cwd=revision.tree,
        env=environment(revision.tree),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise SystemExit(
            f"{revision.ref}: {' '.join(argv[1:])} exited {result.returncode}:\n"
            f"{result.stderr[-4000:]}"
        )
    return flatten(json_report(result.stdout))


def json_report(stdout: str) -> dict[str, Any]:
    """The JSON object a benchmark printed: all of its output (some print
    it indented over many lines), else its last line (others log above a
    one-line object)."""
    text = stdout.strip()
    try:
        report = json.loads(text)
    except ValueError:
        report = json.loads(text.splitlines()[-1])
    if not isinstance(report, dict):
        raise ValueError(f"a benchmark printed {type(report).__name__}, not a JSON object")
    return report


def run(
    refs: Sequence[str], benches: Sequence[Bench], rounds: int, timeout: float
) -> dict[str, Any]:
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "rounds": rounds,
        "load_before": list(os.getloadavg()),
        **_harness.cpus(),
        "revisions": [],
        "benchmarks": {},
    }
    with ExitStack() as stack:
        parent = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tidelog-compare-")))
        revisions = [
            stack.enter_context(worktree(f"{i}-{ref}".replace("/", "_"), ref, parent))
            for i, ref in enumerate(refs)
        ]
        results["revisions"] = [{"ref": r.ref, "commit": r.commit} for r in revisions]
        for bench in benches:
            commands = [command(revision, bench, timeout) for revision in revisions]
            runs: dict[str, list[dict[str, float]]] = {r.ref: [] for r in revisions}
            loads: dict[str, list[float]] = {r.ref: [] for r in revisions}
            for i in range(rounds):  # every revision once per round, in order
                for revision, (argv, _dropped) in zip(revisions, commands, strict=True):
                    # Progress on stderr: a long comparison is not silent.
                    print(f"{bench.name} round {i + 1}/{rounds}: {revision.ref}", file=sys.stderr)
                    loads[revision.ref].append(os.getloadavg()[0])
                    runs[revision.ref].append(run_once(revision, argv, timeout))
            results["benchmarks"][bench.name] = {
                "args": {r.ref: argv[2:] for r, (argv, _) in zip(revisions, commands, strict=True)},
                "dropped": {
                    r.ref: dropped for r, (_, dropped) in zip(revisions, commands, strict=True)
                },
                "figures": compare_rounds(runs),
                "load_at_each_run": loads,
            }
    results["load_after"] = list(os.getloadavg())
    return results


def only(results: dict[str, Any], pattern: str | None) -> dict[str, Any]:
    """The results with the figures whose names match ``pattern``."""
    if pattern is None:
        return results
    wanted = re.compile(pattern)
    for bench in results["benchmarks"].values():
        bench["figures"] = {k: v for k, v in bench["figures"].items() if wanted.search(k)}
    return results


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if abs(value) >= 1000 or abs(value) < 0.01 else f"{value:.3f}"


def _ratio(step: Mapping[str, float | None]) -> str:
    if step["ratio"] is None or step["round_ratio_min"] is None:
        return "-"
    return f"{step['ratio']:.3f} ({step['round_ratio_min']:.2f}-{step['round_ratio_max']:.2f})"


def print_table(results: Mapping[str, Any]) -> None:
    refs = [r["ref"] for r in results["revisions"]]
    print(
        f"{results['date']}  rounds {results['rounds']}  cpus "
        f"{results['cpus_usable']}/{results['cpu_count']}  load "
        f"{results['load_before'][0]:.1f} -> {results['load_after'][0]:.1f}"
    )
    for revision in results["revisions"]:
        print(f"  {revision['ref']} = {revision['commit'][:12]}")
    width = max(11, *(len(ref) for ref in refs))
    steps = [f"{b}/{a}" for a, b in pairwise(refs)]
    if len(refs) > 2:
        steps.append(f"{refs[-1]}/{refs[0]}")
    for name, bench in results["benchmarks"].items():
        print(f"\n{name}")
        for ref in refs:
            dropped = bench["dropped"][ref]
            note = f"  (does not take {', '.join(dropped)})" if dropped else ""
            print(f"  {ref}: {' '.join(bench['args'][ref])}{note}")
        print(
            f"  {'figure':<34} "
            + " ".join(f"{ref:>{width}}" for ref in refs)
            + " "
            + " ".join(f"{s:>22}" for s in steps)
            + "  spread "
            + "/".join(refs)
        )
        for key, f in bench["figures"].items():
            ratios = [_ratio(s) for s in f["steps"]]
            if len(refs) > 2:
                ratios.append(_ratio(f))
            spreads = "/".join(
                "-" if f["spread"][ref] is None else f"{f['spread'][ref]:.0%}" for ref in refs
            )
            print(
                f"  {key:<34} "
                + " ".join(f"{fmt(f['median'][ref]):>{width}}" for ref in refs)
                + " "
                + " ".join(f"{r:>22}" for r in ratios)
                + f"  {spreads}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "benches", nargs="+", metavar="BENCH", help='e.g. "engine_bench.py --quick"'
    )
    parser.add_argument("--base", default="4495dd4", help="the baseline revision (4495dd4)")
    parser.add_argument("--head", default="HEAD", help="the revision measured against it (HEAD)")
    parser.add_argument(
        "--between",
        action="append",
        default=[],
        metavar="REV",
        help="a revision measured between the two, in the same rounds (repeatable)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs of each revision, alternating")
    parser.add_argument("--only", default=None, help="show only figures matching this regex")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per benchmark run")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    benches = [Bench.parse(spec) for spec in args.benches]
    refs = [args.base, *args.between, args.head]
    if len(set(refs)) != len(refs):
        parser.error("each revision once")
    results = only(run(refs, benches, args.rounds, args.timeout), args.only)
    _harness.report(results, args.json, print_table)


if __name__ == "__main__":
    main()
