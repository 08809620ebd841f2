"""Idempotent producers: a retried batch is written once and answered with
its original offsets; gaps, fenced epochs and bad restarts of a sequence are
refused; the producer state survives restarts, crashes and a new data
directory on the same bucket."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
import native
import wal.segment
from engine import AppendResult, Engine
from engine.clock import SYSTEM, Clock, ManualClock
from engine.producer_state import INT_MAX, REMEMBERED_BATCHES
from native import Record, RecordSpec
from s3stream import Fenced, StreamStoreConfig

TS = 1_700_000_000_000
STORE = StreamStoreConfig(
    upload_bytes=8192,
    upload_interval_s=0.05,
    block_bytes=1024,
    wal_segment_bytes=64 * 1024,
    compaction_interval_s=3600,
    garbage_grace_s=0,
)
CONFIG = engine.EngineConfig(checkpoint_interval_s=3600, cleaner_interval_s=3600, store=STORE)
QUIET = engine.EngineConfig(
    checkpoint_interval_s=3600,
    cleaner_interval_s=3600,
    store=StreamStoreConfig(upload_interval_s=3600, compaction_interval_s=3600),
)


class Node:
    """An engine on a data directory, reopened in place or on a new directory
    that shares its object store."""

    def __init__(
        self, root: Path, config: engine.EngineConfig = CONFIG, clock: Clock = SYSTEM
    ) -> None:
        self.root = root
        self.clock = clock
        self.bucket = f"file://{root / 'bucket'}"
        self.config = config
        self.generation = 0
        self.engine = self._open()

    def _open(self) -> Engine:
        directory = self.root / f"node-{self.generation}"
        return engine.open(directory, self.bucket, self.config, clock=self.clock)

    def restart(self, how: str) -> Engine:
        """``clean``: close and reopen; ``crash``: reopen without the close's
        checkpoint and upload (the WAL holds everything acknowledged);
        ``new_dir``: close, then open a fresh data directory on the bucket."""
        if how == "crash":
            self.engine.close(flush=False)
        else:
            self.engine.close()
        if how == "new_dir":
            shutil.rmtree(self.root / f"node-{self.generation}")
            self.generation += 1
        self.engine = self._open()
        return self.engine

    def close(self) -> None:
        self.engine.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    opened = Node(tmp_path)
    yield opened
    opened.close()


def idempotent_batch(
    producer_id: int, epoch: int, sequence: int, count: int = 1, tag: bytes = b""
) -> bytes:
    specs = [
        RecordSpec(TS + i, b"k", b"%d:%d:%d:%s" % (producer_id, epoch, sequence + i, tag))
        for i in range(count)
    ]
    return native.encode_batch(
        specs, producer_id=producer_id, producer_epoch=epoch, base_sequence=sequence
    )


def read_all(e: Engine, topic: str, partition: int = 0) -> list[Record]:
    start, end = e.offsets(topic, partition)
    records: list[Record] = []
    offset = start
    while offset < end:
        fetched = e.fetch(topic, partition, offset, 4096)
        for payload in fetched.records:
            records += [r for r in native.decode_records(payload) if r.offset >= offset]
        assert fetched.next_offset > offset
        offset = fetched.next_offset
    return records


def assert_dense(records: list[Record], start: int = 0) -> None:
    assert [r.offset for r in records] == list(range(start, start + len(records)))


# -- the rules, on one engine ---------------------------------------------------------


def test_a_retried_batch_gets_its_original_offsets_and_is_written_once(node: Node) -> None:
    e = node.engine
    e.create_topic("t", 1)
    producer_id, epoch = e.init_producer_id()
    e.produce("t", 0, native.encode_batch([RecordSpec(TS, b"x", b"other")]))
    first = e.produce("t", 0, idempotent_batch(producer_id, epoch, 0, count=3))
    again = e.produce("t", 0, idempotent_batch(producer_id, epoch, 0, count=3))
    assert first == AppendResult(1, 3, -1, 0, duplicate=False)
    assert again == first._replace(duplicate=True)
    assert e.offsets("t", 0) == (0, 4)
    records = read_all(e, "t")
    assert_dense(records)
    assert [r.value for r in records[1:]] == [b"%d:0:%d:" % (producer_id, i) for i in range(3)]


def test_retries_of_each_of_the_last_five_batches_are_recognised(node: Node) -> None:
    e = node.engine
    e.create_topic("t", 1)
    producer_id, epoch = e.init_producer_id()
    results = [
        e.produce("t", 0, idempotent_batch(producer_id, epoch, 2 * i, count=2)) for i in range(8)
    ]
    for i in range(8 - REMEMBERED_BATCHES, 8):
        retried = e.produce("t", 0, idempotent_batch(producer_id, epoch, 2 * i, count=2))
        assert retried == results[i]._replace(duplicate=True)
    with pytest.raises(engine.OutOfOrderSequence):  # remembered no longer: refused
        e.produce("t", 0, idempotent_batch(producer_id, epoch, 2 * (7 - REMEMBERED_BATCHES), 2))
    assert e.offsets("t", 0) == (0, 16)
    nxt = e.produce("t", 0, idempotent_batch(producer_id, epoch, 16))
    assert (nxt.base_offset, nxt.duplicate) == (16, False)
    assert_dense(read_all(e, "t"))


def test_a_sequence_gap_raises_out_of_order_sequence(node: Node) -> None:
    e = node.engine
    e.create_topic("t", 1)
    producer_id, epoch = e.init_producer_id()
    e.produce("t", 0, idempotent_batch(producer_id, epoch, 0, count=2))
    with pytest.raises(engine.OutOfOrderSequence) as raised:
        e.produce("t", 0, idempotent_batch(producer_id, epoch, 3))
    assert (raised.value.expected, raised.value.found) == (2, 3)
    assert raised.value.error_code == 45
    with pytest.raises(engine.OutOfOrderSequence):
        e.produce("t", 0, idempotent_batch(producer_id, epoch, 1))  # overlaps, not a retry
    assert e.offsets("t", 0) == (0, 2)
    assert e.produce("t", 0, idempotent_batch(producer_id, epoch, 2)).base_offset == 2


@pytest.mark.parametrize("place", [0, 1, 2])
def test_a_produce_of_several_batches_with_a_producer_id_among_them_is_refused(
    node: Node, place: int
) -> None:
    """Kafka takes one v2 batch per partition a produce; the embedded API
    takes several, but not when any of them carries a producer id: its
    sequence would go unchecked and its producer untracked (wherever it
    stands among them), so a retry of it would be written twice."""
    e = node.engine
    e.create_topic("t", 1)
    producer_id, epoch = e.init_producer_id()
    plain = native.encode_batch([RecordSpec(TS, b"k", b"plain")])
    batches = [plain, plain]
    batches.insert(place, idempotent_batch(producer_id, epoch, 0))
    with pytest.raises(engine.InvalidRecord):
        e.produce("t", 0, b"".join(batches))
    assert e.offsets("t", 0) == (0, 0)


def test_a_new_producer_may_start_at_any_sequence(node: Node) -> None:
    e = node.engine
    e.create_topic("t", 1)
    producer_id, epoch = e.init_producer_id()
    assert e.produce("t", 0, idempotent_batch(producer_id, epoch, 1000)).base_offset == 0
    assert e.produce("t", 0, idempotent_batch(producer_id, epoch, 1001)).base_offset == 1


def test_an_older_epoch_raises_invalid_producer_epoch(node: Node) -> None:
    e = node.engine
    e.create_topic("t", 1)
    producer_id, _ = e.init_producer_id()
    e.produce("t", 0, idempotent_batch(producer_id, 3, 0))
    for sequence in (0, 1):  # neither a retry nor the next batch is accepted
        with pytest.raises(engine.InvalidProducerEpoch) as raised:
            e.produce("t", 0, idempotent_batch(producer_id, 2, sequence))
        assert (raised.value.epoch, raised.value.current) == (2, 3)
        assert raised.value.error_code == 47
    assert e.offsets("t", 0) == (0, 1)


def test_a_new_epoch_must_start_at_sequence_zero(node: Node) -> None:
    e = node.engine
    e.create_topic("t", 1)
    producer_id, epoch = e.init_producer_id()
    for sequence in range(3):
        e.produce("t", 0, idempotent_batch(producer_id, epoch, sequence))
    with pytest.raises(engine.OutOfOrderSequence):
        e.produce("t", 0, idempotent_batch(producer_id, epoch + 1, 3))
    bumped = e.produce("t", 0, idempotent_batch(producer_id, epoch + 1, 0))
    assert (bumped.base_offset, bumped.duplicate) == (3, False)
    with pytest.raises(engine.InvalidProducerEpoch):  # the old epoch is fenced now
        e.produce("t", 0, idempotent_batch(producer_id, epoch, 3))
    assert e.produce("t", 0, idempotent_batch(producer_id, epoch + 1, 0)).duplicate
    assert e.offsets("t", 0) == (0, 4)


def test_sequences_wrap_from_int_max_to_zero(node: Node) -> None:
    e = node.engine
    e.create_topic("t", 1)
    producer_id, epoch = e.init_producer_id()
    first = e.produce("t", 0, idempotent_batch(producer_id, epoch, INT_MAX - 1, count=3))
    assert (first.base_offset, first.last_offset) == (0, 2)  # INT_MAX - 1, INT_MAX, 0
    with pytest.raises(engine.OutOfOrderSequence):
        e.produce("t", 0, idempotent_batch(producer_id, epoch, 0))
    assert e.produce("t", 0, idempotent_batch(producer_id, epoch, 1)).base_offset == 3
    retried = e.produce("t", 0, idempotent_batch(producer_id, epoch, INT_MAX - 1, count=3))
    assert retried == first._replace(duplicate=True)
    single = e.produce("t", 0, idempotent_batch(producer_id, epoch, 2, count=1))
    assert single.base_offset == 4
    assert_dense(read_all(e, "t"))
    assert len(read_all(e, "t")) == 5


def test_producers_are_tracked_per_partition(node: Node) -> None:
    e = node.engine
    e.create_topic("t", 2)
    producer_id, epoch = e.init_producer_id()
    e.produce("t", 0, idempotent_batch(producer_id, epoch, 0))
    e.produce("t", 1, idempotent_batch(producer_id, epoch, 0))  # partition 1's first batch
    assert not e.produce("t", 1, idempotent_batch(producer_id, epoch, 1)).duplicate
    assert e.produce("t", 0, idempotent_batch(producer_id, epoch, 0)).duplicate
    assert e.offsets("t", 0) == (0, 1)
    assert e.offsets("t", 1) == (0, 2)


def test_the_embedded_producer_sends_idempotent_batches_in_sequence(node: Node) -> None:
    e = node.engine
    e.create_topic("t", 1)
    with e.producer(batch_size=100) as producer:
        futures = [producer.send("t", b"v%03d" % i, key=b"k", partition=0) for i in range(20)]
        producer.flush()
        assert [f.result().offset for f in futures] == list(range(20))
        assert producer.producer_id >= 0
    sequences = []
    offset = 0
    while offset < 20:
        fetched = e.fetch("t", 0, offset, 1)
        for payload in fetched.records:
            for header in native.scan_batches(payload):
                assert header.producer_id == producer.producer_id
                sequences.append((header.base_sequence, header.base_offset))
        offset = fetched.next_offset
    assert len(sequences) > 1  # batch_size split the records
    assert all(seq == base for seq, base in sequences)  # sequence i is at offset i here


def test_producer_ids_are_never_handed_out_twice(node: Node) -> None:
    seen = {node.engine.init_producer_id()[0] for _ in range(3)}
    for how in ("clean", "crash", "new_dir"):
        e = node.restart(how)
        ids = [e.init_producer_id()[0] for _ in range(3)]
        assert not seen & set(ids)
        seen |= set(ids)
    assert len(seen) == 12


# -- across restarts -------------------------------------------------------------------


@pytest.mark.parametrize("checkpoint_midway", [False, True])
@pytest.mark.parametrize("how", ["clean", "crash", "new_dir"])
def test_retries_are_recognised_after_a_restart(
    node: Node, how: str, checkpoint_midway: bool
) -> None:
    e = node.engine
    e.create_topic("t", 1)
    producer_id, epoch = e.init_producer_id()
    results = []
    for i in range(8):
        if checkpoint_midway and i == 4:
            e.checkpoint()  # some batches in the checkpoint, some replayed from the log
        results.append(e.produce("t", 0, idempotent_batch(producer_id, epoch, 2 * i, count=2)))
    e = node.restart(how)
    for i in range(8 - REMEMBERED_BATCHES, 8):
        retried = e.produce("t", 0, idempotent_batch(producer_id, epoch, 2 * i, count=2))
        assert retried == results[i]._replace(duplicate=True)
    with pytest.raises(engine.OutOfOrderSequence):
        e.produce("t", 0, idempotent_batch(producer_id, epoch, 17))  # a gap is still one
    assert e.produce("t", 0, idempotent_batch(producer_id, epoch, 16)).base_offset == 16
    e = node.restart(how)  # and once more, with the new batch in the state
    assert e.produce("t", 0, idempotent_batch(producer_id, epoch, 16)).duplicate
    records = read_all(e, "t")
    assert_dense(records)
    assert len(records) == 17


@pytest.mark.parametrize("how", ["clean", "crash", "new_dir"])
def test_a_fenced_epoch_stays_fenced_after_a_restart(node: Node, how: str) -> None:
    e = node.engine
    e.create_topic("t", 1)
    producer_id, _ = e.init_producer_id()
    e.produce("t", 0, idempotent_batch(producer_id, 0, 0))
    e.produce("t", 0, idempotent_batch(producer_id, 1, 0))
    e = node.restart(how)
    with pytest.raises(engine.InvalidProducerEpoch):
        e.produce("t", 0, idempotent_batch(producer_id, 0, 1))
    assert e.produce("t", 0, idempotent_batch(producer_id, 1, 0)).duplicate


def test_a_duplicate_is_acknowledged_only_once_the_original_is_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    e = engine.open(tmp_path / "node", config=QUIET)  # durability: fsync
    gate = threading.Event()
    real_fdatasync = os.fdatasync

    def held_fdatasync(fd: int) -> None:
        gate.wait(30)
        real_fdatasync(fd)

    try:
        e.create_topic("t", 1)
        producer_id, epoch = e.init_producer_id()
        batch = idempotent_batch(producer_id, epoch, 0)
        monkeypatch.setattr(os, "fdatasync", held_fdatasync)
        original = e.submit("t", 0, batch)
        retry = e.submit("t", 0, batch)
        assert not original.done()
        assert e.offsets("t", 0) == (0, 0)  # nothing is durable yet
        assert not retry.done()  # so the retry may not be acknowledged either
    finally:
        gate.set()
        monkeypatch.undo()
        e.close()


@pytest.mark.parametrize("side", ["thread", "event loop"])
def test_a_duplicate_of_an_append_whose_sync_fails_is_answered_the_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, side: str
) -> None:
    """The retry comes while its original is in flight; the original's
    sync then fails: the retry is answered the failure with it (a failed
    WAL makes the original durable never), not left waiting for it."""
    e = engine.open(tmp_path / "node", config=QUIET)  # durability: fsync
    gate = threading.Event()
    real_fdatasync = os.fdatasync

    def failing_fdatasync(fd: int) -> None:
        gate.wait(30)
        raise OSError(errno.EIO, "injected fdatasync failure")

    try:
        e.create_topic("t", 1)
        producer_id, epoch = e.init_producer_id()
        batch = idempotent_batch(producer_id, epoch, 0)
        monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
        if side == "thread":
            original = e.submit("t", 0, batch)
            retry = e.submit("t", 0, batch)
            gate.set()
            with pytest.raises(engine.StorageError):
                original.result(30)
            with pytest.raises(engine.StorageError):
                retry.result(30)
        else:

            async def main() -> None:
                original = e.submit_async("t", 0, batch)
                retry = e.submit_async("t", 0, batch)
                gate.set()
                with pytest.raises(engine.StorageError):
                    await asyncio.wait_for(original, 30)
                with pytest.raises(engine.StorageError):
                    await asyncio.wait_for(retry, 30)

            asyncio.run(main())
    finally:
        gate.set()
        monkeypatch.setattr(os, "fdatasync", real_fdatasync)
        e.close()


def test_a_fenced_writer_acknowledges_no_retry_of_an_append_in_flight(tmp_path: Path) -> None:
    """The retry comes while its original's sync is held; another engine
    takes the bucket over and this one finds the fence before the sync
    ends: the original is refused Fenced (its WAL is replayed by nobody),
    and so is the retry, which waited for it."""
    bucket = f"file://{tmp_path / 'bucket'}"
    a = engine.open(tmp_path / "a", bucket, QUIET)
    gate = threading.Event()
    real_sync = wal.segment.SegmentWriter.sync

    def held(segment: wal.segment.SegmentWriter) -> None:
        if Path(segment.path).is_relative_to(tmp_path / "a"):  # A's WAL, not B's
            gate.wait(30)
        real_sync(segment)

    try:
        a.create_topic("t", 1)
        producer_id, epoch = a.init_producer_id()
        batch = idempotent_batch(producer_id, epoch, 0)
        wal.segment.SegmentWriter.sync = held  # type: ignore[method-assign]
        original = a.submit("t", 0, batch)
        retry = a.submit("t", 0, batch)
        engine.open(tmp_path / "b", bucket, QUIET).close()
        with pytest.raises(Fenced):
            a.store._manifest_writer.check_fence()  # as the uploader does once per idle interval
        gate.set()
        with pytest.raises(engine.Fenced):
            original.result(30)
        with pytest.raises(engine.Fenced):
            retry.result(30)
    finally:
        gate.set()
        wal.segment.SegmentWriter.sync = real_sync  # type: ignore[method-assign]
        a.close()


@pytest.fixture
def quiet_node(tmp_path: Path) -> Iterator[Node]:
    """A node that uploads only on flush or close, so ranges are predictable."""
    opened = Node(tmp_path, QUIET)
    yield opened
    opened.close()


def test_producer_state_survives_a_crash_after_the_cleaner_removed_its_batches(
    quiet_node: Node,
) -> None:
    node = quiet_node
    e = node.engine
    e.create_topic("t", 1, {"cleanup.policy": "compact", "min.compaction.lag.ms": 0})
    producer_id, epoch = e.init_producer_id()

    def keyed(sequence: int, key: bytes) -> bytes:
        spec = RecordSpec(TS, key, b"p%d" % sequence)
        return native.encode_batch(
            [spec], producer_id=producer_id, producer_epoch=epoch, base_sequence=sequence
        )

    e.produce("t", 0, keyed(0, b"x"))
    e.checkpoint()  # the producer table as of sequence 0
    e.produce("t", 0, keyed(1, b"a"))
    e.produce("t", 0, keyed(2, b"b"))
    e.produce("t", 0, native.encode_batch([RecordSpec(TS, b"a", b"w"), RecordSpec(TS, b"b", b"w")]))
    assert e.store.flush(30)  # uploaded, but no newer checkpoint
    # The cleaner removes batches only below a durable checkpoint: it writes
    # one first where the last lies below what it may clean (docs/design/0128)...
    assert e.partition("t", 0).durable_checkpoint_end == 1
    assert e.cleaner.clean(e.partition("t", 0), force=True)
    assert e.partition("t", 0).durable_checkpoint_end == 5
    kept = [r.offset for r in native.decode_records(b"".join(e.fetch("t", 0, 0).records))]
    assert 1 not in kept and 2 not in kept
    # ...so a crash after it (as when the background cleaner ran) still knows the producer.
    e = node.restart("crash")
    assert e.produce("t", 0, keyed(2, b"b")).duplicate
    assert e.produce("t", 0, keyed(3, b"c")).base_offset == 5
    e = node.restart("crash")
    assert e.produce("t", 0, keyed(3, b"c")).duplicate
    assert e.produce("t", 0, keyed(4, b"d")).base_offset == 6


# -- a property: random sends, retries, epoch bumps and restarts -------------------------


@dataclass
class _Sent:
    partition: int
    producer: int
    epoch: int
    sequence: int
    count: int
    payload: bytes
    result: AppendResult


@dataclass
class _Client:
    producer_id: int
    epoch: int = 0
    next_sequence: dict[int, int] = field(default_factory=dict)


actions = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(0, 2), st.integers(0, 1), st.integers(1, 3)),
        st.tuples(st.just("retry"), st.integers(0, 2), st.integers(0, 1), st.integers(1, 8)),
        st.tuples(st.just("bump"), st.integers(0, 2), st.just(0), st.just(0)),
        st.tuples(
            st.just("restart"),
            st.sampled_from(["clean", "crash", "new_dir", "checkpoint"]),
            st.just(0),
            st.just(0),
        ),
    ),
    max_size=40,
)


@settings(max_examples=25)
@given(actions)
def test_random_sends_and_retries_never_duplicate_or_lose_an_acked_batch(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, object, int, int]]
) -> None:
    node = Node(tmp_path_factory.mktemp("idempotence"))
    try:
        e = node.engine
        e.create_topic("t", 2)
        clients = [_Client(e.init_producer_id()[0]) for _ in range(3)]
        sent: list[_Sent] = []
        # (producer, partition) -> the epoch that partition last wrote for it
        seen_epoch: dict[tuple[int, int], int] = {}
        for action, who, partition, n in steps:
            if action == "restart":
                if who == "checkpoint":
                    e.checkpoint()
                else:
                    e = node.restart(str(who))
                continue
            assert isinstance(who, int)
            client = clients[who]
            if action == "bump":
                client.epoch += 1
                client.next_sequence.clear()
            elif action == "send":
                sequence = client.next_sequence.get(partition, 0)
                payload = idempotent_batch(
                    client.producer_id, client.epoch, sequence, n, tag=b"%d" % len(sent)
                )
                result = e.produce("t", partition, payload)
                assert not result.duplicate
                assert result.base_offset == e.offsets("t", partition)[1] - n
                sent.append(_Sent(partition, who, client.epoch, sequence, n, payload, result))
                seen_epoch[(who, partition)] = client.epoch
                client.next_sequence[partition] = sequence + n
            else:  # retry the n-th last batch this client sent to this partition
                mine = [s for s in sent if (s.producer, s.partition) == (who, partition)]
                if len(mine) < n:
                    continue
                old = mine[-n]
                same_epoch = [s for s in mine if s.epoch == old.epoch]
                end_before = e.offsets("t", partition)[1]
                if old.epoch < seen_epoch[(who, partition)]:
                    with pytest.raises(engine.InvalidProducerEpoch):
                        e.produce("t", partition, old.payload)
                elif old in same_epoch[-REMEMBERED_BATCHES:]:
                    retried = e.produce("t", partition, old.payload)
                    assert retried.duplicate
                    assert (retried.base_offset, retried.last_offset) == (
                        old.result.base_offset,
                        old.result.last_offset,
                    )
                else:
                    with pytest.raises(engine.OutOfOrderSequence):
                        e.produce("t", partition, old.payload)
                assert e.offsets("t", partition)[1] == end_before
        for partition in (0, 1):
            records = read_all(e, "t", partition)
            assert_dense(records)
            expected: list[bytes | None] = []
            for s in sorted(
                (s for s in sent if s.partition == partition), key=lambda s: s.result.base_offset
            ):
                assert s.result.base_offset == len(expected)  # acked at these offsets
                expected += [r.value for r in native.decode_records(s.payload)]
            assert [r.value for r in records] == expected  # each acked batch, once
    finally:
        node.close()
        shutil.rmtree(node.root, ignore_errors=True)  # one example's WAL is tens of MiB


def test_a_retry_on_a_log_append_time_topic_gets_the_original_append_time(
    tmp_path: Path,
) -> None:
    clock = ManualClock(time_ms=1_800_000_000_000)
    node = Node(tmp_path, clock=clock)
    try:
        e = node.engine
        e.create_topic("t", 1, {"message.timestamp.type": "LogAppendTime"})
        producer_id, epoch = e.init_producer_id()
        first = e.produce("t", 0, idempotent_batch(producer_id, epoch, 0))
        clock.advance(1)
        retried = e.produce("t", 0, idempotent_batch(producer_id, epoch, 0))
        stored = native.scan_batches(e.fetch("t", 0, 0).records[0])[0]
        assert first.log_append_time == stored.max_timestamp == 1_800_000_000_000
        assert retried == first._replace(duplicate=True)
    finally:
        node.close()


def test_delete_records_keeps_the_producer_state_of_the_deleted_batches(node: Node) -> None:
    e = node.engine
    e.create_topic("t", 1)
    producer_id, epoch = e.init_producer_id()
    batches = [idempotent_batch(producer_id, epoch, s) for s in range(3)]
    for batch in batches:
        e.produce("t", 0, batch)
    assert e.delete_records("t", 0, -1) == 3
    e = node.restart("crash")
    retried = e.produce("t", 0, batches[-1])
    assert retried.duplicate and retried.base_offset == 2
    assert e.produce("t", 0, idempotent_batch(producer_id, epoch, 3)).base_offset == 3


def test_a_trim_past_every_checkpoint_forgets_sequences_but_not_epochs(node: Node) -> None:
    """Retention can drop batches no checkpoint covers yet (the store trims in
    the background); recovery then cannot know the producer's last sequence
    and accepts whatever comes next, as Kafka does for a producer without an
    entry, while an older epoch stays fenced."""
    e = node.engine
    e.create_topic("t", 1)
    producer_id, _ = e.init_producer_id()
    e.produce("t", 0, idempotent_batch(producer_id, 1, 0))
    e.checkpoint()
    for sequence in (1, 2):
        e.produce("t", 0, idempotent_batch(producer_id, 1, sequence))
    leader = e.partition("t", 0)
    e.store.trim(leader.stream_id, 3)  # as retention would: no checkpoint first
    e = node.restart("crash")
    with pytest.raises(engine.InvalidProducerEpoch):
        e.produce("t", 0, idempotent_batch(producer_id, 0, 0))
    assert e.produce("t", 0, idempotent_batch(producer_id, 1, 7)).base_offset == 3
    with pytest.raises(engine.OutOfOrderSequence):
        e.produce("t", 0, idempotent_batch(producer_id, 1, 9))
