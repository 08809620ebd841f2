"""Two revisions of tidelog, each running its own benchmarks, side by side.

    python bench/compare.py [--base 4495dd4] [--head HEAD] [--rounds 3] [--json]
                            [--only REGEX] [--timeout 900] BENCH [BENCH ...]

Each BENCH is a script of bench/ with its arguments, one shell-quoted word:
``"engine_bench.py --records 20000 --rounds 1"``. Every revision gets a
temporary ``git worktree`` (detached, removed after) with its C extension
built in place, and runs its *own* copy of the script, with ``--json`` and
its own ``PYTHONPATH``: a revision is measured as it was written. Scripts'
command lines drift between revisions, so an option a revision's ``--help``
does not list is left out of its command (and named in the report).

The revisions alternate, base then head, round after round (A/B/A/B), so a
machine that slows down part-way slows both. Every numeric value of the
JSON objects (nested keys joined with dots) is a figure; for each figure
present in both revisions the report gives the median of the rounds on each
side, the ratio head/base of the medians, each side's spread ((max - min) /
median over its rounds), and the lowest and highest ratio of one round's
pair: when those bracket 1.0 widely, the difference is noise. ``--json``
prints one JSON object instead of the table.
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
    """"base" or "head"."""
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


def summarise(base: Sequence[float], head: Sequence[float]) -> dict[str, float | None]:
    """Medians, their ratio head/base, each side's spread, and the range of
    the per-round ratios (round i of head over round i of base)."""
    base_median = statistics.median(base)
    head_median = statistics.median(head)

    def spread(values: Sequence[float], median: float) -> float | None:
        return (max(values) - min(values)) / abs(median) if median else None

    pairs = [h / b for b, h in zip(base, head, strict=False) if b]
    return {
        "base": base_median,
        "head": head_median,
        "ratio": head_median / base_median if base_median else None,
        "base_spread": spread(base, base_median),
        "head_spread": spread(head, head_median),
        "round_ratio_min": min(pairs) if pairs else None,
        "round_ratio_max": max(pairs) if pairs else None,
    }


def compare_rounds(
    base_rounds: Sequence[Mapping[str, float]], head_rounds: Sequence[Mapping[str, float]]
) -> dict[str, dict[str, float | None]]:
    """Each figure every round of both sides reported, summarised; a figure
    one revision lacks (renamed, added) cannot be compared and is left out."""
    keys = set.intersection(*(set(r) for r in [*base_rounds, *head_rounds]))
    return {
        key: summarise([r[key] for r in base_rounds], [r[key] for r in head_rounds])
        for key in sorted(keys)
    }


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
    # The JSON object is the last line; a benchmark may log above it.
    return flatten(json.loads(result.stdout.strip().splitlines()[-1]))


def run(
    base_ref: str, head_ref: str, benches: Sequence[Bench], rounds: int, timeout: float
) -> dict[str, Any]:
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "rounds": rounds,
        "load_before": list(os.getloadavg()),
        **_harness.cpus(),
        "benchmarks": {},
    }
    with ExitStack() as stack:
        parent = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tidelog-compare-")))
        base = stack.enter_context(worktree("base", base_ref, parent))
        head = stack.enter_context(worktree("head", head_ref, parent))
        results["base"] = {"ref": base_ref, "commit": base.commit}
        results["head"] = {"ref": head_ref, "commit": head.commit}
        for bench in benches:
            base_argv, base_dropped = command(base, bench, timeout)
            head_argv, head_dropped = command(head, bench, timeout)
            base_rounds: list[dict[str, float]] = []
            head_rounds: list[dict[str, float]] = []
            for _ in range(rounds):
                base_rounds.append(run_once(base, base_argv, timeout))
                head_rounds.append(run_once(head, head_argv, timeout))
            results["benchmarks"][bench.name] = {
                "base_args": base_argv[2:],
                "head_args": head_argv[2:],
                "dropped": {"base": base_dropped, "head": head_dropped},
                "figures": compare_rounds(base_rounds, head_rounds),
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


def print_table(results: Mapping[str, Any]) -> None:
    base, head = results["base"], results["head"]
    print(
        f"{results['date']}  base {base['ref']} ({base['commit'][:9]})  "
        f"head {head['ref']} ({head['commit'][:9]})  rounds {results['rounds']}  "
        f"cpus {results['cpus_usable']}/{results['cpu_count']}  load "
        f"{results['load_before'][0]:.1f} -> {results['load_after'][0]:.1f}"
    )
    for name, bench in results["benchmarks"].items():
        print(f"\n{name}  base: {' '.join(bench['base_args'])}")
        print(f"{' ' * len(name)}  head: {' '.join(bench['head_args'])}")
        for side, dropped in bench["dropped"].items():
            if dropped:
                print(f"  ({side} does not take {', '.join(dropped)})")
        print(
            f"  {'figure':<36} {'base':>11} {'head':>11} {'head/base':>9} "
            f"{'spread b':>8} {'spread h':>8} {'pair ratios':>13}"
        )
        for key, f in bench["figures"].items():
            spread_b = "-" if f["base_spread"] is None else f"{f['base_spread']:.0%}"
            spread_h = "-" if f["head_spread"] is None else f"{f['head_spread']:.0%}"
            pairs = (
                "-"
                if f["round_ratio_min"] is None
                else f"{f['round_ratio_min']:.2f}-{f['round_ratio_max']:.2f}"
            )
            ratio = "-" if f["ratio"] is None else f"{f['ratio']:.3f}"
            print(
                f"  {key:<36} {fmt(f['base']):>11} {fmt(f['head']):>11} {ratio:>9} "
                f"{spread_b:>8} {spread_h:>8} {pairs:>13}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "benches", nargs="+", metavar="BENCH", help='e.g. "engine_bench.py --quick"'
    )
    parser.add_argument("--base", default="4495dd4", help="the baseline revision (4495dd4)")
    parser.add_argument("--head", default="HEAD", help="the revision measured against it (HEAD)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each revision, alternating")
    parser.add_argument("--only", default=None, help="show only figures matching this regex")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per benchmark run")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    benches = [Bench.parse(spec) for spec in args.benches]
    results = only(run(args.base, args.head, benches, args.rounds, args.timeout), args.only)
    _harness.report(results, args.json, print_table)


if __name__ == "__main__":
    main()
