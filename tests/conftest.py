"""Suite-wide settings: hypothesis profiles sized for a 2-core CI machine."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

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
