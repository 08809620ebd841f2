"""Suite-wide settings: hypothesis profiles sized for a 2-core CI machine, and
the ``native_twin`` mark on the tests the pure-Python pass runs
(tests/native_twin.py)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from tests.native_twin import given_the_c_extension, in_pure_pass

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        if in_pure_pass(item.nodeid) and not given_the_c_extension(params):
            item.add_marker(pytest.mark.native_twin)
