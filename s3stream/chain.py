"""The hash chain over each stream's stored batches (docs/tamper-evidence.md).

``link(n) = H(link(n-1), batch n)`` over a stream's batches in offset
order, the batch as stored (the payload of its object entry), with ``H``
the range's algorithm (``s3stream.chain_hash``: SHA-256, or BLAKE3 for
what this version writes). A chain starts at a *genesis* link that
commits to the stream and the offset it starts at, or, for a range a log
cleaner rewrote, to the links of the range it replaced. The links at
both ends of each object range are kept in the manifest (``RangeLinks``),
so a verifier can start at any range and a writer continues the chain
from the last range without reading anything.

The chain is computed where batches are uploaded, merged or replaced, on
the store's own threads: the produce path pays nothing for it, and both
hashes release the GIL while they hash a large payload.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from typing import Any, NamedTuple

from native import untracked_record
from s3stream.chain_hash import LINK_BYTES, ChainHash, UnknownChainHash, chain_hash
from s3stream.chain_hash import extend as extend_with
from s3stream.enum_ids import known_id
from s3stream.objects import StoredBatch

GENESIS_TAG = b"tidelog.chain.genesis\x00"
REWRITE_TAG = b"tidelog.chain.rewrite\x00"
_STREAM_OFFSET = struct.Struct("<qq")
_RANGE = struct.Struct("<qqq")
_BY_ID = {int(h): h for h in ChainHash}


def genesis(stream_id: int, offset: int) -> bytes:
    """The link before the first batch of a stream's chain starting at ``offset``
    (SHA-256 whatever the chain's algorithm: a genesis is made once per chain)."""
    return hashlib.sha256(GENESIS_TAG + _STREAM_OFFSET.pack(stream_id, offset)).digest()


def rewrite_genesis(
    stream_id: int, start_offset: int, end_offset: int, old_before: bytes, old_after: bytes
) -> bytes:
    """The link before the first batch of a rewritten range ``[start, end)``:
    it commits to the links at both ends of the range it replaced."""
    return hashlib.sha256(
        REWRITE_TAG + _RANGE.pack(stream_id, start_offset, end_offset) + old_before + old_after
    ).digest()


def extend(algorithm: ChainHash, link: bytes, batches: Iterable[StoredBatch]) -> bytes:
    """The link after ``batches``, starting from ``link``, made with ``algorithm``."""
    return extend_with(algorithm, link, batches)


def algorithm_id(algorithm: object) -> int:
    """The id of a ``ChainHash`` member or of an int naming one; anything
    else (an unknown id, a float, a bool) is UnknownChainHash here, not a
    KeyError from ``RangeLinks.algorithm`` when the links are first used."""
    return known_id(_BY_ID, algorithm, UnknownChainHash)


class _RewriteFields(NamedTuple):
    old_before: bytes
    old_after: bytes


class Rewrite(_RewriteFields):
    """The links at both ends of the range a log cleaner's rewrite replaced.

    Built untracked by the collector (``native.untracked_record``): it
    holds two ``bytes``, which refer to nothing, so no cycle can pass
    through it (docs/design/0158)."""

    __slots__ = ()

    def __new__(cls, old_before: bytes, old_after: bytes) -> Rewrite:
        return untracked_record(Rewrite, old_before, old_after)

    @classmethod
    def _make(cls, iterable: Iterable[Any]) -> Rewrite:  # type: ignore[override]
        # NamedTuple's own makes the tuple without __new__: tracked.
        return cls(*iterable)


class _LinkFields(NamedTuple):
    algorithm_id: int
    before: bytes
    after: bytes
    rewrite: Rewrite | None


class RangeLinks(_LinkFields):
    """The chain at both ends of one object range: ``before`` its first batch
    and ``after`` its last, made with ``algorithm``; ``rewrite`` if the range
    is a cleaner's rewrite (its chain then started at ``rewrite_genesis`` of
    these links).

    The manifest keeps one a range for as long as the range lives, so they
    are built untracked by the collector (``native.untracked_record``;
    docs/design/0158): the algorithm is kept as its id, an int, and read as
    the ``ChainHash`` member by ``algorithm``, since an enum member has a
    ``__dict__`` and is always tracked, which would keep the links tracked
    too. What is left is two ``bytes`` and None or an untracked
    ``Rewrite``: nothing that can refer back to the links."""

    __slots__ = ()

    def __new__(
        cls, algorithm: ChainHash, before: bytes, after: bytes, rewrite: Rewrite | None = None
    ) -> RangeLinks:
        return untracked_record(RangeLinks, algorithm_id(algorithm), before, after, rewrite)

    @classmethod
    def _make(cls, iterable: Iterable[Any]) -> RangeLinks:  # type: ignore[override]
        # NamedTuple's own makes the tuple without __new__, so _replace,
        # which calls this, would give tracked links.
        return cls(*iterable)

    @property
    def algorithm(self) -> ChainHash:
        return _BY_ID[self.algorithm_id]

    def __repr__(self) -> str:
        # Named as before the id was kept (0158): logs and test failures print it.
        return (
            f"RangeLinks(algorithm={self.algorithm.name}, before={self.before!r}, "
            f"after={self.after!r}, rewrite={self.rewrite!r})"
        )

    def to_wire(self) -> list[bytes | int]:
        """``[before, after, (old_before, old_after,) algorithm]``: the
        algorithm's id last, so a reader that knows only SHA-256's 2 or 4
        links refuses the range instead of misreading it."""
        links: list[bytes | int] = [self.before, self.after]
        if self.rewrite is not None:
            links += [self.rewrite.old_before, self.rewrite.old_after]
        return [*links, self.algorithm_id]

    @classmethod
    def from_wire(cls, raw: Any) -> RangeLinks:
        """A range's links as the manifest keeps them; the 2 or 4 links
        without an algorithm that versions before ``ChainHash`` wrote are SHA-256."""
        if type(raw) is list and len(raw) == 3:
            # What every upload commits, a thousand a block: two links and
            # a known algorithm, checked as the general case checks them.
            before, after, found = raw
            algorithm = _BY_ID.get(found) if type(found) is int else None
            if (
                algorithm is not None
                and type(before) is bytes
                and type(after) is bytes
                and len(before) == LINK_BYTES
                and len(after) == LINK_BYTES
            ):
                return untracked_record(RangeLinks, found, before, after, None)
        if not isinstance(raw, list) or len(raw) not in (2, 3, 4, 5):
            raise ValueError(f"a range's chain is 2 or 4 links and an algorithm, not {raw!r}")
        algorithm = ChainHash.SHA256 if len(raw) % 2 == 0 else chain_hash(raw[-1])
        kept = raw[: len(raw) // 2 * 2]
        if not all(isinstance(link, bytes | bytearray | memoryview) for link in kept):
            raise ValueError(f"a chain link is bytes, not {kept!r}")
        links = [bytes(link) for link in kept]
        if any(len(link) != LINK_BYTES for link in links):
            raise ValueError("a chain link is 32 bytes")
        rewrite = Rewrite(links[2], links[3]) if len(links) == 4 else None
        return cls(algorithm, links[0], links[1], rewrite)
