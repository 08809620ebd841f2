"""Object garbage collection with forks, against a model: random sequences
of uploads, forks, trims, deletes, a cleaner's replacements, collections and reloads
(through a checkpoint's bytes) never remove an object some stream can still
read, always remove the ones none can, and leave every stream reading the
ranges the model says, from the stream that wrote them."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from s3stream.compaction import dead_objects, removal_ops
from s3stream.manifest_entries import ObjectMeta, RangeMeta
from s3stream.manifest_state import ManifestState
from s3stream.objects import ObjectKind


@dataclass
class ModelStream:
    start: int = 0
    end: int = 0
    entries: list[tuple[int, int, int, int]] = field(default_factory=list)
    """``(start, end, object_id, writer)`` in offset order."""


class Model:
    def __init__(self) -> None:
        self.state = ManifestState()
        self.streams: dict[int, ModelStream] = {}

    def pick(self, n: int) -> int | None:
        ids = sorted(self.streams)
        return ids[n % len(ids)] if ids else None

    def create(self) -> None:
        stream_id = self.state.next_stream_id
        self.state.apply(["create_stream", stream_id, 0])
        self.streams[stream_id] = ModelStream()

    def upload(self, n: int, count: int) -> None:
        """One object holding a new range of each of two streams."""
        ids = sorted({s for s in (self.pick(n), self.pick(n + 1)) if s is not None})
        if not ids:
            return
        object_id = self.state.next_object_id
        ranges = []
        for stream_id in ids:
            stream = self.streams[stream_id]
            ranges.append(RangeMeta(stream_id, stream.end, stream.end + count, 10 * count))
            stream.entries.append((stream.end, stream.end + count, object_id, stream_id))
            stream.end += count
        meta = ObjectMeta(object_id, f"o{object_id}", ObjectKind.STREAM_SET, 1, 0, tuple(ranges))
        self.state.apply(["add_object", meta.to_wire()])

    def fork(self, n: int) -> None:
        source_id = self.pick(n)
        if source_id is None:
            return
        source = self.streams[source_id]
        stream_id = self.state.next_stream_id
        self.state.apply(["create_stream", stream_id, 0])
        fork = self.streams[stream_id] = ModelStream(source.start, source.end)
        for start, end, object_id, writer in source.entries:
            if end <= source.start:
                continue
            assert self.state.source_of(source_id, start, object_id) == writer
            self.state.apply(["share_range", stream_id, writer, start, object_id])
            fork.entries.append((start, end, object_id, writer))
        if source.start:
            self.state.apply(["trim", stream_id, source.start])

    def trim(self, n: int) -> None:
        stream_id = self.pick(n)
        if stream_id is None:
            return
        stream = self.streams[stream_id]
        live = [e for e in stream.entries if e[1] > stream.start]
        if live:
            stream.start = live[n % len(live)][1]
            self.state.apply(["trim", stream_id, stream.start])

    def delete(self, n: int) -> None:
        stream_id = self.pick(n)
        if stream_id is not None:
            self.state.apply(["delete_stream", stream_id])
            del self.streams[stream_id]

    def replace(self, n: int) -> None:
        """A cleaner rewrites one of a stream's live ranges, as replace_range
        commits it: a new stream object for the range, the old range dropped."""
        stream_id = self.pick(n)
        if stream_id is None:
            return
        stream = self.streams[stream_id]
        live = [e for e in stream.entries if e[1] > stream.start]
        if not live:
            return
        entry = live[n % len(live)]
        start, end, old_id, _ = entry
        object_id = self.state.next_object_id
        ranged = RangeMeta(stream_id, start, end, 1)
        meta = ObjectMeta(object_id, f"o{object_id}", ObjectKind.STREAM, 1, 0, (ranged,))
        self.state.apply(["add_object", meta.to_wire()])
        self.state.apply(["drop_range", stream_id, start, old_id])
        stream.entries[stream.entries.index(entry)] = (start, end, object_id, stream_id)

    def collect(self) -> None:
        dead = dead_objects(self.state)
        held = self.referenced()
        assert not set(dead) & held, "a readable object was collected"
        for op in removal_ops(dead, 0):
            self.state.apply(op)
        assert set(self.state.objects) == held, "an unreadable object was kept"

    def reload(self) -> None:
        wire = msgpack.unpackb(msgpack.packb(self.state.to_wire()), strict_map_key=False)
        self.state = ManifestState.from_wire(wire)

    def referenced(self) -> set[int]:
        return {
            object_id
            for stream in self.streams.values()
            for _, end, object_id, _ in stream.entries
            if end > stream.start
        }

    def check(self) -> None:
        state = self.state
        assert sorted(state.streams) == sorted(self.streams)
        for stream_id, stream in self.streams.items():
            meta = state.streams[stream_id]
            assert (meta.start_offset, meta.end_offset) == (stream.start, stream.end)
            live = [e for e in stream.entries if e[1] > stream.start]
            found = [e for e in state.ranges[stream_id].entries if e[1] > stream.start]
            assert found == [(s, e, o) for s, e, o, _ in live]
            for start, _, object_id, writer in live:
                assert object_id in state.objects
                assert state.source_of(stream_id, start, object_id) == writer
                ranged = state.range_meta(stream_id, start, object_id)
                assert ranged is not None and ranged.stream_id == writer


ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(
            ["create", "upload", "upload", "fork", "trim", "delete", "replace", "collect", "reload"]
        ),
        st.integers(0, 7),
    ),
    max_size=40,
)


@given(ACTIONS)
@settings(max_examples=150, deadline=None)
def test_collection_keeps_exactly_what_some_stream_can_read(actions: list[tuple[str, int]]) -> None:
    model = Model()
    model.create()
    for action, n in actions:
        if action == "create":
            model.create()
        elif action == "upload":
            model.upload(n, 1 + n % 3)
        elif action in ("fork", "trim", "delete", "replace"):
            getattr(model, action)(n)
        elif action == "collect":
            model.collect()
        else:
            model.reload()
        model.check()
    model.collect()
    model.check()
