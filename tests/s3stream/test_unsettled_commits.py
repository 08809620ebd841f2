"""Commits whose outcome is unknown (the answer lost, then the store closed
before a retry could settle it): the version may be in the bucket, so
nothing it names may be deleted by the writer that made it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from s3stream import StoreClosed, StreamStore
from s3stream.manifest_records import LOG_PREFIX
from s3stream.store import LocalStore, ObjectStore
from tests.s3stream.faults import FaultyStore, InjectedFault
from tests.s3stream.test_forks import CONFIG, object_keys, uploaded
from tests.s3stream.test_stream_store import expected, new_stream, read_all


class LosesACommit(FaultyStore):
    """Once armed, the next manifest version is written but its answer is
    lost, and the store fails every manifest write from then on (an outage
    that began with that request)."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.armed = False
        self.lost = threading.Event()

    def put_if_absent(self, key: str, data: bytes) -> str:  # type: ignore[override]
        if self.armed and key.startswith(LOG_PREFIX):
            self.armed = False
            self.inner.put_if_absent(key, data)
            self.fail("put", prefix=LOG_PREFIX)
            self.lost.set()
            raise InjectedFault("put", key)
        return super().put_if_absent(key, data)


def test_a_fork_whose_commit_is_unsettled_at_close_keeps_its_copied_object(
    tmp_path: Path,
) -> None:
    bucket = LocalStore(tmp_path / "objects")
    faulty = LosesACommit(bucket)
    store = StreamStore.open(tmp_path / "node", faulty, CONFIG)
    source = new_stream(store)
    uploaded(store, source, 4, rounds=2)  # ranges [0, 12) and [12, 24), batches of 3
    fork = store.manifest.state.next_stream_id
    before = object_keys(bucket)
    faulty.armed = True
    with ThreadPoolExecutor(1) as pool:
        # At 18 the fork copies [12, 18) into an object of its own.
        forking = pool.submit(store.fork_stream, source, 18)
        assert faulty.lost.wait(30)
        store.close(flush=False)  # while the commit retries through the outage
        with pytest.raises(StoreClosed):
            forking.result(30)
    with StreamStore.open(tmp_path / "node", bucket, CONFIG) as reopened:
        state = reopened.manifest.state
        assert fork in state.streams  # the commit whose answer was lost landed
        named = {meta.key for meta in state.objects.values()}
        assert named - before, "the fork's copy is not named"
        assert named <= object_keys(bucket), f"named, but deleted: {named - object_keys(bucket)}"
        assert read_all(reopened, fork) == expected(source, 0, 6)
        assert read_all(reopened, source) == expected(source, 0, 8)


class LosesACommitThenRefusesTheCheck(FaultyStore):
    """Once armed, the next manifest version is written but its answer is
    lost, and the read-back that would settle it is refused (a permanent
    error, as denied access is): the commit raises with its outcome unknown
    while the store stays open."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.armed = False
        self.refuse_check = False

    def put_if_absent(self, key: str, data: bytes) -> str:  # type: ignore[override]
        if self.armed and key.startswith(LOG_PREFIX):
            self.armed = False
            self.inner.put_if_absent(key, data)
            self.refuse_check = True
            raise InjectedFault("put", key)
        return super().put_if_absent(key, data)

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        if self.refuse_check and key.startswith(LOG_PREFIX):
            self.refuse_check = False
            fault = InjectedFault("get", key)
            fault.transient = False
            raise fault
        return super().get_versioned(key)


def test_a_fork_whose_failed_commit_settles_later_as_landed_is_deleted(
    tmp_path: Path,
) -> None:
    bucket = LocalStore(tmp_path / "objects")
    faulty = LosesACommitThenRefusesTheCheck(bucket)
    with StreamStore.open(tmp_path / "node", faulty, CONFIG) as store:
        source = new_stream(store)
        uploaded(store, source, 4, rounds=2)
        fork = store.manifest.state.next_stream_id
        faulty.armed = True
        with pytest.raises(InjectedFault):
            store.fork_stream(source, 18)
        assert store.manifest.unsettled
        # The next commit settles the fork's version: it had landed. Nothing
        # holds the fork, so it must not stay in the manifest, where its
        # ranges would keep the source's objects from ever being freed.
        new_stream(store)
        assert not store.manifest.unsettled
        assert fork not in store.manifest.state.streams
        assert fork not in store.streams()
        assert read_all(store, source) == expected(source, 0, 8)
    with StreamStore.open(tmp_path / "node", bucket, CONFIG) as reopened:
        assert fork not in reopened.manifest.state.streams
        assert read_all(reopened, source) == expected(source, 0, 8)


def test_streams_whose_failed_creation_settles_later_as_landed_are_deleted(
    tmp_path: Path,
) -> None:
    bucket = LocalStore(tmp_path / "objects")
    faulty = LosesACommitThenRefusesTheCheck(bucket)
    with StreamStore.open(tmp_path / "node", faulty, CONFIG) as store:
        source = new_stream(store)
        first = store.manifest.state.next_stream_id
        faulty.armed = True
        with pytest.raises(InjectedFault):
            store.create_streams(2)
        assert store.manifest.unsettled
        # The next commit settles the creation's version: it had landed. Its
        # creator was told it failed, so nothing names the streams: they go,
        # as an engine's next open deletes streams no topic names.
        created = new_stream(store)
        assert not store.manifest.unsettled
        assert created == first + 2  # decided from the version that landed
        streams = store.manifest.state.streams
        assert first not in streams and first + 1 not in streams
        assert sorted(store.streams()) == [source, created]
    with StreamStore.open(tmp_path / "node", bucket, CONFIG) as reopened:
        assert sorted(reopened.manifest.state.streams) == [source, created]


class LosesACommitThenRefusesTwoChecks(LosesACommitThenRefusesTheCheck):
    """As its parent, and the read-back is refused once more: the first
    serial section after the failed fork cannot settle its version."""

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        if self.refuse_check and key.startswith(LOG_PREFIX):
            self.refuse_again = True
        elif getattr(self, "refuse_again", False) and key.startswith(LOG_PREFIX):
            self.refuse_again = False
            fault = InjectedFault("get", key)
            fault.transient = False
            raise fault
        return super().get_versioned(key)


def test_a_section_that_cannot_settle_a_lost_commit_decides_nothing(tmp_path: Path) -> None:
    # Had the section gone on, its holder would read the version before the
    # fork's (which had landed) and decide from it: here a new stream under
    # the fork's id, refused only when its commit found the fork there.
    bucket = LocalStore(tmp_path / "objects")
    faulty = LosesACommitThenRefusesTwoChecks(bucket)
    with StreamStore.open(tmp_path / "node", faulty, CONFIG) as store:
        source = new_stream(store)
        uploaded(store, source, 4, rounds=2)
        fork = store.manifest.state.next_stream_id
        faulty.armed = True
        with pytest.raises(InjectedFault):
            store.fork_stream(source, 18)
        with pytest.raises(InjectedFault):  # the store's error, nothing decided
            store.create_streams(1)
        assert store.manifest.unsettled
        created = new_stream(store)  # settled: the fork landed, and goes
        assert created == fork + 1
        assert not store.manifest.unsettled
        assert fork not in store.manifest.state.streams
        assert read_all(store, source) == expected(source, 0, 8)
