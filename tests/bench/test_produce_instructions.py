"""bench/produce_instructions.py: its reading of callgrind's format, and the
quick pass run as people run it where valgrind is installed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.bench.run import load_bench, run_bench

costs = load_bench("_callgrind_costs.py", "bench_callgrind_costs")

# A dump as callgrind writes one (names given at first use, as a caller or a
# callee, then by number; a call's cost line follows its calls= line and is
# the callee's, not the caller's).
DUMP = """# callgrind format
version: 1
creator: callgrind-3.19.0
thread: 1
positions: line
events: Ir
summary: 1000

ob=(1) /lib/python
fl=(1) ceval.c
fn=(1) _PyEval_EvalFrameDefault
10 300
cfl=(2) crc32c.c
cfn=(2) update_sse42
calls=2 5
11 500
12 20

fl=(2)
fn=(2)
5 480
+1 20
cfn=(3) epoll_pwait
calls=1 0
6 0

fn=(3)
0 0
fn=(4) py_validate_batches
1 40
fn=(1)
13 180
cfn=(2)
calls=3 5
14 7
cfn=(4)
calls=9 1
15 360
"""


def test_costs_are_exclusive_and_names_are_read_back(tmp_path: Path) -> None:
    dump = tmp_path / "cg.out.1.1-01"
    dump.write_text(DUMP)
    summary, exclusive = costs.costs(dump)
    assert summary == 1000
    # The calls' own lines (500 and 7) belong to update_sse42's inclusive cost.
    assert exclusive == {
        "_PyEval_EvalFrameDefault": 500,
        "update_sse42": 500,
        "epoll_pwait": 0,
        "py_validate_batches": 40,
    }
    assert costs.call_count(dump, "update_sse42") == 5
    # Named where it first ran, then called by number only.
    assert costs.call_count(dump, "py_validate_batches") == 9
    assert costs.call_count(dump, "epoll_pwait") == 1
    assert costs.calls(dump, "epoll_pwait") and costs.calls(dump, "update_")
    assert not costs.calls(dump, "pwritev2")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_the_quick_pass_counts_the_loop_per_request() -> None:
    report = json.loads(run_bench("produce_instructions.py", "--quick", "--json", timeout=600))
    (span,) = report["spans"]
    assert report["mb"] == 8
    assert span["produce_requests"] >= 1
    assert span["threads_ir_per_mib"]["loop"] == span["loop_ir_per_mib"] > 0
    per_request = span["loop_ir_per_mib"] * 8 / span["produce_requests"]
    assert span["loop_ir_per_request"] == pytest.approx(per_request, rel=1e-4)
    assert "tl_walk_records" in span["functions_ir_per_mib"]["loop"]
