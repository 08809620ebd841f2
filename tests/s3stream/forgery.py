"""Editing committed objects as someone with write access to the bucket
could: a batch changed, removed or swapped, every object and block CRC
recomputed, the object put back under its own key. Only the hash chain can
tell (docs/tamper-evidence.md)."""

from __future__ import annotations

from collections.abc import Callable

from s3stream.manifest_state import ManifestState
from s3stream.objects import StoredBatch, parse_object
from s3stream.store import ObjectStore
from s3stream.uploader import ObjectIds, Run, prepare_runs

Edit = Callable[[list[StoredBatch]], list[StoredBatch]]
"""Changes the batches of one range (in offset order)."""


def forge_range(
    bucket: ObjectStore, state: ManifestState, stream_id: int, offset: int, edit: Edit
) -> tuple[int, int]:
    """Rewrites the object holding ``offset`` of the stream with ``edit``
    applied to that range's batches; returns the range ``[start, end)``."""
    found = state.ranges[stream_id].find(offset)
    assert found is not None and found[0] <= offset < found[1]
    start, end, object_id = found
    meta = state.objects[object_id]
    index, blocks = parse_object(meta.key, bucket.get(meta.key))
    held: dict[int, list[StoredBatch]] = {}
    for info, batches in zip(index.blocks, blocks, strict=True):
        held.setdefault(info.stream_id, []).extend(batches)
    runs: list[tuple[int, list[Run]]] = []
    for sid, batches in sorted(held.items()):
        kept: list[Run] = []
        for r in meta.ranges:
            if r.stream_id != sid:
                continue
            mine = [b for b in batches if r.start_offset <= b.base_offset < r.end_offset]
            if sid == stream_id and r.start_offset == start:
                mine = edit(mine)
            if mine:  # the range's bounds and links copied as they were
                kept.append(Run(r.start_offset, r.end_offset, mine, r.links))
        runs.append((sid, kept))
    forged = prepare_runs(
        runs,
        epoch=0,
        ids=ObjectIds(1 << 40),
        now_ms=0,
        block_bytes=1 << 20,
        stream_object_bytes=1 << 62,
    )
    assert len(forged) == 1
    bucket.put(meta.key, forged[0].data)
    return start, end


def flip_byte(at: int, position: int) -> Edit:
    """Flips one bit of the byte ``position`` of the batch at offset ``at``."""

    def edit(batches: list[StoredBatch]) -> list[StoredBatch]:
        out = list(batches)
        for i, b in enumerate(batches):
            if b.base_offset <= at < b.end_offset:
                payload = bytearray(b.payload)
                payload[position] ^= 0x01
                out[i] = b._replace(payload=bytes(payload))
        return out

    return edit


def swap_payloads(at: int) -> Edit:
    """Swaps the bytes of the batches at ``at`` and the one after it."""

    def edit(batches: list[StoredBatch]) -> list[StoredBatch]:
        i = next(i for i, b in enumerate(batches) if b.base_offset == at)
        a, b = batches[i], batches[i + 1]
        out = list(batches)
        out[i], out[i + 1] = a._replace(payload=b.payload), b._replace(payload=a.payload)
        return out

    return edit


def drop_renumbered(at: int) -> Edit:
    """Removes the batch at ``at`` and renumbers the later ones down to hide the gap."""

    def edit(batches: list[StoredBatch]) -> list[StoredBatch]:
        later = (b for b in batches if b.base_offset > at)
        return [b for b in batches if b.base_offset < at] + [
            b._replace(base_offset=b.base_offset - 1, end_offset=b.end_offset - 1) for b in later
        ]

    return edit
