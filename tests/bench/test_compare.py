"""bench/compare.py's own rules: which numbers are figures, which options a
revision's script is given, and how rounds become medians and ratios."""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.bench.run import load_bench


def _load() -> ModuleType:
    return load_bench("compare.py", "bench_compare")


compare = _load()


def test_figures_are_the_numbers_of_nested_maps_by_dotted_path() -> None:
    report = {
        "produce_mb_s": 101.5,
        "records": 3,
        "targets": {"produce_vs_disk >= 0.5": True},
        "per_block": {"1MiB": 500, "note": "text"},
        "produce_mb_s_rounds": [99.0, 104.0],
        "missing": None,
    }
    assert compare.flatten(report) == {
        "produce_mb_s": 101.5,
        "records": 3.0,
        "per_block.1MiB": 500.0,
    }


def test_options_a_revision_does_not_list_are_left_out_with_their_values() -> None:
    help_text = "usage: x [-h] [--quick] [--json] [--mib MIB]\n  --mib MIB  data (--quick: 128)"
    supported = compare.supported_options(help_text)
    assert supported == {"--quick", "--json", "--mib"}
    args = ["--mib", "64", "--compressed-mb", "0", "--quick", "--rounds=2", "--json"]
    assert compare.keep_supported(args, supported) == (
        ["--mib", "64", "--quick", "--json"],
        ["--compressed-mb", "--rounds"],
    )


def test_a_benchmark_is_a_script_and_its_words() -> None:
    bench = compare.Bench.parse("engine_bench --records 20000 --dir '/tmp/a b'")
    assert (bench.script, bench.args, bench.name) == (
        "engine_bench.py",
        ("--records", "20000", "--dir", "/tmp/a b"),
        "engine_bench",
    )


def test_rounds_become_medians_spreads_and_pairwise_ratios() -> None:
    rounds = {
        "base": [{"rate": 100.0, "old": 1.0}, {"rate": 120.0, "old": 1.0}, {"rate": 110.0}],
        "mid": [{"rate": 100.0}, {"rate": 100.0}, {"rate": 100.0}],
        "head": [{"rate": 150.0}, {"rate": 120.0}, {"rate": 132.0}],
    }
    figures = compare.compare_rounds(rounds)
    assert list(figures) == ["rate"]  # "old" is not in every round of every revision
    rate = figures["rate"]
    assert rate["median"] == {"base": 110.0, "mid": 100.0, "head": 132.0}
    assert rate["spread"]["base"] == pytest.approx(20 / 110)
    assert rate["spread"]["mid"] == 0
    assert rate["ratio"] == pytest.approx(132 / 110)
    assert rate["rounds"] == {k: [r["rate"] for r in v] for k, v in rounds.items()}
    assert (rate["round_ratio_min"], rate["round_ratio_max"]) == pytest.approx((1.0, 1.5))
    base_to_mid, mid_to_head = rate["steps"]
    assert (base_to_mid["from"], base_to_mid["to"]) == ("base", "mid")
    assert base_to_mid["ratio"] == pytest.approx(100 / 110)
    assert mid_to_head["ratio"] == pytest.approx(1.32)
    assert (mid_to_head["round_ratio_min"], mid_to_head["round_ratio_max"]) == pytest.approx(
        (1.2, 1.5)
    )


def test_a_zero_baseline_has_no_ratio() -> None:
    figures = compare.compare_rounds({"base": [{"cores": 0.0}], "head": [{"cores": 0.5}]})
    assert figures["cores"]["ratio"] is None
    assert figures["cores"]["round_ratio_min"] is None
    assert figures["cores"]["spread"]["base"] is None


def test_a_report_is_read_whole_when_indented_and_from_its_last_line_after_logs() -> None:
    assert compare.json_report('{\n  "wal_mb_s_1k": 108.9,\n  "targets": {}\n}\n') == {
        "wal_mb_s_1k": 108.9,
        "targets": {},
    }
    assert compare.json_report('server up on 127.0.0.1:4000\n{"produce_mb_s": 420.5}\n') == {
        "produce_mb_s": 420.5
    }
    with pytest.raises(ValueError):
        compare.json_report("[1, 2]\n")
