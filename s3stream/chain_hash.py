"""The hash functions a chain link is made with (docs/tamper-evidence.md, "Hash algorithms").

Each range of a stream records the algorithm its links were made with
(``ChainHash``, in the manifest's links and in the object's chain region),
so a chain goes on across a change of algorithm: the next range starts
from the previous range's ``after``, whatever made it.

* ``SHA256`` (1): ``link(n) = SHA-256(link(n-1) || batch n)``, what every
  version before ``BLAKE3`` wrote.
* ``BLAKE3`` (2): ``link(n) = BLAKE3(key=link(n-1), batch n)`` for a batch
  of at least ``BLAKE3_FROM_BYTES`` bytes, ``SHA-256(link(n-1) || batch n)``
  below. Keyed with the previous link, the batch starts on BLAKE3's first
  1 KiB chunk, so its chunks are hashed side by side (SIMD) without a copy;
  for a batch of one chunk BLAKE3 is slower than SHA-256 with the CPU's SHA
  instructions, hence the size rule (bench/chain_bench.py measures both).
  Both ``hashlib`` and the ``blake3`` package release the GIL for inputs
  of 2048 bytes or more, so every batch BLAKE3 links is hashed beside the
  threads that serve.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from typing import Protocol

import blake3

from native.buffers import BytesLike


class Stored(Protocol):
    """A batch as stored (``StoredBatch``): the chain hashes its bytes."""

    @property
    def payload(self) -> BytesLike: ...


LINK_BYTES = 32
BLAKE3_FROM_BYTES = 2048
"""A batch this long or longer is linked with BLAKE3 in a ``BLAKE3`` chain."""


class ChainHash(enum.IntEnum):
    """Which function makes a range's links (its id is written with the range)."""

    SHA256 = 1
    BLAKE3 = 2

    @property
    def title(self) -> str:
        """The algorithm's name as docs/tamper-evidence.md writes it."""
        return "SHA-256" if self is ChainHash.SHA256 else self.name


CURRENT = ChainHash.BLAKE3
"""What new links are made with: uploads and a cleaner's rewrites."""
_SHA256 = ChainHash.SHA256  # a module name: an enum member's look-up is slower


class UnknownChainHash(ValueError):
    """A range names a chain algorithm this version does not know: it was
    written by a newer tidelog, which must read it."""

    def __init__(self, found: object) -> None:
        known = ", ".join(f"{h.value} = {h.title}" for h in ChainHash)
        super().__init__(
            f"unknown chain hash algorithm {found!r} (known: {known}): written by a newer "
            "tidelog; open it with that version"
        )


def chain_hash(found: object) -> ChainHash:
    """The algorithm of an id as stored; UnknownChainHash if there is none such."""
    if type(found) is not int:  # msgpack gives an int; a bool or bytes is no id
        raise UnknownChainHash(found)
    try:
        return ChainHash(found)
    except ValueError:
        raise UnknownChainHash(found) from None


def extend(algorithm: ChainHash, link: bytes, batches: Iterable[Stored]) -> bytes:
    """The link after ``batches`` (in offset order), from ``link``. One loop
    per algorithm, everything it uses in local names: over 1 KiB batches a
    call or a global look-up more per batch is a measurable part of the
    hashing."""
    sha256 = hashlib.sha256
    if algorithm is _SHA256:
        for batch in batches:
            digest = sha256(link)
            digest.update(batch.payload)
            link = digest.digest()
        return link
    keyed, blake3_from = blake3.blake3, BLAKE3_FROM_BYTES
    for batch in batches:
        payload = batch.payload
        if len(payload) < blake3_from:
            digest = sha256(link)
            digest.update(payload)
            link = digest.digest()
        else:
            link = keyed(payload, key=link).digest()
    return link
