"""A checkpoint's PUT and deletions run off the commit path, in few requests.

Every ``checkpoint_every`` versions the manifest writes a checkpoint and
deletes the deltas and checkpoints it made unnecessary. In the commit that
wrote the checkpoint, those held the uploader, and every remote
acknowledgement behind it, for dozens of requests, and the checkpoint's own
PUT held it for one more. With ``background_cleanup`` (as the stream store
opens it) they run on a thread of their own: commits go on while deletions
or the checkpoint are held up, and the history is still cut back once they
run. The deltas go in one request (``delete_many``), except those below the
oldest kept fence, which go one at a time in version order, so that a fence
is never gone while a version before it is still there.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from s3stream import REMOTE, StreamStore, StreamStoreConfig
from s3stream.manifest import Manifest, load_state
from s3stream.manifest_records import CHECKPOINT_PREFIX, LOG_PREFIX, checkpoint_key, delta_key
from s3stream.manifest_state import KEPT_FENCES
from s3stream.store import MemoryStore, ObjectNotFound
from s3stream.store.base import ObjectData, ObjectInfo
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
        # A checkpoint written first, with deletions let through: the next
        # one has deltas to delete. The cleanup thread may start after all
        # these commits (checkpoints waiting for it are merged into one, and
        # the first deletes nothing), so it is waited for, not assumed.
        store.release.set()
        for offset in range(4):  # an upload and a commit each: checkpoints every other one
            stream_store.submit(stream, offset, offset, b"x" * 100, REMOTE).result(TIMEOUT)
        stream_store.manifest.join_cleanup(TIMEOUT)
        assert stream_store.manifest.state.seq >= 6 and store.list(CHECKPOINT_PREFIX)
        store.release.clear()
        store.deleting.clear()
        for offset in range(4, 8):  # checkpoints due: their deletions held
            stream_store.submit(stream, offset, offset, b"x" * 100, REMOTE).result(TIMEOUT)
        assert store.deleting.wait(TIMEOUT)
        # Held: yet remote acknowledgements, checkpoints among them, come.
        for offset in range(8, 16):
            stream_store.submit(stream, offset, offset, b"x" * 100, REMOTE).result(TIMEOUT)
        assert not store.release.is_set()
        assert stream_store.remote_end_offset(stream) == 16
    finally:
        store.release.set()
        stream_store.close()


class RecordedDeletes(MemoryStore):
    """A memory store noting each deletion request of manifest versions,
    and checking, as each one starts, that no fence in it would be gone
    while a version before it that is not kept is still there."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[list[int]] = []
        self.fences: set[int] = set()
        """Versions that hold a fence."""
        self.kept: set[int] = set()
        """Versions the checkpoints keep (the last fences)."""
        self.delta_lists = 0
        self.checkpoint_lists = 0

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        self.delta_lists += prefix == LOG_PREFIX
        self.checkpoint_lists += prefix == CHECKPOINT_PREFIX
        return super().list(prefix)

    def delete(self, key: str) -> None:
        self._deleting([key])
        super().delete(key)

    def delete_many(self, keys: Sequence[str]) -> None:
        self._deleting(keys)
        for key in keys:
            super().delete(key)

    def _deleting(self, keys: Sequence[str]) -> None:
        versions = [int(key.rsplit("/", 1)[1]) for key in keys if key.startswith(LOG_PREFIX)]
        if not versions:
            return
        self.requests.append(versions)
        for fence in self.fences.intersection(versions):
            assert fence not in self.kept, f"kept fence {fence} deleted"
            for earlier in range(1, fence):
                if earlier not in self.kept:
                    assert not self._exists(delta_key(earlier)), (
                        f"fence {fence} deleted while version {earlier} is still there"
                    )

    def _exists(self, key: str) -> bool:
        try:
            self.head(key)
        except ObjectNotFound:
            return False
        return True


def test_a_checkpoints_deltas_go_in_one_request_while_every_fence_is_kept() -> None:
    store = RecordedDeletes()
    manifest = Manifest.open(store, checkpoint_every=8)
    manifest.commit([["create_stream", 1, 0]])
    for i in range(1, 30):  # versions 3..31: checkpoints at 8, 16, 24 delete up to 16
        manifest.commit([add_object_op(i, 1, (i - 1) * 10, i * 10)])
    assert [versions for versions in store.requests if len(versions) == 1] == []
    assert sorted(v for versions in store.requests for v in versions) == list(range(2, 17))
    assert load_state(store).seq == 31


def test_the_deltas_are_listed_at_a_writers_first_clean_up_only() -> None:
    store = RecordedDeletes()
    manifest = Manifest.open(store, checkpoint_every=4)
    manifest.commit([["create_stream", 1, 0]])
    store.delta_lists = 0  # the open's own load listed them
    for i in range(1, 40):  # versions 3..41: checkpoints every 4, eight clean-ups
        manifest.commit([add_object_op(i, 1, (i - 1) * 10, i * 10)])
    assert store.delta_lists == 1
    deleted = sorted(v for versions in store.requests for v in versions)
    assert deleted == list(range(2, 37))  # up to the older of the last two checkpoints
    assert [info.key for info in store.list(LOG_PREFIX)] == [
        delta_key(v) for v in [1, *range(37, 42)]
    ]


def test_deltas_below_the_oldest_kept_fence_go_one_at_a_time_in_version_order() -> None:
    store = RecordedDeletes()
    never = 10_000  # only the last opener checkpoints (and so deletes)
    first = Manifest.open(store, checkpoint_every=never)  # its fence: version 1
    for i in range(1, 6):  # versions 2..6: plain deltas before the fences
        first.commit([add_object_op(i, 1, (i - 1) * 10, i * 10)])
    openers = [Manifest.open(store, checkpoint_every=never) for _ in range(KEPT_FENCES + 2)]
    last = Manifest.open(store, checkpoint_every=4)  # fences at 1 and 7..25
    store.fences = {1, *range(7, 26)}
    store.kept = set(last.state.fence_versions)
    assert store.kept == set(range(10, 26)) and len(openers) == 18
    for i in range(6, 40):  # versions 26..59: checkpoints every 4 delete up to 52
        last.commit([add_object_op(i, 1, (i - 1) * 10, i * 10)])
    one_at_a_time = [versions for versions in store.requests if versions[0] < 10]
    assert one_at_a_time == [[v] for v in range(1, 10)]  # in version order, fences last
    assert store.requests[: len(one_at_a_time)] == one_at_a_time
    together = store.requests[len(one_at_a_time) :]
    assert together and all(len(versions) > 1 for versions in together)
    assert sorted(v for versions in together for v in versions) == list(range(26, 53))
    assert load_state(store).seq == 59


def test_a_writer_lists_the_checkpoints_at_its_open_only_and_deletes_its_predecessors() -> None:
    store = RecordedDeletes()
    before = Manifest.open(store, checkpoint_every=4)
    for i in range(1, 12):  # versions 2..12: checkpoints at 4, 8, 12
        before.commit([add_object_op(i, 1, (i - 1) * 10, i * 10)])
    before.join_cleanup()
    assert [i.key for i in store.list(CHECKPOINT_PREFIX)] == [checkpoint_key(8), checkpoint_key(12)]
    manifest = Manifest.open(store, checkpoint_every=4)  # version 13
    store.checkpoint_lists = 0
    for i in range(12, 40):  # versions 14..41: seven checkpoints, each with a clean-up
        manifest.commit([add_object_op(i, 1, (i - 1) * 10, i * 10)])
    assert store.checkpoint_lists == 0
    assert [i.key for i in store.list(CHECKPOINT_PREFIX)] == [
        checkpoint_key(36),
        checkpoint_key(40),
    ]
    assert load_state(store).seq == 41
