"""How big the suite's long property runs are: big enough by default to find
what each is for in seconds on a 2-core CI machine, their long size with
``TIDELOG_LONG=1`` (docs/testing.md). Fault campaigns have their own switch,
``TIDELOG_FAULTS=full``."""

from __future__ import annotations

import os

LONG = os.environ.get("TIDELOG_LONG", "") not in ("", "0")


def sized(default: int, long: int) -> int:
    """``default``, or ``long`` with TIDELOG_LONG=1."""
    return long if LONG else default
