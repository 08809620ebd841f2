"""Which streams and objects a line of manifest states changed, so a
checkpoint repacks only those (checkpoint_encoding.py, docs/design/0150).

Each state records, in a ``Changes`` of its own, the streams and objects
its operations touched, linked to the record of the state it was copied
from: the commits between two checkpoints make a chain, and what changed
since the last checkpoint is the union of the records from the newest
state back to the one that checkpoint encoded (``since``). Sealing a
record at a checkpoint cuts the chain above it, so the records kept are
those of the commits since the last checkpoint: sets of ids, no maps.
"""

from __future__ import annotations

LONGEST_CHAIN = 512
"""The most records a chain keeps: ``checkpoint_every`` has no upper
bound, and without one a writer configured to checkpoint seldom kept a
record (a set of the streams a commit touched) for every commit since
its last checkpoint. A longer chain is cut, and the next checkpoint
packs every stream, as the first after an open does."""


class Changes:
    """The streams and objects one state's operations touched."""

    __slots__ = ("depth", "objects", "parent", "sealed", "streams")

    def __init__(self, parent: Changes | None, streams: set[int]) -> None:
        if parent is not None and parent.depth >= LONGEST_CHAIN:
            parent = None
        self.parent = parent
        """The record of the state this one was copied from (None: unknown)."""
        self.depth: int = 0 if parent is None else parent.depth + 1
        """How many records lie above this one in the chain."""
        self.streams = streams
        """The streams created, changed or deleted: the state's own set of
        the streams it copied on change (``ManifestState._owned``)."""
        self.objects: set[int] = set()
        self.sealed = False
        """A checkpoint encoded the state: its next change starts a record."""


def since(newest: Changes, last: Changes | None) -> tuple[set[int], set[int]] | None:
    """The streams and objects changed from the sealed record ``last`` to
    ``newest``, or None if the chain does not lead back to it (the first
    checkpoint, after an open, or another encoder's)."""
    if last is None:
        return None
    streams: set[int] = set()
    objects: set[int] = set()
    node: Changes | None = newest
    while node is not last:
        if node is None:
            return None
        streams |= node.streams
        objects |= node.objects
        node = node.parent
    return streams, objects


def seal(node: Changes) -> Changes:
    """Marks ``node`` encoded and cuts the chain above it: no walk goes
    further back than the last checkpoint's record, so none is kept."""
    node.sealed = True
    node.parent = None
    node.depth = 0
    return node
