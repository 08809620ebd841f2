"""Every benchmark of bench/ in one run, as one self-contained HTML page.

Runs each benchmark as people run it (a child process with ``--json``),
keeps what each printed, and writes ``report.html`` (plots as inline PNG,
no network needed to read it) and ``report.json`` (the same figures) into
``--out``. A benchmark that fails or times out is reported with its error;
the others go on.

    python bench/report.py [--quick] [--out DIR] [--only NAME]... [--timeout 3600]
    python bench/report.py --from-json DIR/report.json --out DIR

The page holds: the machine (CPU model, cores, memory, disk, Python, OS);
per benchmark, its ratios against the baselines measured in the same run
(bars, each labelled); the produce latency CDFs (kafka_bench); the replay
rate over time (replay_bench); startup times (startup_bench); how costs
grow with consumers, partitions and history (scale_bench); a table of
every figure; and the JSON it was built from.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import html
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    quick: tuple[str, ...]
    """Arguments of a quick run (the whole report in a few minutes)."""
    full: tuple[str, ...] = ()
    """Arguments of a full run (the benchmark's own defaults)."""


BENCHES = (
    Bench("native", "native_bench.py", ("--quick",)),
    Bench("acl", "acl_bench.py", ("--quick",)),
    Bench("chain", "chain_bench.py", ("--quick",)),
    Bench("provenance", "provenance_bench.py", ("--quick",)),
    Bench("validation", "validation_bench.py", ("--quick",)),
    Bench("lookup", "lookup_bench.py", ("--quick",)),
    Bench("startup", "startup_bench.py", ("--quick",)),
    Bench("wal", "wal_bench.py", ("--quick",)),
    Bench("writeback", "writeback_bench.py", ("--quick",)),
    Bench("wal_extent", "wal_extent_bench.py", ("--quick",)),
    Bench("write_span", "write_span_bench.py", ("--quick",)),
    Bench("object_put", "object_put_bench.py", ("--quick",)),
    Bench("wal_beside_puts", "wal_beside_puts_bench.py", ("--quick",)),
    Bench("ack_path", "ack_path_bench.py", ("--quick",)),
    Bench("wal_roll", "wal_roll_bench.py", ("--quick",)),
    Bench("engine", "engine_bench.py", ("--quick", "--rounds", "1")),
    Bench("replay", "replay_bench.py", ("--quick",)),
    Bench("remote_ack", "remote_ack_bench.py", ("--quick",)),
    Bench("kafka", "kafka_bench.py", ("--quick",)),
    Bench("group", "group_bench.py", ("--quick",)),
    Bench("topics", "topics_bench.py", ("--quick",)),
    Bench("mirror", "mirror_bench.py", ("--quick",)),
    Bench("table", "table_bench.py", ("--quick",)),
    Bench("table_expiry", "table_expiry_bench.py", ("--quick",)),
    Bench("metrics", "metrics_bench.py", ("--produce-mb", "16", "--rounds", "1")),
    Bench("scale", "scale_bench.py", ("--quick",)),
)
"""bench/compare.py is left out: it measures revisions against each other."""

STDERR_TAIL = 2000
"""Characters of a failed benchmark's stderr kept in the report."""


# -- running -----------------------------------------------------------------------


def run_bench(bench: Bench, quick: bool, timeout: float) -> dict[str, Any]:
    """One benchmark in a child process: its JSON, or why there is none."""
    command = [sys.executable, str(BENCH / bench.script), *(bench.quick if quick else bench.full)]
    command.append("--json")
    entry: dict[str, Any] = {"name": bench.name, "command": command[1:], "ok": False}
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT
        )
    except subprocess.TimeoutExpired:
        entry["error"] = f"timed out after {timeout:g} s"
        entry["seconds"] = round(time.perf_counter() - started, 1)
        return entry
    except OSError as exc:
        entry["error"] = f"could not start: {exc}"
        entry["seconds"] = round(time.perf_counter() - started, 1)
        return entry
    entry["seconds"] = round(time.perf_counter() - started, 1)
    if done.returncode != 0:
        entry["error"] = f"exit status {done.returncode}: {done.stderr[-STDERR_TAIL:]}"
        return entry
    try:
        entry["result"] = parse_json(done.stdout)
    except ValueError as exc:
        entry["error"] = f"no JSON object in its output ({exc}): {done.stdout[-STDERR_TAIL:]}"
        return entry
    entry["ok"] = True
    return entry


def parse_json(stdout: str) -> dict[str, Any]:
    """The one JSON object a benchmark printed with --json; lines it printed
    before it (a warning, a progress note) are skipped."""
    lines = stdout.splitlines()
    for start, line in enumerate(lines):
        if line.startswith("{"):
            value = json.loads("\n".join(lines[start:]))
            if isinstance(value, dict):
                return value
    raise ValueError("no line opens a JSON object")


# -- the machine -------------------------------------------------------------------


def machine(directory: Path) -> dict[str, Any]:
    """What a reader needs to weigh the figures: from /proc and platform."""
    facts: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": _memory_gib(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": platform.platform(),
        "c_extension": os.environ.get("TIDELOG_PURE") != "1",
        "revision": _revision(),
    }
    facts.update(_disk(directory))
    return facts


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _disk(directory: Path) -> dict[str, Any]:
    """The filesystem the benchmarks' scratch directories live on (the
    system's temp directory), its size, and its device's model if known."""
    path = str(directory.resolve())
    usage = shutil.disk_usage(path)
    facts: dict[str, Any] = {"disk_total_gib": round(usage.total / 2**30, 1)}
    mount = ("", "", "")
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                device, point, kind = line.split()[:3]
                inside = path == point or path.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(mount[1]):
                    mount = (device, point, kind)
    except OSError:
        pass
    if mount[1]:
        facts["disk_mount"] = f"{mount[1]} ({mount[2]} on {mount[0]})"
        block = Path("/sys/block") / Path(mount[0]).name.rstrip("0123456789")
        for name, leaf in (("disk_model", "device/model"), ("disk_rotational", "queue/rotational")):
            with contextlib.suppress(OSError):
                facts[name] = (block / leaf).read_text().strip()
    return facts


def _revision() -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


# -- figures -----------------------------------------------------------------------

UNITS = ("mb_s", "gb_s", "mib_s", "per_s", "records_s", "rec_s", "ms", "s")
"""Units a ratio's two sides are looked up with: X_vs_Y is X_<unit> / Y_<unit>."""


def flatten(value: Any, prefix: str = "") -> dict[str, float]:
    """Every number of a benchmark's JSON, nested keys joined with dots
    (lists, strings and booleans left out, as bench/compare.py does)."""
    if isinstance(value, dict):
        flat: dict[str, float] = {}
        for key, inner in value.items():
            flat.update(flatten(inner, f"{prefix}{key}."))
        return flat
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {prefix[:-1]: float(value)}
    return {}


def ratios(figures: dict[str, float]) -> list[tuple[str, float, str]]:
    """The ratios among the figures (names holding ``_vs_``), each with what
    it compares when both sides are figures too ("A x vs B y"), else ""."""
    found = []
    for key, value in figures.items():
        leaf = key.rsplit(".", 1)[-1]
        if "_vs_" not in leaf or key.startswith("targets"):
            continue
        found.append((key, value, _sides(figures, key)))
    return found


def _sides(figures: dict[str, float], key: str) -> str:
    """Finds the two figures a ratio X_vs_Y divides, by the names the
    benchmarks use: X_<unit> and Y_<unit>, either with a qualifier after
    (append_vs_wal_file: append_mb_s_file, wal_mb_s_file), the baseline named
    after the figure (produce_vs_mock: mock_produce_mb_s) or the figure's
    own baseline (remote_vs_local_mb_s: remote_local_mb_s), or the one
    figure whose name ends in Y_<unit> (import_engine_vs_pass: python_pass_s);
    kept only when the two figures give the ratio."""
    prefix, _, leaf = key.rpartition(".")
    prefix = f"{prefix}." if prefix else ""
    x, _, right = leaf.partition("_vs_")
    names = [name[len(prefix) :] for name in figures if name.startswith(prefix)]
    splits = [(right, "")] + [
        (right[:at], right[at:]) for at in range(1, len(right)) if right[at] == "_"
    ]
    for y, qualifier in splits:
        for unit in ("", *UNITS):
            if not unit and not qualifier:
                continue
            tail = f"_{unit}{qualifier}" if unit else qualifier
            left = f"{x}{tail}"
            if prefix + left not in figures:
                continue
            candidates = [f"{y}{tail}", f"{y}_{x}{tail}", f"{x}_{y}{tail}"]
            ending = [name for name in names if name.endswith(f"_{y}{tail}")]
            if len(ending) == 1:
                candidates.append(ending[0])
            for right_name in candidates:
                if right_name != left and prefix + right_name in figures:
                    a, b = figures[prefix + left], figures[prefix + right_name]
                    if _divides(figures[key], a, b):
                        return f"{left} {_number(a)} vs {right_name} {_number(b)}"
    return ""


def _divides(ratio: float, a: float, b: float) -> bool:
    """Whether a and b give the ratio (a/b, or b/a for a cost such as
    seconds), within rounding: a pair found by name alone is only shown
    when its figures agree."""
    if a <= 0 or b <= 0 or ratio <= 0:
        return False
    return any(abs(candidate / ratio - 1) <= 0.05 for candidate in (a / b, b / a))


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def series(value: Any, marker: str, prefix: str = "") -> dict[str, list[list[float]]]:
    """Lists of [x, y] pairs whose key holds ``marker``, anywhere in the JSON
    (a benchmark may suffix its keys, as replay_bench does with _file, _s3)."""
    found: dict[str, list[list[float]]] = {}
    if isinstance(value, dict):
        for key, inner in value.items():
            name = f"{prefix}{key}"
            if marker in key and isinstance(inner, list) and inner:
                if all(isinstance(p, list) and len(p) == 2 for p in inner):
                    found[name] = inner
            else:
                found.update(series(inner, marker, f"{name}."))
    return found


# -- plots -------------------------------------------------------------------------


def _png(figure: Any) -> bytes:
    """The figure as PNG, reduced to a small palette: plots have few
    colours, and the page stays small."""
    import matplotlib.pyplot as plt
    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=72, bbox_inches="tight")
    plt.close(figure)
    buffer.seek(0)
    small = io.BytesIO()
    Image.open(buffer).convert("RGB").quantize(colors=64).save(small, "PNG", optimize=True)
    return small.getvalue()


def _img(png: bytes) -> str:
    """A PNG inline in the page (base64), so the page needs nothing else."""
    encoded = base64.b64encode(png).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{encoded}">'


def plot_ratios(name: str, found: list[tuple[str, float, str]]) -> bytes:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    shown = [(key, value, sides) for key, value, sides in found if value > 0]
    if not shown:
        return b""
    figure, axes = plt.subplots(figsize=(8, 0.9 + 0.42 * len(shown)))
    # A ratio's two figures go under its name where both are reported.
    labels = [f"{key}\n{sides}" if sides else key for key, _, sides in shown]
    values = [value for _, value, _ in shown]
    # Bars start at 1 (the baseline) and reach the ratio, so a figure below
    # its baseline points left. Whether higher is better depends on the
    # figure (a rate or a cost), so one colour serves both.
    axes.barh(range(len(values)), [value - 1 for value in values], left=1, color="#2b7bba")
    axes.set_xlim(min([*values, 1.0]) / 3, max([*values, 1.0]) * 2.2)
    axes.set_yticks(range(len(values)), labels, fontsize=7)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    axes.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: ""))
    for index, value in enumerate(values):
        axes.annotate(
            f"{value:.3g}x",
            (value, index),
            xytext=(3 if value >= 1 else -3, 0),
            textcoords="offset points",
            ha="left" if value >= 1 else "right",
            va="center",
            fontsize=8,
        )
    axes.set_xlabel("ratio to the baseline measured in the same run (1 = the baseline; log)")
    axes.set_title(f"{name}: figures against their baselines")
    return _png(figure)


def plot_lines(
    title: str, curves: dict[str, list[list[float]]], xlabel: str, ylabel: str, logx: bool
) -> bytes:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4))
    for label, points in curves.items():
        name = CURVE_NAMES.get(label, label)
        axes.plot([p[0] for p in points], [p[1] for p in points], label=name, linewidth=1.2)
    if logx:
        from matplotlib.ticker import FuncFormatter

        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    return _png(figure)


def latency_cdf(curves: dict[str, list[list[float]]]) -> bytes:
    """[quantile, ms] lists, drawn as ms (x, log) against the quantile (y)."""
    flipped = {
        name: [[ms, quantile] for quantile, ms in points if ms > 0]
        for name, points in curves.items()
    }
    return plot_lines("produce latency, per record (CDF)", flipped, "ms (log)", "quantile", True)


CURVE_NAMES = {
    "kafka.latency_cdf_ms": "tidelog, local acks (fsynced WAL)",
    "kafka.remote_latency_cdf_ms": "tidelog, remote acks (object committed)",
    "kafka.mock_latency_cdf_ms": "librdkafka's mock cluster (the client's floor)",
    "replay.replay_timeline_file": "local dir, after compaction",
    "replay.replay_uncompacted_timeline_file": "local dir, before compaction",
    "replay.replay_timeline_s3": "S3 (moto), after compaction",
    "replay.replay_uncompacted_timeline_s3": "S3 (moto), before compaction",
    "scale.burst.replay_timeline": "scale: replay beside live traffic (Kafka client)",
    "scale.burst.solo_replay_timeline": "scale: the same replay alone (Kafka client)",
}
"""What a curve's legend says, by benchmark and key (else the key itself)."""

RATE_WINDOWS = 20
"""A replay's rate is drawn over this many equal slices of its duration: a
fetch served from the block cache takes microseconds, so the rate between
two samples alone jumps by orders of magnitude."""


def replay_rate(timelines: dict[str, list[list[float]]]) -> bytes:
    """[seconds, MiB so far] lists: the progress as sampled (left) and the
    rate in each twentieth of the replay (right, MiB/s)."""
    import matplotlib.pyplot as plt
    import numpy

    figure, (progress, rate) = plt.subplots(1, 2, figsize=(10, 4))
    for key, points in timelines.items():
        name = CURVE_NAMES.get(key, key)
        seconds = [point[0] for point in points]
        mib = [point[1] for point in points]
        progress.plot(seconds, mib, label=name, linewidth=1.2)
        if seconds[-1] <= 0:
            continue
        edges = numpy.linspace(0.0, seconds[-1], RATE_WINDOWS + 1)
        read = numpy.interp(edges, seconds, mib)
        rate.step(edges[1:], numpy.diff(read) / numpy.diff(edges), where="pre", label=name)
    progress.set_xlabel("seconds into the replay")
    progress.set_ylabel("MiB read")
    progress.set_title("replay progress")
    rate.set_xlabel("seconds into the replay")
    rate.set_ylabel(f"MiB/s (each 1/{RATE_WINDOWS} of the replay)")
    rate.set_title("replay rate over time")
    for axes in (progress, rate):
        axes.grid(True, alpha=0.3)
    progress.legend(fontsize=7)
    return _png(figure)


def startup_bars(result: dict[str, Any]) -> bytes:
    import matplotlib.pyplot as plt

    figures = flatten(result)
    shown = [(k, v) for k, v in figures.items() if k.endswith("_s") and "_vs_" not in k]
    if not shown:
        return b""
    figure, axes = plt.subplots(figsize=(8, 0.9 + 0.35 * len(shown)))
    axes.barh(range(len(shown)), [v for _, v in shown], color="#2b7bba")
    axes.set_yticks(range(len(shown)), [k for k, _ in shown], fontsize=8)
    axes.invert_yaxis()
    for index, (_, value) in enumerate(shown):
        axes.annotate(
            f"{value:.3g} s",
            (value, index),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    axes.set_xlabel("seconds (median of the runs)")
    axes.set_title("startup: python -c pass, import engine, tidelog serve, the test fixture")
    return _png(figure)


def scale_plots(result: dict[str, Any]) -> list[tuple[str, bytes]]:
    """One plot per scenario of scale_bench that ran: delivery latency
    against the number of consumers (fanout), p99 before and during a
    replay burst (burst), produce and consume rates against the number of
    partitions (partitions), and manifest commit and start-up times
    against the history held (history)."""
    import matplotlib.pyplot as plt

    plots: list[tuple[str, bytes]] = []
    fanout = result.get("fanout")
    if isinstance(fanout, dict) and fanout.get("consumers"):
        counts = fanout["consumers"]
        curves = {
            f"{q} ms": [[n, fanout[f"n{n}"][f"{q}_ms"]] for n in counts] for q in ("p50", "p99")
        }
        if all(f"mock_n{n}" in fanout for n in counts):
            # The same clients against librdkafka's mock: what they cost alone.
            curves["mock p99 ms"] = [[n, fanout[f"mock_n{n}"]["p99_ms"]] for n in counts]
        title = f"fan-out: delivery time against consumers ({fanout['rate_mb_s']:g} MB/s in)"
        plots.append(("scale-fanout", plot_lines(title, curves, "consumers (log)", "ms", True)))
    burst = result.get("burst")
    if isinstance(burst, dict) and "tail_p99_ms_before" in burst:
        figure, axes = plt.subplots(figsize=(8, 3))
        labels = ["live produce p99", "tail consumers p99"]
        before = [burst["produce_p99_ms_before"], burst["tail_p99_ms_before"]]
        during = [burst["produce_p99_ms_during"], burst["tail_p99_ms_during"]]
        axes.barh([0.2, 1.2], before, height=0.4, label="before the replay", color="#2b7bba")
        axes.barh([-0.2, 0.8], during, height=0.4, label="during the replay", color="#e08214")
        axes.set_yticks([0, 1], labels)
        axes.invert_yaxis()
        axes.set_xlabel("ms")
        axes.set_title(
            f"replay burst of {burst['history_mib']} MiB: {burst['replay_vs_solo']:.2f}x "
            "its solo rate"
        )
        axes.legend(fontsize=8)
        plots.append(("scale-burst", _png(figure)))
    parts = result.get("partitions")
    if isinstance(parts, dict) and parts.get("produce_curve"):
        curves = {"produce (paced)": parts["produce_curve"], "consume": parts["consume_curve"]}
        plots.append(
            (
                "scale-partitions",
                plot_lines(
                    "partitions: MB/s against partitions of one topic",
                    curves,
                    "partitions (log)",
                    "MB/s",
                    True,
                ),
            )
        )
    held = result.get("history")
    if isinstance(held, dict) and held.get("commit_ms_curve"):
        figure, (commit, start) = plt.subplots(1, 2, figsize=(10, 3.5))
        for axes, key, xlabel, ylabel in (
            (commit, "commit_ms_curve", "objects in the manifest", "manifest commit, ms"),
            (start, "start_s_curve", "history, MiB", "server start, s"),
        ):
            points = held[key]
            axes.plot([p[0] for p in points], [p[1] for p in points], marker="o")
            axes.set_xscale("log")
            axes.set_xlabel(f"{xlabel} (log)")
            axes.set_ylabel(ylabel)
            axes.grid(True, alpha=0.3)
        commit.set_title("history: manifest commit")
        start.set_title("history: start-up")
        plots.append(("scale-history", _png(figure)))
    return plots


# -- the page ----------------------------------------------------------------------

STYLE = """body{font-family:sans-serif;max-width:64em;margin:2em auto;padding:0 1em}
table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #ccc;padding:2px 6px}
td.n{text-align:right;font-family:monospace}.failed{color:#b00}
pre{white-space:pre-wrap;font-size:0.8em;background:#f6f6f6;padding:0.5em}"""


def render(report: dict[str, Any], images: dict[str, bytes] | None = None) -> str:
    """The page; each plot also goes into ``images`` by name when given
    (latency, replay, startup, ratios-<benchmark>), for the PNG files."""

    def img(name: str, png: bytes) -> str:
        if images is not None:
            images[name] = png
        return _img(png)

    import matplotlib

    matplotlib.use("Agg")
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>tidelog benchmarks</title><style>{STYLE}</style></head><body>",
        f"<h1>tidelog benchmarks{' (quick)' if report['quick'] else ''}</h1>",
        f"<p>Run {html.escape(report['started'])}. Every ratio compares a figure with a",
        " baseline measured in the same run on this machine; compare ratios, not",
        " absolute figures from other machines.</p>",
        "<h2>Machine</h2>",
        _table(["fact", "value"], [[k, str(v)] for k, v in report["machine"].items()]),
    ]
    runs = report["benches"]
    failed = [run for run in runs if not run["ok"]]
    parts.append("<h2>Benchmarks run</h2>")
    parts.append(
        _table(
            ["benchmark", "command", "seconds", "outcome"],
            [
                [
                    r["name"],
                    " ".join(r["command"]),
                    f"{r['seconds']}",
                    "ok" if r["ok"] else "FAILED",
                ]
                for r in runs
            ],
        )
    )
    for run in failed:
        parts.append(f"<h3 class='failed'>{html.escape(run['name'])} failed</h3>")
        parts.append(f"<pre>{html.escape(run['error'])}</pre>")
    done = {run["name"]: run["result"] for run in runs if run["ok"]}
    cdfs: dict[str, list[list[float]]] = {}
    timelines: dict[str, list[list[float]]] = {}
    for name, result in done.items():
        cdfs.update({f"{name}.{k}": v for k, v in series(result, "latency_cdf_ms").items()})
        timelines.update({f"{name}.{k}": v for k, v in series(result, "_timeline").items()})
    if cdfs:
        parts += ["<h2>Latency</h2>", img("latency", latency_cdf(cdfs))]
    if timelines:
        parts += ["<h2>Replay rate over time</h2>", img("replay", replay_rate(timelines))]
    if "startup" in done:
        startup = startup_bars(done["startup"])
        if startup:
            parts += ["<h2>Startup</h2>", img("startup", startup)]
    if "scale" in done:
        drawn = scale_plots(done["scale"])
        if drawn:
            parts.append("<h2>Scale</h2>")
            parts += [img(name, png) for name, png in drawn]
    parts.append("<h2>Against the baselines</h2>")
    for name, result in done.items():
        plot = plot_ratios(name, ratios(flatten(result)))
        if plot:
            parts += [f"<h3>{html.escape(name)}</h3>", img(f"ratios-{name}", plot)]
    parts.append("<h2>Every figure</h2>")
    for name, result in done.items():
        figures = flatten(result)
        sides = {key: text for key, _, text in ratios(figures)}
        rows = [[key, f"{value:,.6g}", sides.get(key, "")] for key, value in figures.items()]
        parts += [f"<h3>{html.escape(name)}</h3>", _table(["figure", "value", "ratio of"], rows)]
    parts += [
        "<h2>The JSON</h2>",
        "<details><summary>report.json, as written beside this page</summary>",
        f"<pre id='report-data'>{html.escape(json.dumps(report, indent=1))}</pre></details>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = []
    for row in rows:
        cells = []
        for index, cell in enumerate(row):
            numeric = index == 1 and cell[:1].isdigit()
            cells.append(f"<td{' class=n' if numeric else ''}>{html.escape(cell)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


# -- main --------------------------------------------------------------------------


def build(benches: Sequence[Bench], quick: bool, timeout: float, out: Path) -> dict[str, Any]:
    """Runs ``benches`` one after another and writes report.json and
    report.html into ``out``; returns the report."""
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.gmtime()),
        "quick": quick,
        "machine": machine(Path(os.environ.get("TMPDIR", "/tmp"))),
        "benches": [],
    }
    for bench in benches:
        print(f"{bench.name}: running", file=sys.stderr, flush=True)
        run = run_bench(bench, quick, timeout)
        outcome = "ok" if run["ok"] else f"FAILED ({run['error'].splitlines()[0][:200]})"
        print(f"{bench.name}: {outcome} in {run['seconds']} s", file=sys.stderr, flush=True)
        report["benches"].append(run)
    write(report, out)
    return report


def write(report: dict[str, Any], out: Path) -> None:
    """report.json, report.html and each plot as <name>.png into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    images: dict[str, bytes] = {}
    (out / "report.html").write_text(render(report, images))
    for name, png in images.items():
        (out / f"{name}.png").write_bytes(png)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="every benchmark's --quick run")
    parser.add_argument("--out", type=Path, default=Path("bench-report"), help="where to write")
    parser.add_argument(
        "--only",
        action="append",
        choices=[bench.name for bench in BENCHES],
        help="run only this benchmark (repeatable)",
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per benchmark")
    parser.add_argument(
        "--from-json",
        type=Path,
        help="run nothing: draw the page again from a report.json written before",
    )
    args = parser.parse_args()
    if args.from_json is not None:
        write(json.loads(args.from_json.read_text()), args.out)
        print(f"wrote {args.out / 'report.html'}")
        return 0
    chosen = [b for b in BENCHES if args.only is None or b.name in args.only]
    report = build(chosen, args.quick, args.timeout, args.out)
    failed = [run["name"] for run in report["benches"] if not run["ok"]]
    print(
        f"wrote {args.out / 'report.html'}" + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
