"""tests/xdist_scheduling.py: under ``-n N --dist loadfile`` a test module
runs whole in one worker, and the known longest modules are handed out first."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.xdist_scheduling import LONGEST_FIRST, in_running_order

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]


def test_the_longest_modules_go_first_then_the_largest() -> None:
    longest, second = LONGEST_FIRST[:2]
    units = {
        "tests/small.py": [1],
        second: [1],
        "tests/large.py": [1, 2, 3],
        longest: [1],
        "tests/also_small.py": [1],
    }
    assert in_running_order(units) == [
        longest,
        second,
        "tests/large.py",
        "tests/small.py",
        "tests/also_small.py",
    ]


RECORD_WORKER = """
import json, os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def record_worker(request):
    yield
    line = {"test": request.node.nodeid, "worker": os.environ["PYTEST_XDIST_WORKER"]}
    with Path(__file__).parent.joinpath("ran.jsonl").open("a") as ran:
        ran.write(json.dumps(line) + "\\n")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    from tests.xdist_scheduling import ModuleScheduling

    return ModuleScheduling(config, log)
"""


def test_two_workers_run_each_module_whole_and_the_longest_first(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(RECORD_WORKER)
    sizes = {"tests/test_one.py": 1, "tests/test_six.py": 6, "tests/test_three.py": 3}
    sizes[LONGEST_FIRST[0]] = 2
    for path, size in sizes.items():
        module = pytester.path / path
        module.parent.mkdir(parents=True, exist_ok=True)
        module.write_text("\n".join(f"def test_{i}(): pass" for i in range(size)) + "\n")
    # The session runs in a child: this checkout must be on its path for the
    # conftest to import tests.xdist_scheduling (CI sets no PYTHONPATH).
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), path])))
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "loadfile")
    result.assert_outcomes(passed=sum(sizes.values()))

    ran = [json.loads(line) for line in (pytester.path / "ran.jsonl").read_text().splitlines()]
    modules_of: dict[str, list[str]] = {}  # worker -> the modules it ran, in turn
    for entry in ran:
        module = entry["test"].split("::")[0]
        turns = modules_of.setdefault(entry["worker"], [])
        if not turns or turns[-1] != module:
            turns.append(module)
    assert len(modules_of) == 2, "both workers took a share"
    every_turn = [module for turns in modules_of.values() for module in turns]
    assert sorted(every_turn) == sorted(sizes), "a module was split between workers"
    order = [LONGEST_FIRST[0], "tests/test_six.py", "tests/test_three.py", "tests/test_one.py"]
    assert LONGEST_FIRST[0] in [turns[0] for turns in modules_of.values()]
    for turns in modules_of.values():
        assert turns == [module for module in order if module in turns]
