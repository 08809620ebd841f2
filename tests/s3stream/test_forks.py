"""Forks of streams: a fork reads its source's committed ranges below the
fork point from the same objects (nothing copied), takes its own appends
after it, and keeps its view whatever the source goes through (appends,
retention, merges, a cleaner's rewrite, deletion) and across restarts;
objects go only once no stream holds a range of them."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3stream import (
    ForkPointInsideRange,
    OffsetOutOfRange,
    Retention,
    StreamStore,
    StreamStoreConfig,
)
from s3stream.chain_verify import verify_stream
from s3stream.objects import StoredBatch
from s3stream.store import MemoryStore, ObjectStore
from s3stream.uploader import OBJECT_PREFIX
from tests.s3stream.test_stream_store import expected, fill, new_stream, read_all

CONFIG = StreamStoreConfig(
    upload_interval_s=3600,
    compaction_interval_s=3600,
    small_object_bytes=64 * 1024,
    stream_object_bytes=8 * 1024,
    block_bytes=1024,
    garbage_grace_s=0,
    log_cache_bytes=0,  # reads after upload go to objects
)


@pytest.fixture
def bucket() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def store(tmp_path: Path, bucket: MemoryStore) -> Iterator[StreamStore]:
    with StreamStore.open(tmp_path / "node", bucket, CONFIG) as opened:
        yield opened


def object_keys(bucket: ObjectStore) -> set[str]:
    return {info.key for info in bucket.list(OBJECT_PREFIX)}


def uploaded(store: StreamStore, stream_id: int, count: int, rounds: int = 1) -> None:
    """``rounds`` uploads of ``count`` batches each: one range per round."""
    for _ in range(rounds):
        fill(store, stream_id, count)
        assert store.flush(timeout=30)


def open_fork(store: StreamStore, source: int, at: int | None = None) -> int:
    fork = store.fork_stream(source, at)
    store.open_stream(fork, 1)
    return fork


def test_a_fork_reads_the_source_below_the_fork_point_and_only_its_own_appends_after(
    store: StreamStore, bucket: MemoryStore
) -> None:
    source = new_stream(store)
    uploaded(store, source, 4, rounds=2)
    fill(store, source, 2)  # still only in the WAL: forking uploads it first
    keys = object_keys(bucket)
    fork = open_fork(store, source)
    assert (store.start_offset(fork), store.end_offset(fork)) == (0, 30)
    assert read_all(store, fork) == expected(source, 0, 10)
    # Nothing was copied: the fork's ranges are the source's objects.
    forked_keys = object_keys(bucket)
    assert len(forked_keys - keys) == 1  # the upload of the WAL's tail, the source's
    assert store.committed_ranges(fork) == store.committed_ranges(source)

    fill(store, fork, 3)
    fill(store, source, 5)
    assert read_all(store, fork) == expected(source, 0, 10) + expected(fork, 30, 3)
    assert read_all(store, source) == expected(source, 0, 15)
    assert store.flush(timeout=30)
    assert read_all(store, fork) == expected(source, 0, 10) + expected(fork, 30, 3)
    assert read_all(store, source) == expected(source, 0, 15)


def test_a_fork_at_an_earlier_range_boundary_starts_there(store: StreamStore) -> None:
    source = new_stream(store)
    uploaded(store, source, 4, rounds=3)  # ranges [0, 12), [12, 24), [24, 36)
    fork = open_fork(store, source, at=12)
    assert store.end_offset(fork) == 12
    assert read_all(store, fork) == expected(source, 0, 4)
    fill(store, fork, 2)
    assert read_all(store, fork) == expected(source, 0, 4) + expected(fork, 12, 2)
    empty = open_fork(store, source, at=0)
    assert read_all(store, empty) == []


def test_a_fork_inside_a_range_copies_only_that_ranges_batches_below_the_point(
    store: StreamStore, bucket: MemoryStore
) -> None:
    source = new_stream(store)
    uploaded(store, source, 4, rounds=2)  # ranges [0, 12) and [12, 24), batches of 3
    keys = object_keys(bucket)
    fork = open_fork(store, source, at=18)
    assert read_all(store, fork) == expected(source, 0, 6)
    state = store.manifest.state
    (first, _, first_id), (copy_start, copy_end, copy_id) = state.ranges[fork].entries
    assert state.source_of(fork, first, first_id) == source  # shared
    assert (copy_start, copy_end) == (12, 18)
    assert state.source_of(fork, copy_start, copy_id) == fork  # the fork's own copy
    assert len(object_keys(bucket) - keys) == 1
    fill(store, fork, 2)
    assert store.flush(timeout=30)
    assert read_all(store, fork) == expected(source, 0, 6) + expected(fork, 18, 2)
    verdict = verify_stream(bucket, store.manifest.state, fork)
    assert verdict.ok and verdict.from_genesis and verdict.end_offset == 24, verdict
    assert read_all(store, source) == expected(source, 0, 8)


def test_a_fork_point_inside_a_batch_or_outside_the_stream_is_refused(
    store: StreamStore, bucket: MemoryStore
) -> None:
    source = new_stream(store)
    uploaded(store, source, 4)  # one range [0, 12), batches of 3
    streams, keys = store.streams(), object_keys(bucket)
    with pytest.raises(ForkPointInsideRange) as inside:
        store.fork_stream(source, at=7)
    assert (inside.value.range_start, inside.value.range_end) == (6, 9)
    with pytest.raises(OffsetOutOfRange):
        store.fork_stream(source, at=13)
    with pytest.raises(OffsetOutOfRange):
        store.fork_stream(source, at=-1)
    assert store.streams() == streams  # nothing was created
    assert object_keys(bucket) == keys  # nor put


def test_a_fork_point_inside_a_cleaned_range_is_refused(store: StreamStore) -> None:
    source = new_stream(store)
    uploaded(store, source, 4)
    store.replace_range(source, 0, 12, [StoredBatch(0, 3, b"kept"), StoredBatch(6, 9, b"kept")])
    with pytest.raises(ForkPointInsideRange) as inside:
        store.fork_stream(source, at=3)
    assert (inside.value.range_start, inside.value.range_end) == (0, 12)


@pytest.mark.parametrize("at", [24, 27, 36], ids=["at-its-end", "inside-the-next", "past-both"])
def test_a_fork_after_a_cleaned_range_keeps_its_rewrite_and_a_chain_that_verifies(
    store: StreamStore, bucket: MemoryStore, at: int
) -> None:
    """A fork point past a cleaned range shares that range as the source
    wrote it, rewrite and all, and the range copied below the point is one
    no cleaner rewrote (a point inside a cleaned range is refused, above):
    so the copied links, made without a rewrite, lose none, and the fork's
    chain verifies with the source's rewrite reported, not as tampering."""
    source = new_stream(store)
    uploaded(store, source, 4, rounds=3)  # ranges [0, 12), [12, 24), [24, 36)
    store.replace_range(source, 12, 24, [StoredBatch(12, 15, b"cleaned")])
    fork = open_fork(store, source, at)
    state = store.manifest.state
    below = [batch for batch in _read_with_gaps(store, source) if batch[0] < at]
    assert _read_with_gaps(store, fork) == below and below[4][:2] == (12, 15)
    source_verdict = verify_stream(bucket, state, source)
    verdict = verify_stream(bucket, state, fork)
    assert verdict.ok and verdict.from_genesis and verdict.end_offset == at, verdict
    assert verdict.rewrites == source_verdict.rewrites and len(verdict.rewrites) == 1
    for start, _, object_id in state.ranges[fork].entries:
        links = state.range_meta(fork, start, object_id)
        origin = state.range_meta(source, start, _source_object(store, source, start))
        assert links is not None and origin is not None and links.links is not None
        assert origin.links is not None
        assert links.links.rewrite == origin.links.rewrite
        assert (links.links.rewrite is not None) == (start == 12)


def _read_with_gaps(store: StreamStore, stream_id: int) -> list[tuple[int, int, bytes]]:
    """Every batch of the stream, over the gaps a cleaner leaves."""
    out: list[tuple[int, int, bytes]] = []
    offset = store.start_offset(stream_id)
    while offset < store.end_offset(stream_id):
        result = store.fetch(stream_id, offset, 4096)
        out += [(b.base_offset, b.end_offset, bytes(b.payload)) for b in result.batches]
        offset = result.next_offset
    return out


def _source_object(store: StreamStore, stream_id: int, start: int) -> int:
    state = store.manifest.state
    return next(oid for s, _, oid in state.ranges[stream_id].entries if s == start)


def test_a_fork_of_a_fork_reads_both_histories(store: StreamStore) -> None:
    source = new_stream(store)
    uploaded(store, source, 4)
    first = open_fork(store, source)
    uploaded(store, first, 3)
    second = open_fork(store, first)
    fill(store, second, 2)
    history = expected(source, 0, 4) + expected(first, 12, 3)
    assert read_all(store, second) == history + expected(second, 21, 2)
    state = store.manifest.state
    # The second fork reads the first range from the source's own blocks.
    start, _, object_id = state.ranges[second].entries[0]
    assert state.source_of(second, start, object_id) == source


def test_deleting_the_source_keeps_every_object_the_fork_holds(
    store: StreamStore, bucket: MemoryStore
) -> None:
    source = new_stream(store)
    uploaded(store, source, 4, rounds=3)
    fork = open_fork(store, source)
    fill(store, fork, 2)
    held = {store.manifest.state.objects[oid].key for oid in _ids(store, fork)}
    assert len(held) == 3
    store.delete_stream(source)
    for _ in range(3):
        store.compact()
    assert held <= object_keys(bucket)
    assert read_all(store, fork) == expected(source, 0, 12) + expected(fork, 36, 2)
    # The last stream holding them goes: then the objects go too.
    assert store.flush(timeout=30)
    store.delete_stream(fork)
    store.compact()
    assert object_keys(bucket) == set()


def test_deleting_the_fork_leaves_the_source_and_its_objects(
    store: StreamStore, bucket: MemoryStore
) -> None:
    source = new_stream(store)
    uploaded(store, source, 4, rounds=2)
    fork = open_fork(store, source)
    uploaded(store, fork, 3)
    store.delete_stream(fork)
    store.compact()
    assert read_all(store, source) == expected(source, 0, 8)
    # Unshared again, the source's small objects were merged as any others'
    # are; the bucket holds the source's objects and nothing of the fork's.
    source_keys = {store.manifest.state.objects[oid].key for oid in _ids(store, source)}
    assert source_keys == object_keys(bucket)
    assert store.manifest.state.shares == {}


def test_source_retention_merges_and_cleaning_leave_the_forks_view(
    store: StreamStore, bucket: MemoryStore
) -> None:
    source = new_stream(store)
    uploaded(store, source, 4, rounds=4)
    fork = open_fork(store, source)
    view = read_all(store, fork)
    # The source moves on: more uploads, merged (small objects), its oldest
    # ranges rewritten by a cleaner, then trimmed by retention.
    uploaded(store, source, 4, rounds=3)
    store.compact()
    start, end = store.committed_ranges(source)[1]
    store.replace_range(source, start, end, [StoredBatch(start, start + 3, b"cleaned")])
    store.set_retention(source, Retention(bytes=1))
    for _ in range(3):
        store.compact()
    assert store.start_offset(source) > 0
    assert read_all(store, fork) == view
    # The fork's own retention frees what only it still held.
    store.set_retention(fork, Retention(bytes=1))
    for _ in range(3):
        store.compact()
    live = {store.manifest.state.objects[oid].key for s in (source, fork) for oid in _ids(store, s)}
    assert object_keys(bucket) == live


def test_forks_survive_a_restart_with_their_history_and_chain(tmp_path: Path) -> None:
    bucket = MemoryStore()
    config = dataclasses.replace(CONFIG, checkpoint_every=3)  # the shares go through checkpoints
    with StreamStore.open(tmp_path / "node", bucket, config) as store:
        source = new_stream(store)
        uploaded(store, source, 4, rounds=2)
        fork = open_fork(store, source)
        second = open_fork(store, fork)
        uploaded(store, fork, 2)
        fill(store, second, 1)  # only in the WAL at the crash below
        store.close(flush=False)
    with StreamStore.open(tmp_path / "node", bucket, config) as store:
        assert read_all(store, fork) == expected(source, 0, 8) + expected(fork, 24, 2)
        assert read_all(store, second) == expected(source, 0, 8) + expected(second, 24, 1)
        store.delete_stream(source)
        store.compact()
        store.open_stream(fork, 2)
        fill(store, fork, 1)
        assert store.flush(timeout=30)
        state = store.manifest.state
        for stream_id in (fork, second):
            verdict = verify_stream(bucket, state, stream_id)
            assert verdict.ok and verdict.from_genesis, verdict
            assert verdict.end_offset == store.end_offset(stream_id)
    with StreamStore.open(tmp_path / "node", bucket, config) as store:
        assert read_all(store, fork) == (
            expected(source, 0, 8) + expected(fork, 24, 2) + expected(fork, 30, 1)
        )


def test_forks_on_s3_keep_their_objects_after_the_source_goes(
    tmp_path: Path, s3_store: ObjectStore
) -> None:
    with StreamStore.open(tmp_path / "node", s3_store, CONFIG) as store:
        source = new_stream(store)
        uploaded(store, source, 4, rounds=2)
        fork = open_fork(store, source)
        store.delete_stream(source)
        store.compact()
        assert read_all(store, fork) == expected(source, 0, 8)
        held = {store.manifest.state.objects[oid].key for oid in _ids(store, fork)}
        assert held and held <= object_keys(s3_store)
    with StreamStore.open(tmp_path / "node", s3_store, CONFIG) as store:
        assert read_all(store, fork) == expected(source, 0, 8)


def _entries(store: StreamStore, stream_id: int) -> list[tuple[int, int, int]]:
    return list(store.manifest.state.ranges[stream_id].entries)


def _ids(store: StreamStore, stream_id: int) -> set[int]:
    start = store.start_offset(stream_id)
    return {oid for _, end, oid in _entries(store, stream_id) if end > start}


_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["append", "append", "fork", "delete", "retention", "compact", "restart"]),
        st.integers(0, 11),
    ),
    max_size=14,
)


@given(_STEPS)
@settings(
    max_examples=40 if os.environ.get("TIDELOG_FAULTS") == "full" else 8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
def test_random_histories_of_forks_read_as_the_model_says(steps: list[tuple[str, int]]) -> None:
    """Appends, forks at any batch boundary, deletes, retention, merges and
    restarts: every stream reads exactly what the model holds from its start,
    and no object a stream can read is ever deleted from the bucket."""
    bucket = MemoryStore()
    config = dataclasses.replace(CONFIG, checkpoint_every=4)
    model: dict[int, list[tuple[int, int, bytes]]] = {}
    with tempfile.TemporaryDirectory() as directory:
        store = StreamStore.open(directory, bucket, config)
        epoch = 1
        try:
            model[new_stream(store)] = []
            for action, n in steps:
                ids = sorted(model)
                stream_id = ids[n % len(ids)] if ids else None
                if action == "append" and stream_id is not None:
                    start = store.next_offset(stream_id)
                    fill(store, stream_id, 1 + n % 3)
                    model[stream_id] += expected(stream_id, start, 1 + n % 3)
                    if n % 2:
                        assert store.flush(timeout=30)
                elif action == "fork" and stream_id is not None:
                    start = store.start_offset(stream_id)
                    held = [b for b in model[stream_id] if b[1] > start]
                    points = [start] + [end for _, end, _ in held]
                    # Half at the end (all shared), half anywhere (a range copied).
                    at = points[-1] if n < 6 else points[n % len(points)]
                    fork = store.fork_stream(stream_id, at)
                    store.open_stream(fork, epoch)
                    model[fork] = [b for b in held if b[1] <= at]
                elif action == "delete" and stream_id is not None and len(model) > 1:
                    store.delete_stream(stream_id)
                    del model[stream_id]
                elif action == "retention" and stream_id is not None:
                    store.set_retention(stream_id, Retention(bytes=1))
                    store.compact()
                    store.set_retention(stream_id, Retention())
                elif action == "compact":
                    store.compact()
                elif action == "restart":
                    store.close()
                    store = StreamStore.open(directory, bucket, config)
                    epoch += 1
                    for known in model:
                        store.open_stream(known, epoch)
                for known, batches in model.items():
                    start = store.start_offset(known)
                    assert read_all(store, known) == [b for b in batches if b[1] > start]
                state = store.manifest.state
                readable = {
                    state.objects[oid].key
                    for known in model
                    for _, end, oid in state.ranges[known].entries
                    if end > store.start_offset(known)
                }
                assert readable <= object_keys(bucket)
        finally:
            store.close()
