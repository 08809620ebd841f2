"""Reads of the objects from outside the store's writer (``tidelog verify``,
``state``, ``lookup``, ``Engine.verify``): they load the manifest once and
read the objects it names, while a serving writer may merge those objects
and delete the old ones a grace period (``garbage_grace_s``) later.

An object such a read finds gone is told apart by the manifest loaded
again: if it still names the object, the bucket lost it (damage,
``CorruptObject``); if not, the writer compacted it away meanwhile, and
the read takes the range where the manifest as it is now places it
(``chain_verify.verify_stream``'s ``current`` for a proof of the hash
chain, ``chain_verify.moved_batches`` for ``state`` and ``lookup``), and
starts again from that manifest only if it cannot
(docs/design/0056-an-object-that-cannot-be-read-is-left-named-and-refused.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from s3stream.errors import MISSING, CorruptObject
from s3stream.manifest import load_state
from s3stream.manifest_state import ManifestState
from s3stream.store import ObjectNotFound, ObjectStore

RELOADS = 5
"""How many times a read starts again from a newer manifest: each time,
objects it needed were compacted away after it loaded the one before."""

T = TypeVar("T")


def reloading(
    store: ObjectStore, read: Callable[[ManifestState], T], state: ManifestState | None = None
) -> tuple[T, ManifestState]:
    """``read`` of ``state`` (default: the manifest loaded now), and the
    state it read. An object it needs that is gone is CorruptObject if the
    manifest, loaded again, still names it; else ``read`` starts again on
    that manifest (at most RELOADS times, then the ObjectNotFound stands)."""
    state = load_state(store) if state is None else state
    for attempt in range(RELOADS + 1):
        try:
            return read(state), state
        except ObjectNotFound as error:
            fresh = load_state(store)
            if fresh.names_key(error.key):
                raise CorruptObject(error.key, MISSING) from error
            if attempt == RELOADS:
                raise
            state = fresh
    raise AssertionError("unreachable")  # the last attempt returns or raises
