"""Reads meeting an object that is gone from the object store: one the
manifest still names is damage, refused as a damaged object is
(CorruptObject, naming it); one compacted away after the read looked it
up is read again from the objects that hold its data now."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from s3stream import StreamStore
from s3stream.errors import CorruptObject
from s3stream.manifest_records import delta_key
from s3stream.store import LocalStore, ObjectStoreError
from s3stream.uploader import OBJECT_PREFIX
from tests.s3stream.faults import FailsOneHead
from tests.s3stream.test_compaction import CONFIG, uploads
from tests.s3stream.test_stream_store import expected, new_stream, read_all


class CompactsOnFirstRead(LocalStore):
    """A local store whose first read of a data object first lets a
    compaction pass merge it away and delete it: the read was looked up in
    the manifest before, as one that stalled past the grace period was."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.store: StreamStore | None = None
        self.compacted = False

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        if self.store is not None and not self.compacted and key.startswith(OBJECT_PREFIX):
            self.compacted = True
            self.store.compact()
        return super().get(key, start, end)


class MergesEachObjectItReads(LocalStore):
    """The bucket of a busy writer: the first read of each object the
    writer did not make by merging finds it just merged (with the other
    small objects) into a new one and deleted, and ``after_merge`` run
    (another upload, say), which a read from a newer manifest meets in
    turn: a read that only starts again from a newer manifest never ends."""

    def __init__(self, root: Path, store: StreamStore, after_merge: Callable[[int], None]) -> None:
        super().__init__(root)
        self.store = store
        self.after_merge = after_merge
        self.merged: set[str] = set()
        """Objects the writer's merges wrote: read as they are."""
        self.merges = 0

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        if key.startswith(OBJECT_PREFIX) and key not in self.merged:
            self.merges += 1
            self.store.compact()
            self.merged |= {meta.key for meta in self.store.manifest.state.objects.values()}
            self.after_merge(self.merges)
        return super().get(key, start, end)


def test_an_object_the_manifest_names_and_the_store_lost_is_refused_as_damage(
    tmp_path: Path,
) -> None:
    bucket = LocalStore(tmp_path / "objects")
    with StreamStore.open(tmp_path / "node", bucket, CONFIG) as store:
        stream = new_stream(store)
        uploads(store, [stream], rounds=2)
        state = store.manifest.state
        lost = state.objects[state.ranges[stream].entries[-1][2]]
        Path(bucket.root, *lost.key.split("/")).unlink()
        with pytest.raises(CorruptObject) as refused:
            read_all(store, stream)
        assert refused.value.key == lost.key
        assert "missing" in str(refused.value)
        assert store.fetch(stream, 0, 1).batches  # the object before it is read as ever


def test_a_read_of_an_object_compacted_away_since_it_was_looked_up_reads_its_data_anew(
    tmp_path: Path,
) -> None:
    bucket = CompactsOnFirstRead(tmp_path / "objects")
    config = dataclasses.replace(CONFIG, garbage_grace_s=0)
    with StreamStore.open(tmp_path / "node", bucket, config) as store:
        streams = [new_stream(store) for _ in range(2)]
        uploads(store, streams, rounds=4)
        before = set(store.manifest.state.objects)
        bucket.store = store
        assert read_all(store, streams[0]) == expected(streams[0], 0, 8)
        assert bucket.compacted and not before & set(store.manifest.state.objects)
        assert read_all(store, streams[1]) == expected(streams[1], 0, 8)


def test_a_missing_object_is_not_called_damage_while_a_takeover_cannot_be_ruled_out(
    tmp_path: Path,
) -> None:
    """The fence check before a claim of damage fails: the read fails with
    the store's transient error (a client retries), not CorruptObject."""
    bucket = FailsOneHead(tmp_path / "objects")
    with StreamStore.open(tmp_path / "node", bucket, CONFIG) as store:
        stream = new_stream(store)
        uploads(store, [stream], rounds=2)
        state = store.manifest.state
        start, _, object_id = state.ranges[stream].entries[-1]
        lost = state.objects[object_id]
        Path(bucket.root, *lost.key.split("/")).unlink()
        bucket.unreachable = delta_key(state.seq + 1)
        with pytest.raises(ObjectStoreError) as failed:
            store.fetch(stream, start)
        assert failed.value.transient
        with pytest.raises(CorruptObject):
            store.fetch(stream, start)
