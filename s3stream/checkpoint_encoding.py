"""A checkpoint's msgpack body, packed with the objects' packed forms of
the checkpoint before it.

A checkpoint holds every object of the manifest, and turning an object's
metadata into its wire lists (every range, every range's chain links) was
nine tenths of a checkpoint's CPU: 190 of 210 ms at 10,000 streams and
30,000 objects, under the GIL that the commits and the WAL's threads
wait for (docs/design/0140). Object metadata is immutable and most of it
outlives many checkpoints, so an object's packed bytes are kept from one
checkpoint to the next and spliced into the body as they are. The body
is the same bytes ``msgpack.packb(state.to_wire())`` makes: the format
(docs/object-format.md) does not change, and checkpoints written before
read as they did.
"""

from __future__ import annotations

import msgpack

from s3stream.manifest_state import ManifestState, ObjectMeta


class CheckpointEncoder:
    """Packs checkpoint bodies, keeping each object's packed bytes for the
    next one. The bytes kept are those of the last checkpoint's objects
    only, never an object removed since: some 2.3 times that checkpoint's
    bytes, with each object's tuple and map entry (docs/design/0140).
    One checkpoint is encoded at a time (the manifest's cleaner
    thread, or its commit lock), so nothing here is locked."""

    def __init__(self) -> None:
        self._packed: dict[int, tuple[ObjectMeta, bytes]] = {}

    @property
    def kept_objects(self) -> int:
        """How many objects' packed bytes are kept for the next checkpoint."""
        return len(self._packed)

    def encode(self, state: ManifestState) -> bytes:
        """``msgpack.packb(state.to_wire(), use_bin_type=True)``, byte for byte."""
        packer = msgpack.Packer(use_bin_type=True)
        wire = state.to_wire(objects=False)
        parts: list[bytes] = [packer.pack_map_header(len(wire))]
        for key, value in wire.items():
            parts.append(packer.pack(key))
            if key == "objects":
                parts.append(packer.pack_array_header(len(state.objects)))
                parts += self._objects(packer, state)
            else:
                parts.append(packer.pack(value))
        return b"".join(parts)

    def _objects(self, packer: msgpack.Packer, state: ManifestState) -> list[bytes]:
        """Each object's packed bytes, in the state's order: the kept ones
        of the same metadata (identity: it is immutable), the rest packed
        now; what is kept afterwards is exactly these."""
        kept = self._packed
        fresh: dict[int, tuple[ObjectMeta, bytes]] = {}
        for object_id, meta in state.objects.items():
            entry = kept.get(object_id)
            if entry is None or entry[0] is not meta:
                entry = (meta, packer.pack(meta.to_wire()))
            fresh[object_id] = entry
        self._packed = fresh
        return [packed for _, packed in fresh.values()]
