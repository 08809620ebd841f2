"""A partition's checkpoint past one WAL record is written in parts
(docs/engine-format.md, "Checkpoints in parts"; docs/design/0112): it
counts once every part is durable, a restart replays no batch it covers,
a run of parts cut short leaves the checkpoint before it in force, and an
idle partition's producers expire too."""

from __future__ import annotations

import gc
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import native
from engine import catalog
from engine import partition as partition_module
from engine.catalog import read_records
from engine.checkpoint_records import (
    CHECKPOINT_VERSION,
    PART_VERSION,
    checkpoints,
    in_parts,
    part_packer,
)
from engine.clock import ManualClock
from engine.engine import Engine
from engine.errors import OutOfOrderSequence
from engine.maintenance import EXPIRY_CHECK_INTERVAL_MS
from engine.partition import FULL_CHECKPOINT_EVERY
from engine.producer_state import BatchMeta, ProducerEntry, ProducerStateTable
from engine.state_parts import framing
from native import RecordSpec
from s3stream import NoRoom
from tests.engine.conftest import FAST_STORE, EngineFactory
from tests.engine.replays import count_replays
from tests.ram_dir import memory_backed_dir

SEGMENT = 32 * 1024
"""The WAL's segment: a checkpoint past about this much is written in parts."""
PRODUCERS = 2000
"""Idempotent producers of one partition: a checkpoint of some 90 KiB, in
three parts or more."""
TS = 1_700_000_000_000


def _batch(producer_id: int, sequence: int, count: int = 1) -> bytes:
    specs = [RecordSpec(TS, None, b"v")] * count
    return native.encode_batch(
        specs, producer_id=producer_id, producer_epoch=0, base_sequence=sequence
    )


def _crowd(e: Engine, count: int) -> list[int]:
    """``count`` new idempotent producers, each writing one batch of two
    records to t-0 (sequences 0 and 1); returns their ids. The batches are
    appended in order and waited for together, so that they share the WAL's
    writes and fsyncs: on a disk (a machine without a tmpfs), a crowd took
    1.8 to 2.0 s waited for one at a time, 0.5 to 0.8 s so (load 13)."""
    pids = [e.init_producer_id()[0] for _ in range(count)]
    appends = [e.submit("t", 0, _batch(pid, 0, 2)) for pid in pids]
    for appended in appends:
        assert not appended.result(60).duplicate
    return pids


class Restarts:
    """Engines on one data directory and store, reopened as after a crash
    (no close's checkpoint); counts what each open replayed of t-0. The
    crashes are closes without a flush in this process, which the page
    cache survives as a tmpfs does: the directory is in memory where the
    machine has a tmpfs (tests/ram_dir.py)."""

    def __init__(
        self,
        factory: EngineFactory,
        data_dir: Path,
        object_store: str | None,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        self.factory = factory
        self.data_dir = data_dir
        self.object_store = object_store
        self.replayed = count_replays(monkeypatch, "t", 0)
        self.engine = self._open()

    def _open(self) -> Engine:
        return self.factory(
            data_dir=self.data_dir,
            object_store=self.object_store,
            store=replace(FAST_STORE, wal_segment_bytes=SEGMENT),
            cleaner_interval_s=3600.0,
            checkpoint_interval_s=3600.0,
        )

    def crash(self) -> Engine:
        self.engine.close(flush=False)
        self.engine = self._open()
        return self.engine

    def fresh_machine(self) -> Engine:
        """A crash that lost the WAL too: reopened from the bucket alone."""
        self.engine.close(flush=False)
        shutil.rmtree(self.data_dir / "wal")
        self.engine = self._open()
        return self.engine


@pytest.fixture(params=["local", "s3"])
def restarts(
    request: pytest.FixtureRequest, engine_factory: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Restarts]:
    store = request.getfixturevalue("s3_url") if request.param == "s3" else None
    with memory_backed_dir("checkpoint-parts-") as root:
        opened = Restarts(engine_factory, root / "node", store, monkeypatch)
        try:
            opened.engine.create_topic("t", 1)
            yield opened
        finally:
            # Before the directory goes (the factory's close would come after).
            opened.engine.close()


def _state_records(e: Engine) -> list[Any]:
    return read_records(e.store, e.partition("t", 0).state_stream_id)


def _kept(e: Engine, pids: list[int]) -> None:
    """Every producer's sequences are known: its batch again is a duplicate
    answered with its offsets; a batch past a gap is refused."""
    for index, pid in enumerate(pids):
        retried = e.produce("t", 0, _batch(pid, 0, 2))
        assert retried.duplicate and retried.base_offset == 2 * index, pid
    with pytest.raises(OutOfOrderSequence):
        e.produce("t", 0, _batch(pids[-1], 5))


def test_a_checkpoint_of_thousands_of_producers_is_written_in_parts_and_loaded(
    restarts: Restarts,
) -> None:
    e = restarts.engine
    pids = _crowd(e, PRODUCERS)
    written = e.partition("t", 0).checkpoint()
    assert written is not None and written.result(30) == 2 * PRODUCERS
    partition = e.partition("t", 0)
    assert partition.durable_checkpoint_end == partition.high_watermark == 2 * PRODUCERS
    parts = [r for r in _state_records(e) if r["v"] != CHECKPOINT_VERSION]
    assert len(parts) >= 2
    assert all(len(msgpack.packb(r)) <= e.store.max_append_bytes for r in parts)
    e = restarts.crash()
    assert restarts.replayed[-1] == 0
    assert len(e.partition("t", 0).producers.producers) == PRODUCERS
    _kept(e, pids)


@pytest.mark.parametrize("refused_part", [0, 1, -1])
def test_a_part_refused_leaves_the_checkpoint_before_in_force(
    restarts: Restarts, monkeypatch: pytest.MonkeyPatch, refused_part: int
) -> None:
    """The store refuses one part (past its headroom: a fault injected):
    the checkpoint does not count, a crash's restart loads the one before
    and replays the batches since, and the next checkpoint is whole."""
    e = restarts.engine
    first = _crowd(e, PRODUCERS)
    partition = e.partition("t", 0)
    assert partition.checkpoint() is not None
    e.flush()
    before = partition.durable_checkpoint_end
    assert before == 2 * PRODUCERS
    # As many new producers again: the changes alone go in parts.
    more = _crowd(e, PRODUCERS)
    state = partition.state_stream_id
    submit = e.store.submit
    parts: list[int] = []

    def refusing(stream_id: int, base: int, last: int, payload: Any, *args: Any) -> Any:
        if stream_id == state:
            record = msgpack.unpackb(payload, strict_map_key=False)
            if record["v"] == PART_VERSION:
                parts.append(record["parts"])
                if record["part"] == refused_part % record["parts"]:
                    raise NoRoom(stream_id, 0, 0)
        return submit(stream_id, base, last, payload, *args)

    monkeypatch.setattr(e.store, "submit", refusing)
    with pytest.raises(NoRoom):
        partition.checkpoint()
    assert partition.durable_checkpoint_end == before
    monkeypatch.setattr(e.store, "submit", submit)
    assert e.store.flush(30)  # the parts before the refused one are in the stream
    assert partition.durable_checkpoint_end == before
    e = restarts.crash()
    cut_short = [r for r in _state_records(e) if r["v"] == PART_VERSION and r["end"] > before]
    assert parts[0] >= 3 and len(cut_short) == refused_part % parts[0]
    assert restarts.replayed[-1] == len(more)
    _kept(e, first + more)
    # The store healed: the next checkpoint is whole, and covers them all.
    partition = e.partition("t", 0)
    written = partition.checkpoint()
    assert written is not None and written.result(30) == partition.high_watermark
    e = restarts.crash()
    assert restarts.replayed[-1] == 0


def test_a_full_checkpoint_in_parts_trims_the_state_stream_to_its_first_part(
    restarts: Restarts,
) -> None:
    """A partition's first full checkpoint follows FULL_CHECKPOINT_EVERY
    incremental ones: in parts, the state stream is trimmed to its part 0
    once all are durable, and the incremental ones after it load after a
    restart."""
    e = restarts.engine
    pids = _crowd(e, PRODUCERS)
    partition = e.partition("t", 0)
    state = partition.state_stream_id
    first_parts: list[int] = []
    for _ in range(FULL_CHECKPOINT_EVERY + 3):
        e.produce("t", 0, native.encode_batch([RecordSpec(TS, None, b"w")]))
        offset = e.store.next_offset(state)
        written = partition.checkpoint()
        assert written is not None and written.result(30) == partition.high_watermark
        first_parts.append(offset)
    full = first_parts[FULL_CHECKPOINT_EVERY]
    assert e.store.start_offset(state) == full
    records = _state_records(e)
    assert records[0]["v"] == PART_VERSION and records[0]["part"] == 0
    e = restarts.crash()
    assert restarts.replayed[-1] == 0
    _kept(e, pids)


def test_delete_records_past_the_last_checkpoint_keeps_a_large_producer_table(
    restarts: Restarts,
) -> None:
    """DeleteRecords checkpoints the producers first (their batches go):
    in parts, so it is not refused, and the producers outlive the batches."""
    e = restarts.engine
    pids = _crowd(e, PRODUCERS)
    assert e.partition("t", 0).durable_checkpoint_end == 0
    assert e.delete_records("t", 0, -1) == 2 * PRODUCERS
    e = restarts.crash()
    assert e.offsets("t", 0) == (2 * PRODUCERS, 2 * PRODUCERS)
    assert restarts.replayed[-1] == 0
    _kept(e, pids)


def test_an_idle_partition_forgets_expired_producers(
    engine_factory: EngineFactory,
) -> None:
    """Kafka expires producers on a timer: a partition nothing is written
    to forgets them too, and so does a restart after."""
    clock = ManualClock()
    expiration_ms = 60_000
    e = engine_factory(clock=clock, producer_id_expiration_ms=expiration_ms)
    e.create_topic("t", 1)
    e.create_topic("busy", 1)
    pid = e.init_producer_id()[0]
    e.produce("t", 0, _batch(pid, 0))
    e.produce("busy", 0, _batch(pid, 0))
    e.checkpoint()
    clock.advance((expiration_ms + EXPIRY_CHECK_INTERVAL_MS) / 1000 + 1)
    e.produce("busy", 0, native.encode_batch([RecordSpec(TS, None, b"w")]))
    e.checkpoint()
    assert not e.partition("busy", 0).producers.producers
    assert not e.partition("t", 0).producers.producers
    e.close()
    e = engine_factory(clock=clock, producer_id_expiration_ms=expiration_ms)
    assert not e.partition("t", 0).producers.producers
    # Forgotten, the producer may start anywhere (Kafka's rule for one it
    # has no entry for).
    assert e.produce("t", 0, _batch(pid, 7)).base_offset == 1


# -- a property over random producer tables, part sizes and a crash point ----------------

_entries = st.lists(
    st.tuples(
        st.integers(0, 2**63 - 1),
        st.integers(0, 2**15 - 1),
        st.lists(st.integers(0, 2**31 - 1), max_size=5),
    ),
    max_size=60,
    unique_by=lambda entry: entry[0],
)


def _table(entries: list[tuple[int, int, list[int]]]) -> ProducerStateTable:
    table = ProducerStateTable()
    for pid, epoch, sequences in entries:
        entry = table.producers[pid] = ProducerEntry(pid, epoch, last_append_ms=TS)
        entry.batches.extend(BatchMeta(s, s, s, s, TS) for s in sorted(sequences))
        entry.last_timestamp = TS
    return table


def _checkpoint(end: int, table: ProducerStateTable) -> dict[str, Any]:
    return {
        "v": CHECKPOINT_VERSION, "end": end, "full": end % 2 == 0, "index": [TS, end],
        "ti": {"max_ts": TS, "since": 0}, "producers": table.to_wire(), "epochs": [[0, 0]],
        "cleaned": 0, "horizon": None, "txns": {"ongoing": [], "aborted": []},
    }  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    before=_entries,
    after=_entries,
    room=st.integers(1, 400),
    crash=st.integers(0, 10_000),
    cut_short_first=st.integers(0, 4),
)
def test_a_crash_between_parts_leaves_the_checkpoint_before_in_force(
    before: list[tuple[int, int, list[int]]],
    after: list[tuple[int, int, list[int]]],
    room: int,
    crash: int,
    cut_short_first: int,
) -> None:
    limit = framing(part_packer(2**40)) + room
    older, newer = _checkpoint(10, _table(before)), _checkpoint(20, _table(after))
    packed = msgpack.packb(newer, use_bin_type=True)
    parts = in_parts(7, packed, 20, limit)
    assert len(parts) >= 2 and all(len(part) <= limit for part in parts)
    # Before the checkpoint in force, a run some crash cut short.
    earlier = in_parts(7, msgpack.packb(_checkpoint(5, _table(after))), 5, limit)
    stream = [
        msgpack.packb(older, use_bin_type=True),
        *earlier[: min(cut_short_first, len(earlier) - 1)],
        *parts[: crash % (len(parts) + 1)],
    ]
    read = list(checkpoints((msgpack.unpackb(r, strict_map_key=False) for r in stream), "p"))
    whole = crash % (len(parts) + 1) == len(parts)
    assert read[-1] == (newer if whole else older)
    assert len(read) == (2 if whole else 1)
    loaded = ProducerStateTable.from_wire(read[-1]["producers"])
    assert loaded.to_wire() == _table(after if whole else before).to_wire()


def test_recovery_holds_one_checkpoint_at_a_time_not_the_state_stream(
    restarts: Restarts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every checkpoint since the full one is in the state stream, each
    the producers changed since the one before (thousands, in parts here):
    recovery applies each as soon as its records are read, so it never
    holds the stream's records all at once, only about one checkpoint's."""
    e = restarts.engine
    partition = e.partition("t", 0)
    checkpoints_written = 3
    for _ in range(checkpoints_written):
        _crowd(e, PRODUCERS)
        written = partition.checkpoint()
        assert written is not None and written.result(30) == partition.high_watermark
    records = _state_records(e)
    per_checkpoint = records[0]["parts"]
    assert len(records) == checkpoints_written * per_checkpoint
    e = restarts.crash()
    partition = e.partition("t", 0)
    read: list[int] = []
    read_ahead: list[int] = []
    payloads = catalog.read_payloads

    def counted(store: Any, stream_id: int) -> Iterator[Any]:
        for payload in payloads(store, stream_id):
            read.append(len(payload))
            yield payload

    applied = ProducerStateTable.apply_changes

    def noted(table: ProducerStateTable, changed: list[Any], gone: list[int]) -> None:
        read_ahead.append(len(read))
        applied(table, changed, gone)

    monkeypatch.setattr(catalog, "read_payloads", counted)
    monkeypatch.setattr(partition_module, "read_payloads", counted, raising=False)
    monkeypatch.setattr(ProducerStateTable, "apply_changes", noted)
    assert partition.recover() == 0
    assert len(partition.producers.producers) == checkpoints_written * PRODUCERS
    # Each checkpoint is applied once its own parts are read, not after all.
    assert read_ahead == [per_checkpoint * (n + 1) for n in range(checkpoints_written)]


def test_a_checkpoint_copies_a_large_producer_table_without_collections(
    restarts: Restarts,
) -> None:
    """A checkpoint copies and packs the producer table with the partition's
    lock held (appends and Fetch wait for it): the collector is held off
    meanwhile, so the copy's objects set off no collection (a full one
    walks the whole heap; gc_pause.py)."""
    e = restarts.engine
    _crowd(e, PRODUCERS)
    partition = e.partition("t", 0)
    # A leader that forgot its producers' sequences writes the whole table next.
    with partition.lock:
        partition.forget_sequences()
    to_wire = ProducerStateTable.to_wire
    during: list[int] = []
    copying = [0]

    def counting(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and copying[0]:
            during.append(info["generation"])

    def copied(table: ProducerStateTable) -> list[Any]:
        copying[0] += 1
        try:
            return to_wire(table)
        finally:
            copying[0] -= 1

    gc.callbacks.append(counting)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(ProducerStateTable, "to_wire", copied)
            written = partition.checkpoint()
            assert copying == [0] and _state_records(e)[-1]["v"] == PART_VERSION
    finally:
        gc.callbacks.remove(counting)
    assert written is not None and written.result(30) == partition.high_watermark
    assert during == []


def test_a_run_cut_short_in_the_bucket_leaves_the_checkpoint_before_in_force_without_the_wal(
    restarts: Restarts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uploaded, a run a refused part cut short is in the bucket as in the
    WAL: a machine that lost the WAL loads the checkpoint before it from
    the objects alone and replays the batches since."""
    e = restarts.engine
    first = _crowd(e, PRODUCERS)
    partition = e.partition("t", 0)
    assert partition.checkpoint() is not None
    assert e.flush(30)
    more = _crowd(e, PRODUCERS)
    state = partition.state_stream_id
    submit = e.store.submit

    def refusing(stream_id: int, base: int, last: int, payload: Any, *args: Any) -> Any:
        if stream_id == state:
            record = msgpack.unpackb(payload, strict_map_key=False)
            if record["v"] == PART_VERSION and record["part"] == 1:
                raise NoRoom(stream_id, 0, 0)
        return submit(stream_id, base, last, payload, *args)

    monkeypatch.setattr(e.store, "submit", refusing)
    with pytest.raises(NoRoom):
        partition.checkpoint()
    monkeypatch.setattr(e.store, "submit", submit)
    assert e.store.flush(30)  # everything uploaded, the cut-short part 0 too
    records = _state_records(e)
    assert records[-1]["v"] == PART_VERSION and records[-1]["part"] == 0
    e = restarts.fresh_machine()
    assert restarts.replayed[-1] == len(more)
    _kept(e, first + more)
