"""A state snapshot too large for one append, written as a run of parts.

The snapshot's packed bytes are cut into slices, each appended as a msgpack
map of its own: the writer's fields (a version older readers refuse, the
position the snapshot describes), the part's place and the run's length,
and the slice. A reader joins a run only when every part of it came, in
order, at consecutive places: a run cut short by a crash or a refused
append is never read as a snapshot. The partition checkpoint's format
(docs/engine-format.md, "Checkpoints in parts") is the first user; nothing
here knows what the snapshot holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack

from s3stream import check_fits

PART = "part"
PARTS = "parts"
CHUNK = "chunk"

_WIDEST_PLACE = 2**32 - 1
"""The framing is sized with places this wide (msgpack's widest before
64 bits), so a slice's size never depends on how many parts there are."""


def framing_bytes(fields: Mapping[str, Any]) -> int:
    """The bytes a part takes beyond its slice, at most."""
    widest = {**fields, PART: _WIDEST_PLACE, PARTS: _WIDEST_PLACE, CHUNK: b""}
    empty = len(msgpack.packb(widest, use_bin_type=True))
    # An empty bin is 2 bytes of header; a slice past 64 KiB takes bin 32's 5.
    return empty + 3


def split(stream_id: int, payload: bytes, limit: int, fields: Mapping[str, Any]) -> list[bytes]:
    """``payload`` as parts, each within ``limit`` with its framing (checked
    with s3stream.check_fits before any is returned, so a writer appends
    none when one would be refused); at least two parts."""
    room = limit - framing_bytes(fields)
    if room <= 0:
        # Not even one byte of the snapshot fits beside the framing.
        check_fits(stream_id, [payload], limit)
        room = 1
    count = max(2, -(-len(payload) // room))
    room = -(-len(payload) // count)
    parts = [
        msgpack.packb(
            {
                **fields,
                PART: place,
                PARTS: count,
                CHUNK: payload[place * room : (place + 1) * room],
            },
            use_bin_type=True,
        )
        for place in range(count)
    ]
    check_fits(stream_id, parts, limit)
    return parts


class Run:
    """The parts read so far of the run being read, and what joins them."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._key: tuple[Any, ...] = ()

    def drop(self) -> None:
        """Something other than a part came: a run being read never ends."""
        self._chunks = []

    def add(self, part: Mapping[str, Any]) -> bytes | None:
        """Takes the next part read; returns the snapshot's bytes when it
        completes a run, else None. A part out of place ends the run being
        read (part 0 starts a new one)."""
        place, count, chunk = part[PART], part[PARTS], part[CHUNK]
        key = tuple(sorted((k, v) for k, v in part.items() if k not in (PART, CHUNK)))
        if place == 0:
            self._chunks, self._key = [], key
        elif place != len(self._chunks) or key != self._key:
            self._chunks = []
            return None
        self._chunks.append(bytes(chunk))
        if len(self._chunks) < count:
            return None
        joined = b"".join(self._chunks)
        self._chunks = []
        return joined
