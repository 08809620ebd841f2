"""The range a numeric setting takes, checked when its config is made.

One table of ranges per config dataclass, checked by its ``__post_init__``;
the config file's reader builds the same dataclasses (or checks its keys
against the same tables), so a setting is refused with the same words from
Python and from a file, and the docs' tables of ranges are checked against
these (docs/design/0132).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from s3stream.errors import ConfigOutOfRange

SECONDS_MAX = 365 * 24 * 3600.0
"""The longest interval in seconds: a year. Far past any cadence one would
choose, and short enough that a thread's timed wait can take it (Python
refuses a timeout past threading.TIMEOUT_MAX, and a NaN or infinite one
would never come round)."""

LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
"""The widest integer a setting takes: a Java long, Kafka's LONG config type."""


@dataclass(frozen=True)
class Range:
    """Accepted: ``least`` to ``most`` (both included; no ``most``, no
    bound above), and 0 besides when ``off``. ``integer`` settings take an
    int; the others a finite int or float."""

    least: float
    most: float | None = None
    integer: bool = True
    off: bool = False

    def accepts(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if isinstance(value, int):
            # math.isfinite and every float sum raise OverflowError past
            # float's range, and no setting means more than Kafka's widest
            # config type, a LONG (ConfigDef refuses an INT or LONG past it).
            if not LONG_MIN <= value <= LONG_MAX:
                return False
        elif not math.isfinite(value):  # a NaN passes every comparison below
            return False
        if self.off and value == 0:
            return True
        if value < self.least:
            return False
        return self.most is None or value <= self.most

    def describe(self) -> str:
        """The range in the words docs/server.md's and docs/engine.md's
        tables use (tests/server/test_config_doc.py reads them back)."""
        if self.most is not None:
            text = f"from {_number(self.least)} to {_number(self.most)}"
        else:
            text = f"{_number(self.least)} or more"
        if not self.integer and self.most is None:
            text += ", finite"
        return f"0 (off), or {text}" if self.off else text

    def phrase(self) -> str:
        """What an error says the setting must be."""
        kind = "a 64-bit integer" if self.integer else "a number"
        return f"{kind}, {self.describe()}"


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def check_range(setting: str, value: object, accepted: Range) -> None:
    """Raises ConfigOutOfRange when ``value`` is outside ``accepted``."""
    if not accepted.accepts(value):
        raise ConfigOutOfRange(setting, value, accepted.phrase())


def check_ranges(config: object, ranges: Mapping[str, Range]) -> None:
    """Checks each of ``config``'s attributes named in ``ranges``."""
    for setting, accepted in ranges.items():
        check_range(setting, getattr(config, setting), accepted)


_ORDERED = {
    "at least": lambda value, other: value >= other,
    "at most": lambda value, other: value <= other,
    "below": lambda value, other: value < other,
}


def check_order(config: object, order: tuple[tuple[str, str, str], ...]) -> None:
    """Raises ConfigOutOfRange naming the first setting out of ``order``
    with the setting it is ordered against (``check_ranges`` first: these
    compare numbers already in range)."""
    for setting, relation, other in order:
        value, bound = getattr(config, setting), getattr(config, other)
        if not _ORDERED[relation](value, bound):
            raise ConfigOutOfRange(setting, value, f"{relation} {other} ({bound})")


def at_least(least: float, *, integer: bool = True, most: float | None = None) -> Range:
    return Range(least=least, most=most, integer=integer)


def seconds(least: float = 0.001) -> Range:
    """An interval in seconds: at least a millisecond unless told (a zero
    one would spin its thread), at most SECONDS_MAX."""
    return Range(least=least, most=SECONDS_MAX, integer=False)
