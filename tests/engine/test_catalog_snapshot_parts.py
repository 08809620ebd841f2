"""A catalog snapshot larger than one append is written in parts
(docs/engine-format.md, "Snapshots in parts"): the catalog is trimmed
only once every part is durable, so a snapshot stopped part way (a part
refused or failed, a crash after any part) leaves the log a restart loads
what it loaded before, and the next snapshot completes. Here on a stream
held in memory whose appends are as small as a test draws them; the
engine's own store, local and S3, in test_catalog_snapshot_parts_engine.py."""

from __future__ import annotations

import contextlib
import errno
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import catalog as catalog_module
from engine.catalog import (
    PARTS_FORMAT_VERSION,
    SNAPSHOT_PART,
    Catalog,
    CatalogState,
    snapshot_part,
)
from engine.state_parts import framing
from s3stream import LOCAL, AppendOptions, NoRoom, StoreFailed, check_fits
from s3stream.fetcher import FetchResult
from s3stream.objects import StoredBatch
from tests.engine.catalog_streams import loaded_state, started_catalog


class Crash(BaseException):
    """The process dies: what was durable before it is all a restart has."""


class PartsStream:
    """One stream's appends by offset, trimmed as a store trims and read
    back as a store is (Catalog.open reads it), with a fault for the n-th
    append of a snapshot (its opening record or a part): refused (NoRoom,
    nothing written), failed (StoreFailed) or a crash right after it is
    durable; or for the trim after the snapshot's last part, which fails
    (StoreFailed, the start unmoved)."""

    def __init__(self, max_append_bytes: int) -> None:
        self.max_append_bytes = max_append_bytes
        self.records: dict[int, bytes] = {}
        self.start = self.end = 0
        self.fault: tuple[int, str] | None = None
        """(the index of the snapshot's append it hits, "refused",
        "failed" or "crash"; or any index and "trim")."""
        self._snapshot_appends = 0
        self._gathered = False
        self._failed = False

    def next_offset(self, stream_id: int) -> int:
        return self.end

    def submit(
        self,
        stream_id: int,
        base_offset: int,
        last_offset: int,
        payload: bytes,
        options: AppendOptions = LOCAL,
    ) -> Future[int]:
        """The catalog sends a snapshot's records gathered (one WAL group),
        its change records not: the fault hits the n-th of a snapshot's."""
        assert base_offset == last_offset == self.end
        check_fits(stream_id, [payload], self.max_append_bytes)
        done: Future[int] = Future()
        fault = None
        if self._gathered:
            index, self._snapshot_appends = self._snapshot_appends, self._snapshot_appends + 1
            if self._failed:  # a failed log refuses what follows
                raise StoreFailed(OSError(errno.EIO, "the log failed before"))
            fault = self.fault if self.fault is not None and self.fault[0] == index else None
            fault = None if fault is not None and fault[1] == "trim" else fault
        if fault is not None and fault[1] == "refused":
            raise NoRoom(stream_id, 1, 0)
        if fault is not None and fault[1] == "failed":
            self._failed = True
            done.set_exception(StoreFailed(OSError(errno.EIO, "the part's write failed")))
            return done
        self.records[self.end] = bytes(payload)
        self.end += 1
        if fault is not None:
            raise Crash
        done.set_result(self.end)
        return done

    @contextlib.contextmanager
    def gathered(self) -> Iterator[None]:
        self._gathered = True
        try:
            yield
        finally:
            self._gathered = False

    def trim(self, stream_id: int, offset: int) -> None:
        if self.fault is not None and self.fault[1] == "trim":
            raise StoreFailed(OSError(errno.EIO, "the trim's write failed"))
        for gone in range(self.start, offset):
            del self.records[gone]
        self.start = offset

    def next_snapshot(self, fault: tuple[int, str] | None) -> None:
        self.fault, self._snapshot_appends, self._failed = fault, 0, False

    def payloads(self) -> list[bytes]:
        return [self.records[offset] for offset in range(self.start, self.end)]

    def read_back(self) -> CatalogState:
        """What a restart loads: every durable record, from the start."""
        return loaded_state(self.payloads())

    # What Catalog.open reads a store's catalog with.
    def streams(self) -> list[int]:
        return [0]

    def open_stream(self, stream_id: int, epoch: int) -> None:
        pass

    def start_offset(self, stream_id: int) -> int:
        return self.start

    def end_offset(self, stream_id: int) -> int:
        return self.end

    def fetch(self, stream_id: int, offset: int, max_bytes: int) -> FetchResult:
        batches = [StoredBatch(offset, offset + 1, self.records[offset])]
        return FetchResult(batches, offset + 1, self.start, self.end)

    def reopened(self) -> Catalog:
        """The catalog a restart opens: refused were its stream damaged."""
        self.fault = None
        return Catalog.open(self)  # type: ignore[arg-type]


def _acl(i: int, principal_bytes: int) -> list[Any]:
    return [2, f"topic-{i}", 3, "User:" + "p" * principal_bytes, "*", 3, 3]


def test_a_catalog_past_one_append_is_snapshotted_in_parts_and_trimmed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before, a snapshot past one append was not written and the log grew
    with every change; now its parts are, the log is trimmed to them, and
    it stays within about twice the catalog's size however many changes
    come."""
    monkeypatch.setattr(catalog_module, "SNAPSHOT_EVERY", 8)
    stream = PartsStream(max_append_bytes=1024)
    catalog = started_catalog(stream)
    for i in range(40):
        catalog.append(["acls_add", [_acl(i, 200)]])
    state_bytes = len(msgpack.packb(catalog.state.to_wire(), use_bin_type=True))
    assert state_bytes > 4 * stream.max_append_bytes
    first = [msgpack.unpackb(p, raw=False) for p in stream.payloads()]
    assert first[0][:2] == ["catalog", PARTS_FORMAT_VERSION]
    count = first[1][2]
    assert [r[:3] for r in first[1 : 1 + count]] == [
        [SNAPSHOT_PART, i, count] for i in range(count)
    ]
    for i in range(400):  # the state keeps its size, the changes go on
        catalog.append(["acls_remove", [_acl(i % 40, 200)]])
        catalog.append(["acls_add", [_acl(i % 40, 200)]])
        held = sum(len(p) for p in stream.payloads())
        assert held <= 2 * state_bytes + 8 * 300 + count * framing(snapshot_part) + 64
    assert stream.start > 700
    assert stream.read_back().to_wire() == catalog.state.to_wire()


@pytest.mark.parametrize("outcome", ["refused", "failed", "crash"])
@pytest.mark.parametrize("at", [0, 1, 3])
def test_a_snapshot_stopped_part_way_loses_nothing_and_the_next_completes(
    monkeypatch: pytest.MonkeyPatch, outcome: str, at: int
) -> None:
    """Stopped at its opening record or any part: the change before it is
    applied, the log is not trimmed, a restart loads the same state, and
    the next snapshot (in the same catalog, or in the one a restart
    opens) supersedes the parts left."""
    monkeypatch.setattr(catalog_module, "SNAPSHOT_EVERY", 4)
    stream = PartsStream(max_append_bytes=512)
    catalog = started_catalog(stream)
    for i in range(2):
        catalog.append(["acls_add", [_acl(i, 400)]])
    stream.next_snapshot((at, outcome))
    try:  # the fourth record: a snapshot is due, too large for one append
        catalog.append(["acls_add", [_acl(2, 400)]])
    except Crash:
        catalog = stream.reopened()
    assert len(catalog.state.acls) == 3
    assert stream.start == 0
    assert stream.end == 4 + at + (outcome == "crash")
    assert stream.read_back().to_wire() == catalog.state.to_wire()
    stream.next_snapshot(None)
    for i in range(3, 12):
        catalog.append(["acls_add", [_acl(i, 400)]])
    assert stream.start > 0
    assert msgpack.unpackb(stream.payloads()[0])[:2] == ["catalog", PARTS_FORMAT_VERSION]
    assert stream.read_back().to_wire() == catalog.state.to_wire()
    assert len(stream.read_back().acls) == 12


def test_a_snapshot_whose_trim_fails_leaves_the_log_whole_and_the_next_completes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every part durable, then the trim to the opening record fails: the
    stream keeps the log before the snapshot and the snapshot after it, a
    restart opens it with the same state, and the next snapshot trims."""
    monkeypatch.setattr(catalog_module, "SNAPSHOT_EVERY", 4)
    stream = PartsStream(max_append_bytes=512)
    catalog = started_catalog(stream)
    for i in range(2):
        catalog.append(["acls_add", [_acl(i, 400)]])
    stream.next_snapshot((0, "trim"))
    catalog.append(["acls_add", [_acl(2, 400)]])
    kinds = [msgpack.unpackb(p, raw=False)[0] for p in stream.payloads()]
    assert kinds[:4] == ["catalog", "acls_add", "acls_add", "acls_add"]
    assert kinds[4] == "catalog" and set(kinds[5:]) == {SNAPSHOT_PART}
    assert stream.start == 0
    catalog = stream.reopened()
    assert catalog.state.to_wire() == stream.read_back().to_wire()
    assert len(catalog.state.acls) == 3
    for i in range(3, 12):
        catalog.append(["acls_add", [_acl(i, 400)]])
    assert stream.start > 4
    assert len(stream.reopened().state.acls) == 12


CHANGES = st.one_of(
    st.tuples(st.just("acls_add"), st.integers(0, 9), st.integers(1, 250)),
    st.tuples(st.just("acls_remove"), st.integers(0, 9), st.just(0)),
    st.tuples(st.just("producer_ids"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("topic"), st.integers(0, 4), st.integers(0, 150)),
    st.tuples(st.just("delete_topic"), st.integers(0, 4), st.just(0)),
)
FAULTS = st.one_of(
    st.none(), st.tuples(st.integers(0, 6), st.sampled_from(["refused", "failed", "crash", "trim"]))
)


def _record(change: tuple[str, int, int], acls: dict[int, int]) -> list[Any]:
    kind, key, size = change
    if kind == "acls_add":
        return ["acls_add", [_acl(key, size)]]
    if kind == "acls_remove":
        return ["acls_remove", [_acl(key, acls.get(key, 1))]]
    if kind == "producer_ids":
        return ["producer_ids", key]
    if kind == "topic":
        return ["create_topic", [f"t{key}", bytes([key]) * 16, {"c": "v" * size}, [[1, 2]], 0]]
    return ["delete_topic", f"t{key}"]


@settings(max_examples=150, deadline=None)
@given(
    max_append_bytes=st.integers(320, 2048),
    every=st.integers(1, 6),
    steps=st.lists(st.tuples(CHANGES, FAULTS, st.booleans()), max_size=60),
)
def test_any_changes_with_snapshots_in_parts_and_restarts_load_what_was_applied(
    max_append_bytes: int, every: int, steps: list[tuple[tuple[str, int, int], Any, bool]]
) -> None:
    """Changes applied one by one to a bare state are what the catalog
    serves and what a restart loads, after every step: with snapshots of
    any part size, stopped at any of their appends (refused, failed, or
    the process dying after it) or at their trim, and restarts drawn
    anywhere, each opening the catalog from its stream."""
    saved = catalog_module.SNAPSHOT_EVERY
    catalog_module.SNAPSHOT_EVERY = every
    try:
        stream = PartsStream(max_append_bytes)
        catalog = started_catalog(stream)
        model = CatalogState()
        model.apply(["catalog", 1, 0])
        acls: dict[int, int] = {}
        for change, fault, restart in steps:
            record = _record(change, acls)
            stream.next_snapshot(fault)
            crashed = False
            try:
                catalog.append(record)
            except Crash:
                crashed = True
            model.apply(record)
            if change[0] == "acls_add":
                acls[change[1]] = change[2]
            if restart or crashed:
                catalog = stream.reopened()
            assert catalog.state.to_wire() == model.to_wire()
            assert stream.read_back().to_wire() == model.to_wire()
        # The changes go on, the state's size kept and nothing failing: a
        # snapshot of it is written, in parts if it must be, and trimmed to.
        stream.next_snapshot(None)
        begun = stream.end
        for i in range(100_000):
            record = ["producer_ids", 2**20 + i]  # the same size each
            catalog.append(record)
            model.apply(record)
            if stream.start >= begun:
                break
        assert stream.start >= begun
        opening = msgpack.unpackb(stream.payloads()[0], raw=False)
        if len(msgpack.packb(["snapshot", model.to_wire()])) > max_append_bytes:
            assert opening[:2] == ["catalog", PARTS_FORMAT_VERSION]
        else:
            assert opening[0] == "snapshot"
        assert stream.read_back().to_wire() == model.to_wire()
    finally:
        catalog_module.SNAPSHOT_EVERY = saved


def test_a_snapshot_in_parts_holds_the_state_packed_once_and_its_parts() -> None:
    """Written in parts, a snapshot's memory is the packed state and its
    parts (about twice the state's bytes): never a third copy as the one
    record it is too large to be."""
    stream = PartsStream(max_append_bytes=64 * 1024)
    catalog = started_catalog(stream)
    for i in range(2000):
        catalog.state.apply(["acls_add", [_acl(i, 1000)]])
    packed = len(msgpack.packb(catalog.state.to_wire(), use_bin_type=True))
    tracemalloc.start()
    try:
        catalog._snapshot()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert stream.start == 1  # trimmed to the opening record: written in parts
    assert peak < 2.5 * packed


def test_a_catalog_opened_on_an_unfinished_snapshot_lets_its_parts_go() -> None:
    """The stream's end ends a snapshot in parts unread: a catalog opened
    on a log whose last snapshot stopped part way (a crash after a part)
    holds its state, not the pieces of the snapshot beside it until the
    next change is written."""
    stream = PartsStream(max_append_bytes=64 * 1024)
    catalog = started_catalog(stream)
    for i in range(2000):
        catalog.append(["acls_add", [_acl(i, 1000)]])
    packed = len(msgpack.packb(catalog.state.to_wire(), use_bin_type=True))
    start = stream.start
    stream.next_snapshot((20, "crash"))
    with pytest.raises(Crash):
        catalog._snapshot()
    assert stream.start == start
    del catalog
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        catalog = stream.reopened()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(catalog.state.acls) == 2000
    unfinished = 20 * (64 * 1024 - framing(snapshot_part))
    assert held < 1.6 * packed < packed + unfinished, held
