"""A state snapshot too large for one append, cut into parts that each fit
one, and joined again by a reader that takes them only whole and in order.

Bytes, not values, are cut: the snapshot's packed bytes, from ``index``
times the piece size on, so a snapshot of any size has parts that fit,
whatever one value in it weighs. What a part record looks like is its
writer's, given here as a ``Pack`` (the catalog's arrays,
docs/engine-format.md "Snapshots in parts"; the partition checkpoint's
maps, "Checkpoints in parts"); so is what opens a run and what its joined
bytes mean. Nothing here knows what a snapshot holds.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from s3stream import AppendTooLarge, check_fits

Pack = Callable[[int, int, bytes | memoryview], bytes]
"""A writer's part record: part ``index`` of ``count``, holding ``piece``."""

_LARGEST_COUNT = 2**32 - 1
"""Index and count are sized at msgpack's uint32, its widest before 64
bits, so a part's room never depends on how many there are (past it,
check_fits refuses them)."""
_BIN_HEADER_GROWTH = 5 - 2
"""An empty piece packs as bin8 (2 bytes of header), a large one as bin32 (5)."""


def framing(pack: Pack) -> int:
    """The bytes a part packed by ``pack`` takes beyond its piece, at most."""
    return len(pack(_LARGEST_COUNT, _LARGEST_COUNT, b"")) + _BIN_HEADER_GROWTH


def cut(
    stream_id: int, body: bytes | bytearray, limit: int, pack: Pack, least: int = 1
) -> list[bytes]:
    """``body`` as at least ``least`` parts packed by ``pack``, each a
    record of at most ``limit`` bytes: every piece as large as fits, the
    last holding what is left. All are checked with check_fits before any
    is returned, so a writer appends none when one would be refused;
    AppendTooLarge for a ``limit`` with no room past a part's framing."""
    most = framing(pack)
    if limit <= most:  # no room for one byte of the snapshot
        raise AppendTooLarge(stream_id, most + 1, limit)
    piece = limit - most
    count = max(least, -(-len(body) // piece))
    view = memoryview(body)  # a piece is packed from the body, never copied first
    records = [
        pack(index, count, view[index * piece : (index + 1) * piece]) for index in range(count)
    ]
    check_fits(stream_id, records, limit)
    return records


class Join:
    """Joins the parts of one snapshot as a reader reads them in order.

    ``begin`` where the writer's format opens a run; ``take`` each part;
    ``end`` for anything else read. A snapshot is taken only with all its
    parts in order, each naming the same count and key, and nothing
    between them: anything else ends the run unread, so parts a writer
    never finished are skipped. Holds only the bytes read, never a size a
    part names."""

    def __init__(self) -> None:
        self._pieces: list[bytes] | None = None
        self._count = 0
        self._key: Hashable = None
        self.joined = 0
        """How many snapshots were taken whole."""

    def begin(self, key: Hashable = None) -> None:
        """Starts a run of parts that each name ``key`` (dropping any run
        being read)."""
        self._pieces, self._count, self._key = [], 0, key

    def end(self) -> None:
        self._pieces = None

    def take(
        self, index: object, count: object, piece: object, key: Hashable = None
    ) -> bytes | None:
        """The joined bytes once this part was the run's last; None before
        it, or when it is not the part that comes next (the run ends
        unread). A part whose index, count or piece is of another type is
        damage: ValueError."""
        if not (isinstance(index, int) and isinstance(count, int) and isinstance(piece, bytes)):
            raise ValueError(
                f"a part is not index, count, bytes: {index!r:.20}, {count!r:.20}, {piece!r:.40}"
            )
        pieces = self._pieces
        if (
            pieces is None
            or index != len(pieces)
            or index >= count
            or key != self._key
            or (pieces and count != self._count)
        ):
            self._pieces = None
            return None
        pieces.append(piece)
        self._count = count
        if index < count - 1:
            return None
        self._pieces = None
        self.joined += 1
        return b"".join(pieces)
