"""A checkpoint's PUT and deletions run off the commit path.

Every ``checkpoint_every`` versions the manifest writes a checkpoint and
deletes the deltas and checkpoints it made unnecessary: a list and one
DELETE per version. In the commit that wrote the checkpoint, those held the
uploader, and every remote acknowledgement behind it, for dozens of
requests, and the checkpoint's own PUT held it for one more. With
``background_cleanup`` (as the stream store opens it) they run on a thread
of their own: commits go on while deletions or the checkpoint are held up,
and the history is still cut back once they run.
"""

from __future__ import annotations

import threading
from pathlib import Path

from s3stream import StreamStore, StreamStoreConfig
from s3stream.manifest import CHECKPOINT_PREFIX, LOG_PREFIX, Manifest, checkpoint_key, load_state
from s3stream.store import MemoryStore
from s3stream.store.base import ObjectData
from tests.s3stream.test_manifest import add_object_op

TIMEOUT = 30.0


class HeldDeletes(MemoryStore):
    """A memory store whose DELETEs of manifest versions wait until
    released, noting the threads that make them."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.deleting = threading.Event()
        self.threads: set[str] = set()

    def delete(self, key: str) -> None:
        if key.startswith((LOG_PREFIX, CHECKPOINT_PREFIX)):
            self.threads.add(threading.current_thread().name)
            self.deleting.set()
            assert self.release.wait(TIMEOUT), "deletions were never released"
        super().delete(key)


def test_commits_go_on_while_a_checkpoints_deletions_are_held() -> None:
    store = HeldDeletes()
    manifest = Manifest.open(store, checkpoint_every=4, background_cleanup=True)
    manifest.commit([["create_stream", 1, 0]])
    for i in range(1, 3):  # versions 3 and 4: the first checkpoint, nothing to delete
        manifest.commit([add_object_op(i, 1, (i - 1) * 10, i * 10)])
    manifest.join_cleanup(TIMEOUT)
    for i in range(3, 12):  # the next checkpoint has deletions to make
        manifest.commit([add_object_op(i, 1, (i - 1) * 10, i * 10)])
    assert store.deleting.wait(TIMEOUT)
    # Held: yet commits, checkpoints among them, return.
    for i in range(12, 30):
        manifest.commit([add_object_op(i, 1, (i - 1) * 10, i * 10)])
    assert manifest.state.seq == 31
    store.release.set()
    manifest.join_cleanup(TIMEOUT)
    assert store.threads == {"s3stream-manifest-cleanup"}
    # A checkpoint after the release cuts the history back as before.
    for i in range(30, 34):
        manifest.commit([add_object_op(i, 1, (i - 1) * 10, i * 10)])
    manifest.join_cleanup(TIMEOUT)
    assert len(store.list(CHECKPOINT_PREFIX)) == 2
    assert len(store.list(LOG_PREFIX)) <= 8
    state = load_state(store)
    assert state.seq == manifest.state.seq and len(state.objects) == 33


class HeldCheckpoints(MemoryStore):
    """A memory store whose checkpoint PUTs wait until released, noting the
    threads that make them."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.putting = threading.Event()
        self.threads: set[str] = set()

    def put(self, key: str, data: ObjectData) -> str:
        if key.startswith(CHECKPOINT_PREFIX):
            self.threads.add(threading.current_thread().name)
            self.putting.set()
            assert self.release.wait(TIMEOUT), "checkpoints were never released"
        return super().put(key, data)


def test_commits_do_not_wait_for_a_checkpoints_put() -> None:
    store = HeldCheckpoints()
    manifest = Manifest.open(store, checkpoint_every=4, background_cleanup=True)
    manifest.commit([["create_stream", 1, 0]])
    for i in range(1, 3):  # versions 3 and 4: a checkpoint due, its PUT held
        manifest.commit([add_object_op(i, 1, (i - 1) * 10, i * 10)])
    assert store.putting.wait(TIMEOUT)
    for i in range(3, 12):  # versions 5..13: checkpoints due at 8 and 12, waiting
        manifest.commit([add_object_op(i, 1, (i - 1) * 10, i * 10)])
    assert manifest.state.seq == 13
    assert store.list(CHECKPOINT_PREFIX) == []
    store.release.set()
    manifest.join_cleanup(TIMEOUT)
    assert store.threads == {"s3stream-manifest-cleanup"}
    # The one held, then the newest waiting: those in between were skipped.
    assert [i.key for i in store.list(CHECKPOINT_PREFIX)] == [checkpoint_key(4), checkpoint_key(12)]
    state = load_state(store)
    assert state.seq == 13 and len(state.objects) == 11


def test_without_background_cleanup_the_commit_deletes(tmp_path: Path) -> None:
    store = MemoryStore()
    manifest = Manifest.open(store, checkpoint_every=4)
    manifest.commit([["create_stream", 1, 0]])
    for i in range(1, 30):
        manifest.commit([add_object_op(i, 1, (i - 1) * 10, i * 10)])
        # Nothing left to wait for: the commit made its deletions itself.
        assert len(store.list(LOG_PREFIX)) <= 8
    assert len(store.list(CHECKPOINT_PREFIX)) == 2


def test_remote_acks_do_not_wait_for_a_checkpoints_deletions(tmp_path: Path) -> None:
    store = HeldDeletes()
    config = StreamStoreConfig.small()
    config = StreamStoreConfig(**{**config.__dict__, "checkpoint_every": 2})
    stream_store = StreamStore.open(tmp_path / "data", store, config)
    try:
        stream = stream_store.create_stream()
        stream_store.open_stream(stream, 1)
        for offset in range(12):  # an upload and a commit each: checkpoints every other one
            stream_store.submit(stream, offset, offset, b"x" * 100, remote=True).result(TIMEOUT)
        assert store.deleting.is_set()
        assert stream_store.remote_end_offset(stream) == 12
    finally:
        store.release.set()
        stream_store.close()
