"""Reading an id the manifest keeps for an enum member (a range's chain
algorithm, an object's kind): the member itself or an exact int naming one.

A bool or a float equal to an id is no id: msgpack gives an int for every
id a writer wrote, so anything else is a damaged record, refused where it
is read rather than as a KeyError where the member is first looked up."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping


def known_id(
    members: Mapping[int, enum.IntEnum], found: object, unknown: Callable[[object], Exception]
) -> int:
    """``found``'s id if it is one of ``members`` or an int naming one;
    anything else raises ``unknown(found)``, the caller's typed error."""
    if type(found) is int and found in members:
        return found
    if isinstance(found, enum.IntEnum) and members.get(found.value) is found:
        return found.value
    raise unknown(found)
