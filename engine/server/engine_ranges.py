"""The [engine] table's ranges, checked when the config file is read: the
ranges EngineConfig, GroupConfig and TransactionConfig check when they are
made (engine/config_ranges.py), so a file and the embedded API refuse the
same values in the same words."""

from __future__ import annotations

from collections.abc import Mapping

from engine.config_ranges import ENGINE_TABLE_RANGES
from s3stream.ranges import check_range


def check_engine_ranges(settings: Mapping[str, object]) -> None:
    """Raises ConfigOutOfRange (a ValueError) naming the first key of
    ``settings`` outside its range (keys without one are left to their type
    check)."""
    for key, value in settings.items():
        accepted = ENGINE_TABLE_RANGES.get(key)
        if accepted is not None:
            check_range(key, value, accepted)
