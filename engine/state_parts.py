"""A state's snapshot in parts: its packed bytes cut into records that each
fit in one append, and joined again by a reader that takes them only whole.

A part is the msgpack array ``[kind, index, count, piece]``: ``piece`` the
bytes of the snapshot from ``index`` times the piece size on. Bytes, not
values, are cut, so a snapshot of any size has parts that fit, whatever one
value in it weighs. What opens a snapshot in parts, and what its joined
bytes mean, is its writer's (the catalog's, docs/engine-format.md,
"Snapshots in parts").
"""

from __future__ import annotations

from typing import Any

import msgpack

from s3stream import AppendTooLarge, check_fits

_LARGEST_COUNT = 2**32 - 1
"""Index and count are counted at msgpack's uint32 size, so a part's room
never depends on how many there are (past it, check_fits refuses them)."""
_BIN_HEADER_GROWTH = 5 - 2
"""An empty piece packs as bin8 (2 bytes of header), a large one as bin32 (5)."""


def part_framing(kind: str) -> int:
    """The bytes a part of ``kind`` takes beyond its piece, at most."""
    empty = msgpack.packb([kind, _LARGEST_COUNT, _LARGEST_COUNT, b""], use_bin_type=True)
    return len(empty) + _BIN_HEADER_GROWTH


def part_records(stream_id: int, kind: str, body: bytes, limit: int) -> list[bytes]:
    """``body`` as parts of ``kind``, each a record of at most ``limit``
    bytes (checked with check_fits); AppendTooLarge for a ``limit`` with
    no room past a part's framing, before anything is appended."""
    framing = part_framing(kind)
    if limit <= framing:  # no room for one byte of the snapshot
        raise AppendTooLarge(stream_id, framing + 1, limit)
    piece = limit - framing
    count = max(1, -(-len(body) // piece))
    view = memoryview(body)
    records = [
        msgpack.packb(
            [kind, index, count, view[index * piece : (index + 1) * piece]], use_bin_type=True
        )
        for index in range(count)
    ]
    check_fits(stream_id, records, limit)
    return records


class JoinedParts:
    """Joins the parts of one snapshot as a reader reads them in order.

    ``begin`` when its opening record is read; ``take`` each part; ``end``
    for any other record. A snapshot is taken only with all its parts in
    order and nothing between them: anything else ends it unread, so parts
    a writer never finished are skipped. Holds only the bytes read, never
    a size a part names."""

    def __init__(self) -> None:
        self._pieces: list[bytes] | None = None
        self._count = 0
        self.joined = 0
        """How many snapshots were taken whole."""

    def begin(self) -> None:
        self._pieces, self._count = [], 0

    def end(self) -> None:
        self._pieces = None

    def take(self, record: list[Any]) -> bytes | None:
        """The joined bytes once ``record`` was the last part; None before
        it, or when the record is not the part that comes next (the
        snapshot ends unread). A part of any other shape is damage:
        ValueError."""
        if len(record) != 4:
            raise ValueError(f"a {record[0]} record holds {len(record) - 1} fields, not 3")
        _, index, count, piece = record
        if not (isinstance(index, int) and isinstance(count, int) and isinstance(piece, bytes)):
            raise ValueError(f"a {record[0]} record is not [index, count, bytes]: {record!r:.200}")
        pieces = self._pieces
        in_turn = (
            pieces is not None
            and index == len(pieces)
            and index < count
            and (not pieces or count == self._count)
        )
        if pieces is None or not in_turn:
            self._pieces = None
            return None
        pieces.append(piece)
        self._count = count
        if index < count - 1:
            return None
        self._pieces = None
        self.joined += 1
        return b"".join(pieces)
