"""A writer's compaction after another process took the bucket over (on
moto's S3 server): what it deletes is what the new owner counts as garbage
too, its merge is fenced before it removes anything, and what its merge
put is an orphan that the next open deletes. The new owner reads every
committed record throughout."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3stream import Fenced, StreamStore, compaction
from s3stream.store import S3Store
from s3stream.uploader import OBJECT_PREFIX, now_ms
from tests.s3stream.conftest import S3Endpoint
from tests.s3stream.test_compaction import CONFIG, uploads
from tests.s3stream.test_stream_store import expected, new_stream, read_all

GRACE = dataclasses.replace(CONFIG, garbage_grace_s=3600, force_split_after_s=86400)
"""Removed objects wait an hour: the takeover comes while they do (and no
stream-set object is old enough to be split when the hour is over)."""
ROUNDS = 8


@pytest.fixture
def second(s3_endpoint: S3Endpoint, s3_store: S3Store) -> Iterator[S3Store]:
    """Another process's store on the same bucket and prefix."""
    store = s3_endpoint.store(s3_store.prefix)
    yield store
    store.close()


def keys(store: S3Store) -> set[str]:
    return {info.key for info in store.list(OBJECT_PREFIX)}


def hours_later(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fenced writer's compaction clock two hours on: every grace is over."""
    later = now_ms() + 2 * 3600 * 1000
    monkeypatch.setattr(compaction, "now_ms", lambda: later)


def test_a_fenced_writers_garbage_deletion_takes_only_the_new_owners_garbage(
    tmp_path: Path, s3_store: S3Store, second: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = StreamStore.open(tmp_path / "a", s3_store, GRACE)
    try:
        streams = [new_stream(a) for _ in range(3)]
        uploads(a, streams, rounds=ROUNDS)
        a.compact()  # merged; the inputs wait out the grace
        waiting = set(a.manifest.state.garbage)
        assert len(waiting) == ROUNDS
        with StreamStore.open(tmp_path / "b", second, GRACE) as b:
            assert set(b.manifest.state.garbage) == waiting
            hours_later(monkeypatch)
            with pytest.raises(Fenced):
                a.compact()  # deletes its expired garbage, then its commit is fenced
            assert not waiting & keys(second)
            live = {meta.key for meta in b.manifest.state.objects.values()}
            assert live <= keys(second)
            for stream in streams:
                assert read_all(b, stream) == expected(stream, 0, ROUNDS * 2)
            b.compact()  # the new owner's own clean-up of what is gone already
            for stream in streams:
                assert read_all(b, stream) == expected(stream, 0, ROUNDS * 2)
    finally:
        a.close(flush=False)


def test_a_fenced_writers_merge_removes_nothing_and_its_objects_go_at_the_next_open(
    tmp_path: Path, s3_store: S3Store, second: S3Store
) -> None:
    a = StreamStore.open(tmp_path / "a", s3_store, CONFIG)
    try:
        streams = [new_stream(a) for _ in range(3)]
        uploads(a, streams, rounds=ROUNDS)
        with StreamStore.open(tmp_path / "b", second, CONFIG) as b:
            named = {meta.key for meta in b.manifest.state.objects.values()}
            with pytest.raises(Fenced):
                a.compact()  # puts the merged object, then its commit is fenced
            assert named <= keys(second)  # no input removed or deleted
            assert len(keys(second) - named) == 1  # the merged object: an orphan
            for stream in streams:
                assert read_all(b, stream) == expected(stream, 0, ROUNDS * 2)
    finally:
        a.close(flush=False)
    with StreamStore.open(tmp_path / "b", second, CONFIG) as b:
        assert b.recovery.orphans_deleted == 1
        assert keys(second) == {meta.key for meta in b.manifest.state.objects.values()}
        for stream in streams:
            assert read_all(b, stream) == expected(stream, 0, ROUNDS * 2)


def test_a_fenced_writer_whose_merge_input_the_new_owner_deleted_learns_it_is_fenced(
    tmp_path: Path,
    s3_store: S3Store,
    second: S3Store,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The new owner merges the objects and deletes them at once (no grace):
    the old writer's merge finds an input gone, which is the takeover, not
    damage to leave alone."""
    a = StreamStore.open(tmp_path / "a", s3_store, CONFIG)
    try:
        streams = [new_stream(a) for _ in range(3)]
        uploads(a, streams, rounds=ROUNDS)
        with StreamStore.open(tmp_path / "b", second, CONFIG) as b:
            b.compact()
            assert len(b.manifest.state.objects) == 1
            with pytest.raises(Fenced):
                a.compact()
            assert a.fenced
            assert "cannot be merged" not in caplog.text
            for stream in streams:
                assert read_all(b, stream) == expected(stream, 0, ROUNDS * 2)
    finally:
        a.close(flush=False)


def test_a_fenced_writers_read_of_an_object_the_new_owner_merged_away_is_fenced_not_damage(
    tmp_path: Path, s3_store: S3Store, second: S3Store
) -> None:
    """The old writer's manifest still names the objects the new owner
    merged and deleted (no grace): its read meets them gone, which is the
    takeover (Fenced: a client looks for the partition's leader again),
    not damage (CORRUPT_MESSAGE: a consumer stops)."""
    with StreamStore.open(tmp_path / "first", s3_store, CONFIG) as first:
        streams = [new_stream(first) for _ in range(3)]
        uploads(first, streams, rounds=ROUNDS)
    a = StreamStore.open(tmp_path / "a", s3_store, CONFIG)
    try:
        with StreamStore.open(tmp_path / "b", second, CONFIG) as b:
            b.compact()
            assert len(b.manifest.state.objects) == 1
            with pytest.raises(Fenced):
                a.fetch(streams[0], 0)
            assert a.fenced
            for stream in streams:
                assert read_all(b, stream) == expected(stream, 0, ROUNDS * 2)
    finally:
        a.close(flush=False)
