"""What a failed catalog write leaves behind: nothing. The catalog applies a
record only once it is durable (docs/design/0062), so a change whose write
fails (refused by the store, or accepted and then failed by the WAL) is in
force neither in the engine that failed to write it nor in the engine a
restart opens on the same WAL and bucket; and the two agree record for
record."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine import catalog as catalog_module
from engine.catalog import Catalog, CatalogState
from engine.engine import Engine
from engine.errors import EngineError
from s3stream import LOCAL, AppendOptions, S3StreamError, StoreFailed
from tests.engine.catalog_streams import loaded_state, started_catalog
from tests.server.catalog_faults import fail_next_catalog_write
from wal.segment import SegmentWriter

Change = Callable[[Engine], object]
Seen = Callable[[Engine], bool]

CHANGES: dict[str, tuple[Change, Seen]] = {
    "topic": (
        lambda e: e.create_topic("orders", 1),
        lambda e: "orders" in e.catalog.state.topics or "orders" in e.list_topics(),
    ),
    "acl": (
        lambda e: e.grant_unmask("orders", "User:alice"),
        lambda e: bool(e.catalog.state.acls),
    ),
    "credential": (
        lambda e: e.credentials.add("alice", "SCRAM-SHA-256", "pencil"),
        lambda e: e.credentials.get("alice", "SCRAM-SHA-256") is not None,
    ),
}


def refuse_catalog_submits(monkeypatch: pytest.MonkeyPatch, e: Engine) -> None:
    """The store refuses the catalog's append, as a failed or fenced store
    does: nothing accepted, nothing written."""
    fail_next_catalog_write(monkeypatch, e.catalog)


def fail_wal_writes(monkeypatch: pytest.MonkeyPatch, e: Engine) -> None:
    """The WAL's next write fails before a byte reaches the file: the
    append was accepted, and the store fails with the WAL."""

    def failing_write(self: SegmentWriter, buffers: list[bytes | memoryview]) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(SegmentWriter, "write", failing_write)


FAILURES = {"store refuses": refuse_catalog_submits, "WAL write fails": fail_wal_writes}


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("change", CHANGES)
def test_a_failed_write_is_in_force_neither_now_nor_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str, change: str
) -> None:
    make, seen = CHANGES[change]
    objects = f"file://{tmp_path / 'objects'}"
    first = engine.open(tmp_path / "data", objects)
    try:
        with monkeypatch.context() as faults:
            FAILURES[failure](faults, first)
            with pytest.raises((EngineError, S3StreamError)):
                make(first)
        assert not seen(first)
        after_failure = first.catalog.state.to_wire()
    finally:
        first.close()
    with engine.open(tmp_path / "data", objects) as restarted:
        assert not seen(restarted)
        assert restarted.catalog.state.to_wire() == after_failure
        make(restarted)
        assert seen(restarted)


class MemoryStream:
    """The catalog's stream in memory, failing on cue: ``refuse`` refuses
    the next append (nothing accepted); ``lose`` accepts it and fails it
    (written nowhere). ``durable`` is what a restart reads back."""

    max_append_bytes = 1 << 20

    def __init__(self) -> None:
        self.durable: list[bytes] = []
        self.refuse = self.lose = self.refuse_snapshot = False
        self._gathered = False
        """Appends are a snapshot's: the catalog sends those gathered."""

    def next_offset(self, stream_id: int) -> int:
        return len(self.durable)

    def submit(
        self,
        stream_id: int,
        base_offset: int,
        last_offset: int,
        payload: bytes,
        options: AppendOptions = LOCAL,
    ) -> Future[int]:
        if self.refuse or (self.refuse_snapshot and self._gathered):
            raise StoreFailed(OSError(errno.EIO, "refused"))
        done: Future[int] = Future()
        if self.lose:
            done.set_exception(StoreFailed(OSError(errno.EIO, "lost")))
        else:
            self.durable.append(payload)
            done.set_result(len(self.durable))
        return done

    @contextlib.contextmanager
    def gathered(self) -> Iterator[None]:
        self._gathered = True
        try:
            yield
        finally:
            self._gathered = False

    def trim(self, stream_id: int, offset: int) -> None:
        self.durable = self.durable[offset:]

    def read_back(self) -> CatalogState:
        return loaded_state(self.durable)


def memory_catalog() -> tuple[Catalog, MemoryStream]:
    stream = MemoryStream()
    return started_catalog(stream), stream


def topic_record(name: str) -> list[Any]:
    return ["create_topic", [name, b"\0" * 16, {}, [[1, 2]], 0]]


RECORDS = st.one_of(
    st.sampled_from("abc").map(topic_record),
    st.sampled_from("abc").map(lambda name: ["delete_topic", name]),
    st.integers(0, 10_000).map(lambda end: ["producer_ids", end]),
    st.sampled_from("xy").map(lambda user: ["user_credentials", user, "SCRAM-SHA-256", None]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(RECORDS, st.sampled_from(["written", "refused", "lost"])), max_size=20))
def test_the_state_is_always_what_a_restart_reads_back(
    writes: list[tuple[list[Any], str]],
) -> None:
    catalog, stream = memory_catalog()
    lost_before = False
    for record, outcome in writes:
        stream.refuse, stream.lose = outcome == "refused", outcome == "lost"
        try:
            catalog.append(record)
            assert outcome == "written" and not lost_before
        except S3StreamError:
            assert outcome != "written" or lost_before
        lost_before |= outcome == "lost"
        assert catalog.state.to_wire() == stream.read_back().to_wire()


def test_after_an_unknown_outcome_the_catalog_writes_no_more() -> None:
    """Accepted and then failed, a write may yet be in the WAL a restart
    reads: the catalog builds nothing on a state that may not be the one
    restarted, as Kafka's controller resigns after a failed write."""
    catalog, stream = memory_catalog()
    stream.lose = True
    with pytest.raises(StoreFailed):
        catalog.append(topic_record("a"))
    stream.lose = False
    with pytest.raises(StoreFailed):
        catalog.append(topic_record("b"))
    assert stream.read_back().topics == {} == catalog.state.topics


def test_a_refused_write_leaves_the_catalog_writing() -> None:
    """Refused before it was accepted, a write is known to be nowhere."""
    catalog, stream = memory_catalog()
    stream.refuse = True
    with pytest.raises(StoreFailed):
        catalog.append(topic_record("a"))
    stream.refuse = False
    catalog.append(topic_record("b"))
    assert set(catalog.state.topics) == {"b"} == set(stream.read_back().topics)


def test_a_record_that_cannot_apply_is_refused_before_it_is_written() -> None:
    """Applied only once durable, a record that failed to apply then would
    be in the catalog and fail every open after: it is checked first."""
    catalog, stream = memory_catalog()
    written = len(stream.durable)
    for record in (
        ["alter_configs", "missing", {"retention.ms": "1"}],
        ["add_partitions_many", [["missing", [[3, 4]]]]],
        ["configs_many", [["create_topic", topic_record("a")[1]]]],
        ["no_such_kind"],
    ):
        with pytest.raises(ValueError):
            catalog.append(record)
    catalog.append_all([topic_record("a"), ["alter_configs", "a", {"retention.ms": "1"}]])
    assert len(stream.durable) == written + 2
    assert catalog.state.topics["a"].configs == {"retention.ms": "1"}
    with pytest.raises(ValueError, match="names topic 'a', which is not there"):
        catalog.append_all([["delete_topic", "a"], ["alter_configs", "a", {}]])
    assert len(stream.durable) == written + 2


def test_a_failed_snapshot_fails_no_change_and_is_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The changes before a snapshot are durable and applied: its writer is
    told they succeeded, and the next write snapshots."""
    monkeypatch.setattr(catalog_module, "SNAPSHOT_EVERY", 2)
    catalog, stream = memory_catalog()
    stream.refuse_snapshot = True
    catalog.append(topic_record("a"))
    assert "a" in catalog.state.topics
    assert msgpack.unpackb(stream.durable[0])[0] == "catalog"  # not trimmed to a snapshot
    stream.refuse_snapshot = False
    catalog.append(topic_record("b"))
    assert msgpack.unpackb(stream.durable[0])[0] == "snapshot"
    assert stream.read_back().to_wire() == catalog.state.to_wire()
