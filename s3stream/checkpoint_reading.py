"""A checkpoint read back in one pass: the state it holds, and for an
opener's next checkpoint, each stream's and each object's packed bytes
as they lie in it (docs/design/0150, "Amended").

The body is decoded entry by entry (msgpack's ``Unpacker``), so each
stream's and object's span in the payload is known as it is decoded,
where a walk of its own skipped over every object a second time
(0145). The spans of the streams are kept too: the first checkpoint after
an open then repacks only the streams changed since the checkpoint read
(its state's record of changes is sealed as read, so the deltas replayed
after it and the commits after the open are recorded against it), where
it packed all 10,000 streams with a call each.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any, NamedTuple

import msgpack

from s3stream.errors import CorruptObject
from s3stream.manifest_changes import Changes
from s3stream.manifest_entries import ObjectMeta, StreamMeta
from s3stream.manifest_state import ManifestState


class KeptEntries(NamedTuple):
    """A checkpoint's entries as it packed them, for the encoder of the
    writer that opened it (``CheckpointEncoder.prime``)."""

    record: Changes | None
    """The sealed record of the state as the checkpoint holds it: what
    changed after it is recorded against it."""
    streams: dict[int, bytes]
    object_metas: dict[int, ObjectMeta]
    """The metadata each kept object's bytes are of (reused by identity)."""
    object_bytes: dict[int, bytes]
    repack_streams: set[int]
    """Streams whose bytes were not kept: packed by the next checkpoint."""
    repack_objects: set[int]
    """Objects whose bytes were not kept (``ObjectMeta.wire_is_current``)."""


def read_checkpoint(
    key: str, data: bytes, start: int, *, keep: bool
) -> tuple[ManifestState, KeptEntries | None]:
    """The state of the checkpoint ``key`` whose msgpack body is
    ``data[start:]`` (its framing checked: manifest_records.check_framing),
    and with ``keep`` its entries' bytes. Damage is CorruptObject: an
    undecodable record as ``decode_record`` says it, a body that is not a
    state as ``ManifestState.from_wire`` fails on it."""
    read = _Read(key, data, start, keep)
    try:
        streams = read.entries.get("streams")
        objects = read.entries.get("objects")
        state = ManifestState.from_entries(
            read.body,
            streams if streams is not None else map(StreamMeta.from_wire, read.body["streams"]),
            objects if objects is not None else map(ObjectMeta.from_wire, read.body["objects"]),
        )
    except _NOT_A_STATE as error:
        raise _not_a_state(key, error) from error
    if not keep:
        return state, None
    return state, read.kept(state)


_NOT_A_STATE = (AttributeError, IndexError, KeyError, TypeError, ValueError)
"""What reading a body that is not a state raises."""


def _not_a_state(key: str, error: Exception) -> CorruptObject:
    """A body whose checksum held but whose fields are not a state (a
    writer's bug, a layout this code does not know) is damage as a failed
    checksum is: the caller goes back to the checkpoint before, whose
    deltas rebuild the same version, rather than failing every open of
    the bucket."""
    return CorruptObject(key, f"undecodable manifest checkpoint: {error!r}")


class _Read:
    """One walk of a checkpoint's body: its fields, its streams and
    objects made as each entry is decoded (so no entry's lists outlive
    it: the collector walked 130,000 of them at 10,000 streams while the
    state was built), and each entry's span."""

    def __init__(self, key: str, data: bytes, start: int, keep: bool) -> None:
        self.data, self.start = data, start
        self.body: dict[Any, Any] = {}
        self.entries: dict[str, list[Any]] = {}
        self.ends: dict[str, list[int]] = {}
        """Per list, the offset (in the body) of each entry's start and
        of the last one's end."""
        self.current: list[bool] = []
        """Per object of the list read, whether its bytes are those
        ``to_wire`` packs."""
        unpacker = msgpack.Unpacker(
            raw=False, strict_map_key=False, max_buffer_size=max(len(data) - start, 1)
        )
        unpacker.feed(memoryview(data)[start:])
        try:
            self._walk(unpacker, keep)
            if unpacker.tell() != len(data) - start:
                raise msgpack.ExtraData(self.body, b"")
        except _NotAState as error:
            raise _not_a_state(key, error.error) from error.error
        except (TypeError, ValueError, msgpack.UnpackException) as error:
            # Refused as msgpack.unpackb's errors are (decode_record).
            raise CorruptObject(key, f"undecodable manifest record: {error}") from error

    def _walk(self, unpacker: msgpack.Unpacker, keep: bool) -> None:
        unpack, tell = unpacker.unpack, unpacker.tell
        try:
            fields = unpacker.read_map_header()
        except ValueError:  # not a map header (nothing read): not a state
            raise _NotAState(TypeError(f"a checkpoint is a map, not {unpack()!r:.80}")) from None
        body = self.body
        is_current = ObjectMeta.wire_is_current
        for _ in range(fields):
            name = unpack()
            make = _MAKERS.get(name) if type(name) is str else None
            if make is None:
                body[name] = unpack()
                continue
            try:
                count = unpacker.read_array_header()
            except ValueError:  # not an array header (nothing read)
                # A name given twice is read as its last value, as a decode
                # of the whole body reads it: a list made for an earlier
                # one must not stand in for a value that is no state.
                self.entries.pop(name, None)
                self.ends.pop(name, None)
                if name == "objects":
                    self.current = []
                body[name] = unpack()
                continue
            made: list[Any] = []
            checks = keep and name == "objects"
            if checks:  # of this list only, should the name come again
                self.current = []
            current = self.current.append
            offsets = [tell()]
            add, add_offset = made.append, offsets.append
            for _ in range(count):
                wire = unpack()
                add_offset(tell())
                try:
                    add(make(wire))
                except _NOT_A_STATE as error:
                    raise _NotAState(error) from error
                if checks:
                    current(is_current(wire))
            self.entries[name], self.ends[name] = made, offsets

    def kept(self, state: ManifestState) -> KeptEntries:
        """Each stream's and each current object's bytes as read, and the
        state's record sealed. A shared range's stream is packed again: its
        end is raised to the range's as the shares are read, which a state
        written by this code never needs, but its bytes as read would then
        not be its own. An entry whose id came again later in the list is
        not the state's, and is not kept."""
        data, start = self.data, self.start
        streams: dict[int, bytes] = {}
        by_id = state.streams
        stream: StreamMeta
        for stream, (begin, end) in zip(
            self.entries.get("streams", ()), pairwise(self.ends.get("streams", ())), strict=True
        ):
            if by_id.get(stream.stream_id) is stream:
                streams[stream.stream_id] = data[start + begin : start + end]
        for stream_id in state.shares:
            streams.pop(stream_id, None)
        object_metas: dict[int, ObjectMeta] = {}
        object_bytes: dict[int, bytes] = {}
        metas = state.objects
        meta: ObjectMeta
        for meta, current, (begin, end) in zip(
            self.entries.get("objects", ()),
            self.current,
            pairwise(self.ends.get("objects", ())),
            strict=True,
        ):
            object_id = meta.object_id
            if current and metas.get(object_id) is meta:
                object_metas[object_id] = meta
                object_bytes[object_id] = data[start + begin : start + end]
        return KeptEntries(
            state.seal_changes(),
            streams,
            object_metas,
            object_bytes,
            set(state.streams).difference(streams),
            set(state.objects).difference(object_bytes),
        )


class _NotAState(Exception):
    """An entry decoded but not made: the body is not a state."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


_MAKERS: dict[str, Any] = {"streams": StreamMeta.from_wire, "objects": ObjectMeta.from_wire}
"""The body's lists whose entries are made as they are read, and spanned."""
