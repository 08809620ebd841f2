"""How big the suite's long property runs are: big enough by default to find
what each is for in seconds on a 2-core CI machine, their long size with
``TIDELOG_LONG=1`` (docs/testing.md). Fault campaigns have their own switch,
``TIDELOG_FAULTS=full``."""

from __future__ import annotations

import os

from hypothesis import settings

LONG = os.environ.get("TIDELOG_LONG", "") not in ("", "0")


def sized(default: int, long: int) -> int:
    """``default``, or ``long`` with TIDELOG_LONG=1."""
    return long if LONG else default


def costly_under_ci(examples: int) -> settings:
    """The settings of a property whose examples cost tens of milliseconds:
    the profile's, but ``examples`` under ``TIDELOG_HYPOTHESIS=ci``
    (tests/run.sh's 500 a property), as tests/native/'s ``differential``
    does. ``default`` and ``thorough`` keep their counts; each use says
    what was planted to show the count finds what 500 finds."""
    if os.environ.get("TIDELOG_HYPOTHESIS") == "ci":
        return settings(max_examples=examples)
    return settings()
