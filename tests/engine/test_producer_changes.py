"""An incremental checkpoint holds only the producers changed since the one
before (docs/engine-format.md, "Producer changes"; docs/design/0117): the
bytes a partition writes to its state stream follow what was appended,
not the producer table, and a restart at any point still knows every
producer's last sequence."""

from __future__ import annotations

import shutil
import tempfile
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
import native
from engine.checkpoint_records import CHANGES_VERSION, CHECKPOINT_VERSION, checkpoints
from engine.clock import ManualClock
from engine.errors import OutOfOrderSequence
from engine.partition import FULL_CHECKPOINT_EVERY, Partition
from native import RecordSpec
from s3stream import StoreFailed
from tests.engine.conftest import FAST_STORE, EngineFactory

TS = 1_700_000_000_000
EXPIRATION_MS = 3_600_000


def _batch(producer_id: int, sequence: int, count: int = 1) -> bytes:
    specs = [RecordSpec(TS, None, b"v")] * count
    return native.encode_batch(
        specs, producer_id=producer_id, producer_epoch=0, base_sequence=sequence
    )


class StateBytes:
    """Counts the bytes a store is asked to append to one partition's
    state stream (the appends themselves go through unchanged)."""

    def __init__(self, e: engine.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.records: list[dict[str, Any]] = []
        """As appended: a checkpoint in parts is its parts."""
        state = e.partition("t", 0).state_stream_id
        submit = e.store.submit

        def counted(
            stream_id: int, base: int, last: int, payload: Any, *args: Any, **options: Any
        ) -> Any:
            appended = submit(stream_id, base, last, payload, *args, **options)
            if stream_id == state:  # appended, not refused (a checkpoint then goes in parts)
                self.count += len(payload)
                self.records.append(msgpack.unpackb(payload, strict_map_key=False))
            return appended

        monkeypatch.setattr(e.store, "submit", counted)

    def checkpoints(self) -> list[dict[str, Any]]:
        """The checkpoints appended, those in parts joined."""
        return list(checkpoints(self.records, "the appends"))


def _checkpointed(partition: Partition) -> None:
    written = partition.checkpoint()
    assert written is not None and written.result(30) == partition.high_watermark


def test_small_appends_to_a_partition_of_many_producers_write_what_changed(
    engine_factory: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """10,000 producers, then one of them writes a batch before each of
    many checkpoints: the state stream takes about the table once or twice
    and a few hundred bytes a checkpoint, not the table each time; a
    restart keeps it so, and knows every producer."""
    producers = 10_000
    appends = 2 * FULL_CHECKPOINT_EVERY
    e = engine_factory(checkpoint_interval_s=3600.0)
    e.create_topic("t", 1)
    pids = [e.init_producer_id()[0] for _ in range(producers)]
    for pid in pids:
        e.produce("t", 0, _batch(pid, 0))
    partition = e.partition("t", 0)
    _checkpointed(partition)
    table = len(msgpack.packb(partition.producers.to_wire(), use_bin_type=True))
    written = StateBytes(e, monkeypatch)
    trickle = pids[0]
    for sequence in range(1, appends + 1):
        e.produce("t", 0, _batch(trickle, sequence))
        _checkpointed(partition)
    # The first full checkpoint (after FULL_CHECKPOINT_EVERY incremental
    # ones) holds the table; every other one the one producer that wrote.
    full = [r for r in written.checkpoints() if r["v"] == CHECKPOINT_VERSION]
    changes = [r for r in written.checkpoints() if r["v"] == CHANGES_VERSION]
    assert len(full) == 1 and len(changes) == appends - 1
    assert all([p[0] for p in r["changed"]] == [trickle] for r in changes)
    assert written.count < 1.5 * table + appends * 512
    e.close(flush=False)
    monkeypatch.undo()
    e = engine_factory(checkpoint_interval_s=3600.0)
    partition = e.partition("t", 0)
    written = StateBytes(e, monkeypatch)
    for sequence in range(appends + 1, 2 * appends + 1):
        e.produce("t", 0, _batch(trickle, sequence))
        _checkpointed(partition)
    # The full one's size was read back: none is due yet.
    assert written.count < appends * 512
    retried = e.produce("t", 0, _batch(pids[-1], 0))
    assert retried.duplicate and retried.base_offset == producers - 1


def test_the_next_full_checkpoint_waits_for_as_many_bytes_of_changes(
    engine_factory: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past FULL_CHECKPOINT_EVERY incremental checkpoints, the full one comes
    once their bytes reach the last full one's, and trims the stream."""
    e = engine_factory(checkpoint_interval_s=3600.0)
    e.create_topic("t", 1)
    pids = [e.init_producer_id()[0] for _ in range(500)]
    for pid in pids:
        e.produce("t", 0, _batch(pid, 0))
    partition = e.partition("t", 0)
    for _ in range(FULL_CHECKPOINT_EVERY + 1):
        e.produce("t", 0, native.encode_batch([RecordSpec(TS, None, b"w")]))
        _checkpointed(partition)
    written = StateBytes(e, monkeypatch)
    for sequence in range(1, 4 * FULL_CHECKPOINT_EVERY):
        e.produce("t", 0, _batch(pids[0], sequence))
        _checkpointed(partition)
        if written.records[-1]["v"] == CHECKPOINT_VERSION:
            break
    last = len(msgpack.packb(written.records[-1], use_bin_type=True))
    since = written.count - last
    assert written.records[-1]["v"] == CHECKPOINT_VERSION
    assert since >= last - 512 and since - len(msgpack.packb(written.records[-2])) < last
    state = partition.state_stream_id
    assert e.store.start_offset(state) == e.store.next_offset(state) - 1


def test_a_full_checkpoint_whose_append_failed_at_once_leaves_the_next_one_full(
    engine_factory: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full checkpoint's append that has failed by the time the partition
    looks at it (the WAL failing while it was queued; injected here, as
    the store cannot be made to fail one append alone) took the changes
    before it: the next checkpoint holds the table again, not changes on
    top of a table the stream may not hold."""
    e = engine_factory(checkpoint_interval_s=3600.0)
    e.create_topic("t", 1)
    pids = [e.init_producer_id()[0] for _ in range(3)]
    for pid in pids:
        e.produce("t", 0, _batch(pid, 0))
    partition = e.partition("t", 0)
    _checkpointed(partition)
    with partition.lock:
        partition.forget_sequences()  # the next one holds the table
    state = partition.state_stream_id
    submit = e.store.submit

    def failed(stream_id: int, *args: Any, **kwargs: Any) -> Any:
        if stream_id != state:
            return submit(stream_id, *args, **kwargs)
        done: Future[int] = Future()
        done.set_running_or_notify_cancel()
        done.set_exception(StoreFailed(OSError("sync failed")))
        return done

    monkeypatch.setattr(e.store, "submit", failed)
    e.produce("t", 0, _batch(pids[0], 1))
    with pytest.raises(StoreFailed):
        partition.checkpoint()
    monkeypatch.undo()
    written = StateBytes(e, monkeypatch)
    e.produce("t", 0, _batch(pids[1], 1))
    _checkpointed(partition)
    assert [r["v"] for r in written.checkpoints()] == [CHECKPOINT_VERSION]
    assert {p[0] for p in written.checkpoints()[0]["producers"]} == set(pids)


# -- a crash at any point, with many producers ---------------------------------------------

_steps = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 2**32), st.integers(1, 60)),
        st.tuples(st.just("checkpoint"), st.booleans(), st.just(0)),
        st.tuples(st.just("expire"), st.integers(0, 2**32), st.integers(1, 40)),
        st.tuples(st.just("delete"), st.just(0), st.just(0)),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=12, deadline=None)
@given(producers=st.integers(100, 700), steps=_steps, crash=st.integers(0, 12))
def test_a_crash_anywhere_keeps_every_producers_last_sequence(
    producers: int, steps: list[tuple[str, int, int]], crash: int
) -> None:
    """Producers write, checkpoints come (some not waited for, so a crash
    may lose them), some producers fall idle past their expiration and a
    checkpoint drops them, DeleteRecords moves the log start past every
    batch; a crash at a drawn step, then a restart: every
    producer not expired answers its last batch again as a duplicate at
    its first offset and refuses a sequence past a gap; an expired one
    may start anywhere."""
    directory = Path(tempfile.mkdtemp(prefix="producer-changes-"))
    clock = ManualClock()
    config = engine.EngineConfig(
        store=replace(FAST_STORE, wal_segment_bytes=32 * 1024),
        cleaner_interval_s=3600.0,
        checkpoint_interval_s=3600.0,
        producer_id_expiration_ms=EXPIRATION_MS,
    )
    e = engine.open(directory / "node", None, config, clock=clock)
    try:
        e.create_topic("t", 1)
        pids = [e.init_producer_id()[0] for _ in range(producers)]
        last: dict[int, tuple[int, int, int]] = {}
        """Producer id: the sequence, record count and first offset of its last batch."""
        expired: set[int] = set()
        for pid in pids:
            last[pid] = (0, 1, e.produce("t", 0, _batch(pid, 0)).base_offset)
        partition = e.partition("t", 0)
        for kind, seed, count in steps[:crash]:
            if kind == "write":
                live = sorted(last)
                for pid in (live[(seed + i * 7919) % len(live)] for i in range(count)):
                    sequence, records, _ = last[pid]
                    sent = sequence + records
                    result = e.produce("t", 0, _batch(pid, sent, 1 + pid % 3))
                    assert not result.duplicate
                    last[pid] = (sent, 1 + pid % 3, result.base_offset)
            elif kind == "delete":
                # The batches go; their producers' state stays (KIP-360).
                assert e.delete_records("t", 0, -1) == partition.high_watermark
            elif kind == "checkpoint":
                written = partition.checkpoint()
                if seed and written is not None:
                    written.result(30)
            else:
                # ``count`` producers stay busy; the rest fall idle past
                # their expiration, and a durable checkpoint drops them.
                live = sorted(last)
                busy = {live[(seed + i) % len(live)] for i in range(count)}
                clock.advance(EXPIRATION_MS / 1000 + 1)
                for pid in busy:
                    sequence, records, _ = last[pid]
                    result = e.produce("t", 0, _batch(pid, sequence + records))
                    last[pid] = (sequence + records, 1, result.base_offset)
                written = partition.checkpoint(EXPIRATION_MS)
                assert written is not None and written.result(30) == partition.high_watermark
                for pid in set(last) - busy:
                    expired.add(pid)
                    del last[pid]
        e.close(flush=False)
        e = engine.open(directory / "node", None, config, clock=clock)
        for pid, (sequence, records, first_offset) in last.items():
            retried = e.produce("t", 0, _batch(pid, sequence, records))
            assert retried.duplicate and retried.base_offset == first_offset, pid
            with pytest.raises(OutOfOrderSequence):
                e.produce("t", 0, _batch(pid, sequence + records + 1))
        for pid in sorted(expired)[:20]:
            assert not e.produce("t", 0, _batch(pid, 1000)).duplicate
    finally:
        e.close()
        shutil.rmtree(directory, ignore_errors=True)
