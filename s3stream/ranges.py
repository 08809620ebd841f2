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

INT_MAX = 2**31 - 1
"""The most of a Java int, Kafka's INT config type: the bound of a size or
count Kafka's broker holds in an INT (segment.bytes, socket.request.max.bytes,
fetch.max.bytes, num.partitions), and of a length or count its protocol
carries in an int32 field."""

UINT32_MAX = 2**32 - 1
"""The most an unsigned 32-bit length field holds (a block's size in an
object's index, a WAL record's length)."""

ADDRESS_SPACE_BYTES = 2**47
"""The user address space of a 64-bit Linux process (128 TiB with the
4-level page tables x86-64 and arm64 use by default): a budget of memory
past it cannot be held, whatever the machine."""

THREADS_MAX = 2**22
"""Linux's PID_MAX_LIMIT: no more threads than this can run in one system,
so a pool asked for more cannot be."""

PORT_MAX = 65535
"""The most a TCP port number holds (16 bits)."""


@dataclass(frozen=True)
class Range:
    """Accepted: ``least`` to ``most`` (both included, ``least`` excluded
    when ``above``; no ``most``, no bound above), 0 besides when ``off``, and
    None besides when ``optional`` (a field whose None means "the default
    derived from another"). ``integer`` settings take an int; the others a
    finite int or float."""

    least: float
    most: float | None = None
    integer: bool = True
    off: bool = False
    above: bool = False
    optional: bool = False

    def accepts(self, value: object) -> bool:
        if value is None:
            return self.optional
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
        if value < self.least or (self.above and value == self.least):
            return False
        return self.most is None or value <= self.most

    def describe(self) -> str:
        """The range in the words docs/server.md's and docs/engine.md's
        tables use (tests/server/test_config_doc.py reads them back)."""
        if self.above:
            text = f"above {_number(self.least)}"
            if self.most is not None:
                text += f", at most {_number(self.most)}"
        elif self.most is not None:
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


@dataclass(frozen=True)
class Text:
    """A string setting's kind: any string (not "" when ``nonempty``), or,
    with ``choices``, one of them (a choice: one of a set); None besides
    when ``optional`` (a path or a name that may be left unset). A value of
    another type, a number or a list a file gives, is refused in the same
    words as a string out of its set. ``any_case``: a choice matched in
    any case, as Kafka reads the setting; ``secret``: a refusal names the
    value's type, never the value.

    ``listed``: a list of such names, none empty (Kafka's LIST type), given
    as a list or tuple or as one string of them split at ``separator``
    (Kafka's comma, or super.users' semicolon), and kept as a tuple;
    ``nonempty`` then asks for one name at least, and with ``choices``
    each is named once (:meth:`repeated`). ``table``: a table of strings
    by string (a client's properties)."""

    choices: tuple[str, ...] = ()
    nonempty: bool = False
    optional: bool = False
    any_case: bool = False
    secret: bool = False
    listed: bool = False
    separator: str = ","
    table: bool = False

    def accepts(self, value: object) -> bool:
        if value is None:
            return self.optional
        if self.table:
            return isinstance(value, dict) and all(
                isinstance(key, str) and isinstance(item, str) for key, item in value.items()
            )
        if self.listed:
            names = self.names_of(value)
            return (
                names is not None
                and all(map(self._accepts_one, names))
                and (bool(names) or not self.nonempty)
                and self.repeated(value) is None
            )
        return self._accepts_one(value)

    def repeated(self, value: object) -> str | None:
        """The first choice a listed setting names twice (``uniform,uniform``,
        in any case when ``any_case``), or None. A list of choices names a
        set, in order of preference: one named again says nothing more and
        is most likely a slip (another name meant in its place), shown
        rather than dropped. Kafka refuses a repeat in
        ``group.consumer.assignors`` (GroupCoordinatorConfig's
        ``ConfigDef.ValidList.anyNonDuplicateValues``, KIP-1161: "values
        must not be duplicated"); its ``sasl.enabled.mechanisms`` is defined
        with no validator and takes one, which this refuses all the same:
        the slip is as likely there. Lists of free names (super users,
        audiences) may repeat one harmlessly and are left as given."""
        if not (self.listed and self.choices):
            return None
        seen: set[str] = set()
        for name in self.names_of(value) or ():
            key = name.lower() if self.any_case else name
            if key in seen:
                return name
            seen.add(key)
        return None

    def _accepts_one(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        if self.choices:
            return (value.lower() if self.any_case else value) in self.choices
        return bool(value) or not (self.nonempty or self.listed)

    def names_of(self, value: object) -> tuple[str, ...] | None:
        """A listed setting's names: a string split at the separator (its
        names stripped, empty ones dropped, as Kafka's ConfigDef parses a
        LIST), a list or tuple of strings as it is; None for anything else."""
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(self.separator) if name.strip())
        if isinstance(value, list | tuple) and all(isinstance(name, str) for name in value):
            return tuple(value)
        return None

    def phrase(self) -> str:
        """What an error says the setting must be."""
        if self.table:
            text = "a table of strings"
        elif self.listed:
            some = "one or more" if self.nonempty else "any"
            text = f"a list of {some} of " + ", ".join(self.choices) if self.choices else ""
            text = text or ("a list of one or more names" if self.nonempty else "a list of names")
        elif self.choices:
            text = "one of " + ", ".join(choice or '""' for choice in self.choices)
        else:
            text = "a non-empty string" if self.nonempty else "a string"
        return f"{text}, or unset" if self.optional else text


def choice(*choices: str) -> Text:
    """A setting that is one of ``choices`` (named as durability's is; "" as ``""``)."""
    return Text(choices=choices)


class _Withheld(str):
    """A secret's stand-in in a refusal: its type, never its bytes."""

    def __repr__(self) -> str:
        return f"a {self} (not shown)"


def check_text(setting: str, value: object, accepted: Text) -> None:
    """Raises ConfigOutOfRange when ``value`` is not of ``accepted``."""
    if not accepted.accepts(value):
        shown = _Withheld(type(value).__name__) if accepted.secret else value
        phrase = accepted.phrase()
        twice = accepted.repeated(value)
        if twice is not None:
            phrase = f"{phrase}, each named once ({twice!r} is named twice)"
        raise ConfigOutOfRange(setting, shown, phrase)


def check_texts(config: object, texts: Mapping[str, Text]) -> None:
    """Checks each of ``config``'s attributes named in ``texts``, and keeps
    a listed one as the tuple of its names (a frozen dataclass's field set
    as its ``__post_init__`` may)."""
    for setting, accepted in texts.items():
        value = getattr(config, setting)
        check_text(setting, value, accepted)
        if accepted.listed and value is not None:
            object.__setattr__(config, setting, accepted.names_of(value))


def check_flags(config: object, flags: tuple[str, ...]) -> None:
    """Raises ConfigOutOfRange for the first of ``config``'s attributes
    named in ``flags`` that is not a bool (a string "false" is true to
    Python, and 0 or 1 is no answer a file means)."""
    for flag in flags:
        value = getattr(config, flag)
        if not isinstance(value, bool):
            raise ConfigOutOfRange(flag, value, "true or false")


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


def at_least(
    least: float, *, integer: bool = True, most: float | None = None, optional: bool = False
) -> Range:
    return Range(least=least, most=most, integer=integer, optional=optional)


def count(least: int, most: int = INT_MAX) -> Range:
    """A size or count Kafka holds in an INT (or a protocol in an int32),
    unless told otherwise."""
    return Range(least=least, most=most)


def memory(least: int) -> Range:
    """A budget of bytes held in memory: at most the address space."""
    return Range(least=least, most=ADDRESS_SPACE_BYTES)


def seconds(least: float = 0.001) -> Range:
    """An interval in seconds: at least a millisecond unless told (a zero
    one would spin its thread), at most SECONDS_MAX."""
    return Range(least=least, most=SECONDS_MAX, integer=False)
