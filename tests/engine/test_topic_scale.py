"""Creating and deleting topics in bulk costs what the change touches.

Engine.create_topics makes all of its topics with one manifest commit and
one catalog record, so a request's manifest bytes do not grow with the
topics already there, and after a failure either every topic of it exists
or none does; delete_topics likewise. The catalog's snapshots stay a
constant share of what is appended to it, however topics are created.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import engine
from engine import (
    InvalidConfig,
    InvalidPartitions,
    InvalidReplicationFactor,
    InvalidTopic,
    NewTopic,
    StorageError,
    TopicDescription,
    TopicExists,
    UnknownTopic,
)
from tests.engine.helpers_records import batch
from tests.engine.recording_store import NO_UPLOADS, RecordingStore


def _open(tmp_path: Path, store: RecordingStore) -> engine.Engine:
    return engine.open(
        tmp_path / "node", store, engine.EngineConfig(store=NO_UPLOADS, cleaner_interval_s=3600)
    )


def _names(prefix: str, count: int) -> list[NewTopic]:
    return [NewTopic(f"{prefix}-{i}", 1) for i in range(count)]


def test_create_topics_is_one_manifest_commit_and_one_catalog_record(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "bucket")
    with _open(tmp_path, store) as opened:
        mark = len(store.manifest_puts)
        catalog_end = opened.store.next_offset(opened.catalog.stream_id)
        results = opened.create_topics([NewTopic(f"t-{i}", 2) for i in range(300)])
        assert all(isinstance(r, TopicDescription) and len(r.partitions) == 2 for r in results)
        (ops,) = store.deltas_since(mark)
        assert [op[0] for op in ops] == ["create_stream"] * 1200  # a data and a state stream each
        assert opened.store.next_offset(opened.catalog.stream_id) == catalog_end + 1
        assert len(opened.list_topics()) == 300


def test_manifest_bytes_per_request_do_not_grow_with_the_topics_already_there(
    tmp_path: Path,
) -> None:
    """The fifth request of 400 topics writes what the first wrote; when
    every topic cost a commit of its own (and every 64 commits a checkpoint
    of the whole manifest), it wrote more the more topics there were."""
    store = RecordingStore(tmp_path / "bucket")
    with _open(tmp_path, store) as opened:
        written = []
        for request in range(5):
            mark = len(store.manifest_puts)
            opened.create_topics(_names(f"r{request}", 400))
            written.append(store.bytes_since(mark))
            assert len(store.deltas_since(mark)) == 1
        assert written[-1] <= 1.2 * written[0], written


def test_create_topics_answers_per_topic_and_creates_the_rest(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "bucket")
    with _open(tmp_path, store) as opened:
        opened.create_topic("exists")
        results = opened.create_topics(
            [
                NewTopic("good-1", 3, {"cleanup.policy": "compact"}),
                NewTopic("bad name!"),
                NewTopic("exists"),
                NewTopic("no-partitions", 0),
                NewTopic("replicated", 1, replication_factor=3),
                NewTopic("bad-config", 1, {"no.such.config": "1"}),
                NewTopic("good-2"),
                NewTopic("good-2"),
            ]
        )
        kinds = [type(r) for r in results]
        assert kinds == [
            TopicDescription,
            InvalidTopic,
            TopicExists,
            InvalidPartitions,
            InvalidReplicationFactor,
            InvalidConfig,
            TopicDescription,
            TopicExists,
        ]
        assert opened.list_topics() == ["exists", "good-1", "good-2"]
        assert opened.partition_count("good-1") == 3
        assert opened.topic_config("good-1").compact
        checked = opened.create_topics(_names("checked", 3), validate_only=True)
        assert all(isinstance(r, TopicDescription) for r in checked)
        assert opened.list_topics() == ["exists", "good-1", "good-2"]


def test_a_creation_that_fails_leaves_no_topic_and_no_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The streams are committed before the catalog record that names them;
    if that record cannot be written, no topic exists, now or after a
    restart, and the streams are deleted when the engine opens again."""
    store = RecordingStore(tmp_path / "bucket")
    with _open(tmp_path, store) as opened:
        streams = opened.store.streams()

        def refuse(records: list[list[Any]]) -> None:
            raise StorageError("injected: the catalog cannot be written")

        # Every catalog write goes through append_all.
        monkeypatch.setattr(opened.catalog, "append_all", refuse)
        with pytest.raises(StorageError):
            opened.create_topics(_names("lost", 50))
        assert opened.list_topics() == []
        monkeypatch.undo()
    with _open(tmp_path, store) as reopened:
        assert reopened.list_topics() == []
        assert reopened.store.streams() == streams


def test_delete_topics_is_one_catalog_record_and_one_manifest_commit(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "bucket")
    with _open(tmp_path, store) as opened:
        opened.create_topics(_names("d", 200))
        streams = len(opened.store.streams())
        mark = len(store.manifest_puts)
        catalog_end = opened.store.next_offset(opened.catalog.stream_id)
        names = [f"d-{i}" for i in range(200)]
        results = opened.delete_topics([*names, "unknown", "d-0"])
        assert results[:200] == [None] * 200
        assert [type(r) for r in results[200:]] == [UnknownTopic, UnknownTopic]
        (ops,) = store.deltas_since(mark)
        assert [op[0] for op in ops] == ["delete_stream"] * 400
        assert opened.store.next_offset(opened.catalog.stream_id) == catalog_end + 1
        assert len(opened.store.streams()) == streams - 400
        assert opened.list_topics() == []
    with _open(tmp_path, store) as reopened:
        assert reopened.list_topics() == []


def test_reopened_engine_sees_every_topic_of_every_request(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "bucket")
    with _open(tmp_path, store) as opened:
        for request in range(3):
            opened.create_topics(_names(f"r{request}", 150))
        opened.delete_topics([f"r1-{i}" for i in range(150)])
        ids = {name: opened.topic_id(name) for name in opened.list_topics()}
    with _open(tmp_path, store) as reopened:
        assert {name: reopened.topic_id(name) for name in reopened.list_topics()} == ids
        assert len(ids) == 300


def test_catalog_snapshots_stay_a_share_of_what_is_appended(tmp_path: Path) -> None:
    """Topics created one at a time: a snapshot of the whole catalog is
    written once as many bytes were appended since the last one, so all the
    snapshots together stay within a few times the final catalog (every
    128 records, they added up to the square of the topic count)."""
    store = RecordingStore(tmp_path / "bucket")
    with _open(tmp_path, store) as opened:
        appended: list[int] = []
        catalog = opened.catalog
        real_store = catalog.store

        class CountingStore:
            def __getattr__(self, name: str) -> Any:
                return getattr(real_store, name)

            def append(
                self, stream_id: int, base: int, last: int, payload: bytes, options: Any
            ) -> int:
                appended.append(len(payload))
                return real_store.append(stream_id, base, last, payload, options)

        catalog.store = CountingStore()  # type: ignore[assignment]
        for i in range(1500):
            opened.create_topic(f"one-{i}")
        catalog.store = real_store
        final = len(catalog_snapshot(catalog))
        assert sum(appended) <= 5 * final, (sum(appended), final)


def catalog_snapshot(catalog: Any) -> bytes:
    import msgpack

    return bytes(msgpack.packb(["snapshot", catalog.state.to_wire()], use_bin_type=True))


def test_partitions_never_written_to_write_no_checkpoint(tmp_path: Path) -> None:
    """A checkpoint of an empty partition records nothing: thousands of new
    topics must not cost thousands of state-stream appends, at each
    checkpoint pass and each restart."""
    store = RecordingStore(tmp_path / "bucket")
    with _open(tmp_path, store) as opened:
        opened.create_topics(_names("empty", 100))
        opened.produce("empty-0", 0, batch([b"v"]))
        opened.checkpoint()
        states = [
            opened.store.next_offset(opened.partition(f"empty-{i}", 0).state_stream_id)
            for i in range(100)
        ]
        assert states == [1] + [0] * 99


def test_create_partitions_many_is_one_commit_and_one_catalog_record(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "bucket")
    with _open(tmp_path, store) as opened:
        opened.create_topics(_names("g", 300))
        mark = len(store.manifest_puts)
        catalog_end = opened.store.next_offset(opened.catalog.stream_id)
        totals = [(f"g-{i}", 3) for i in range(300)]
        results = opened.create_partitions_many([*totals, ("g-0", 5), ("unknown", 2), ("g-1", 1)])
        assert results[:300] == [None] * 300
        assert [type(r) for r in results[300:]] == [
            InvalidPartitions,
            UnknownTopic,
            InvalidPartitions,
        ]
        (ops,) = store.deltas_since(mark)
        assert len(ops) == 300 * 2 * 2  # two new partitions, each a data and a state stream
        assert opened.store.next_offset(opened.catalog.stream_id) == catalog_end + 1
        assert {opened.partition_count(f"g-{i}") for i in range(300)} == {3}
        assert opened.create_partitions_many([("g-0", 4)], validate_only=True) == [None]
        assert opened.partition_count("g-0") == 3
        opened.produce("g-7", 2, batch([b"grown"]))
    with _open(tmp_path, store) as reopened:
        assert {reopened.partition_count(f"g-{i}") for i in range(300)} == {3}
        assert reopened.offsets("g-7", 2) == (0, 1)
