"""bench/report.py: benchmarks run as children, their JSON kept, one HTML
page with the plots inline; a benchmark that fails loses only itself."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.bench.run import load_bench, run_bench

PNG = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _load() -> ModuleType:
    return load_bench("report.py", "bench_report")


def _embedded(page: str) -> dict[str, Any]:
    match = re.search(r"<pre id='report-data'>(.*?)</pre>", page, re.S)
    assert match is not None
    value = json.loads(html.unescape(match.group(1)))
    assert isinstance(value, dict)
    return value


def _pngs(page: str) -> list[bytes]:
    images = [base64.b64decode(encoded) for encoded in PNG.findall(page)]
    assert all(image.startswith(b"\x89PNG\r\n\x1a\n") for image in images)
    return images


def test_two_benches_make_a_page_with_their_plots_and_json(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_bench("report.py", "--quick", "--only", "acl", "--only", "startup", "--out", str(out))
    page = (out / "report.html").read_text()
    written = json.loads((out / "report.json").read_text())
    assert _embedded(page) == written
    assert [run["name"] for run in written["benches"]] == ["acl", "startup"]
    assert all(run["ok"] for run in written["benches"])
    acl = written["benches"][0]["result"]
    assert acl["acl_vs_scan"] > 0
    assert written["machine"]["cpu_count"] >= 1 and written["machine"]["python"]
    # acl's ratios, and startup's ratios and its own bars: three plots at least.
    assert len(_pngs(page)) >= 3
    assert "<h2>Startup</h2>" in page
    assert "acl_per_s" in page  # the table names both sides of acl_vs_scan
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    files = {path.name: path.read_bytes() for path in out.glob("*.png")}
    assert {"startup.png", "ratios-acl.png", "ratios-startup.png"} <= set(files)
    assert sorted(files.values()) == sorted(_pngs(page))
    # The page drawn again from its JSON, running nothing, holds the same plots.
    again = tmp_path / "again"
    run_bench("report.py", "--from-json", str(out / "report.json"), "--out", str(again))
    assert len(_pngs((again / "report.html").read_text())) == len(files)
    assert json.loads((again / "report.json").read_text()) == written


def test_a_failing_bench_is_reported_and_the_others_kept(tmp_path: Path) -> None:
    report = _load()
    benches = [
        report.Bench("missing", "no_such_bench.py", ()),
        # acl at a tenth of its quick size: the page only needs its figures.
        report.Bench("acl", "acl_bench.py", ("--acls", "100", "--calls", "2000")),
    ]
    built = report.build(benches, True, 120.0, tmp_path)
    missing, acl = built["benches"]
    assert not missing["ok"] and "exit status" in missing["error"]
    assert acl["ok"] and acl["result"]["acl_per_s"] > 0
    page = (tmp_path / "report.html").read_text()
    assert "missing failed" in page and "no_such_bench.py" in page
    assert _embedded(page)["benches"][1]["result"] == acl["result"]


def test_latency_cdfs_and_replay_timelines_are_plotted(tmp_path: Path) -> None:
    report = _load()
    cdf = [[q / 100, 1.0 + q / 10] for q in range(101)]
    timeline = [[0.0, 0.0], [0.5, 40.0], [1.0, 100.0]]
    built = {
        "started": "now",
        "quick": True,
        "machine": {"cpu_count": 2},
        "benches": [
            {"name": "kafka", "command": [], "ok": True, "seconds": 1, "result": {
                "produce_vs_disk": 0.8, "produce_mb_s": 80.0, "disk_mb_s": 100.0,
                "latency_cdf_ms": cdf, "remote_latency_cdf_ms": cdf,
            }},
            {"name": "replay", "command": [], "ok": True, "seconds": 1, "result": {
                "replay_timeline_file": timeline, "replay_mb_s_file": 100.0,
            }},
        ],
    }  # fmt: skip
    page = report.render(built)
    assert "<h2>Latency</h2>" in page and "<h2>Replay rate over time</h2>" in page
    assert "produce_mb_s 80 vs disk_mb_s 100" in page
    assert len(_pngs(page)) == 3  # the CDFs, the replay rate, kafka's ratios
    assert report.series(built["benches"][0]["result"], "latency_cdf_ms") == {
        "latency_cdf_ms": cdf,
        "remote_latency_cdf_ms": cdf,
    }


def test_a_ratio_is_shown_beside_the_two_figures_it_divides() -> None:
    report = _load()
    figures = {
        "produce_mb_s": 124.0,
        "mock_produce_mb_s": 163.0,
        "produce_vs_mock": 0.761,
        "remote_mb_s": 37.6,
        "remote_local_mb_s": 196.1,
        "remote_vs_local_mb_s": 0.192,
        "python_pass_s": 0.032,
        "import_engine_s": 0.1228,
        "import_engine_vs_pass": 3.8375,
        "append_mb_s_file": 188.8,
        "wal_mb_s_file": 203.8,
        "append_vs_wal_file": 0.926,
        "none.stamp_mb_s": 317.0,
        "none.none_mb_s": 437.5,
        "none.stamp_vs_none": 0.725,
        # Named alike, but these two figures do not give this ratio.
        "lookup_s": 1.0,
        "scan_s": 1.0,
        "scan_vs_lookup": 4.3,
        "crc_vs_pkg": 0.94,
    }
    sides = {key: text for key, _, text in report.ratios(figures)}
    assert sides == {
        "produce_vs_mock": "produce_mb_s 124 vs mock_produce_mb_s 163",
        "remote_vs_local_mb_s": "remote_mb_s 37.6 vs remote_local_mb_s 196.1",
        "import_engine_vs_pass": "import_engine_s 0.1228 vs python_pass_s 0.032",
        "append_vs_wal_file": "append_mb_s_file 188.8 vs wal_mb_s_file 203.8",
        "none.stamp_vs_none": "stamp_mb_s 317 vs none_mb_s 437.5",
        "scan_vs_lookup": "",
        "crc_vs_pkg": "",
    }


def test_the_benchmarks_doc_names_every_bench_the_report_runs() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "benchmarks.md").read_text()
    listed = re.search(r"`--only NAME` \(repeatable: (.*?)\) runs only those", doc, re.S)
    assert listed is not None
    assert re.findall(r"`(\w+)`", listed.group(1)) == [bench.name for bench in _load().BENCHES]
