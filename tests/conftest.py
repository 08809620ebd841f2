"""Suite-wide settings: hypothesis profiles sized for a 2-core CI machine, the
``native_twin`` mark on the tests the pure-Python pass runs
(tests/native_twin.py), tests/child_site first on the PYTHONPATH of every
process the tests start, and, under ``--dist loadfile``, the order in which
pytest-xdist hands its workers the test modules (tests/xdist_scheduling.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.native_twin import given_the_c_extension, in_pure_pass, tests_the_c_extension

settings.register_profile(
    "default",
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow],
)
# tests/run.sh uses "ci": the suite is quick, so CI spends its time finding
# rare cases. `TIDELOG_HYPOTHESIS=thorough` is for a longer hunt by hand.
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=500,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=2000,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("TIDELOG_HYPOTHESIS", "default"))
# A test's own suppress_health_check replaces the profile's list, not adds
# to it: one that names another check names too_slow as well, or a loaded
# machine's slow draws fail it.

# Children (servers, child engines, CLI runs, benchmarks) inherit this
# process's environment: tests/child_site/sitecustomize.py keeps hypothesis
# out of them, as it is out of an installed tidelog.
CHILD_SITE = Path(__file__).resolve().parent / "child_site"
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(CHILD_SITE), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        if (
            in_pure_pass(item.nodeid)
            and not given_the_c_extension(params)
            and not tests_the_c_extension(mark.name for mark in item.iter_markers())
        ):
            item.add_marker(pytest.mark.native_twin)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    if config.getvalue("dist") != "loadfile":
        return None
    from tests.xdist_scheduling import ModuleScheduling

    return ModuleScheduling(config, log)  # type: ignore[arg-type]
