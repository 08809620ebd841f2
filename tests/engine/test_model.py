"""A stateful property: a real engine against a model that is a dict of
records per partition.

Rules create topics (delete or compact), produce batches through
``Engine.produce`` and records through the embedded ``Producer``, read from
random offsets (``Engine.fetch`` and the ``Consumer``), look up offsets by
timestamp, delete records, flush, checkpoint, compact objects, run the log
cleaner, and restart: cleanly, after a crash, and on a fresh machine that
has only the bucket. After every step the log start and high watermark are
the model's; every read returns exactly the model's records at their
offsets; the cleaner keeps the latest record of every key and removes what
it superseded, and nothing else.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import engine
import native
from engine import TopicPartition
from engine.client.partitioner import partition_for_key
from native import Compression, RecordSpec
from s3stream import StreamStoreConfig
from tests.long_runs import sized
from tests.ram_dir import memory_backed_dir

T0 = 1_700_000_000_000
"""Record timestamps are around here: in the past, so compaction lag and
tombstone horizons are decided by the topic's configs alone."""
KEYS = [b"a", b"b", b"c", b"d"]
FOREVER_MS = 10**13

STORE = StreamStoreConfig(
    upload_bytes=2048,
    upload_interval_s=0.05,
    block_bytes=512,
    log_cache_bytes=2048,  # small: most reads go to objects
    wal_segment_bytes=32 * 1024,
    stream_object_bytes=2048,
    small_object_bytes=8192,
    compaction_interval_s=3600,  # the machine compacts when it wants to
    garbage_grace_s=0,
)
CONFIG = engine.EngineConfig(checkpoint_interval_s=3600, cleaner_interval_s=3600, store=STORE)

Headers = tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True)
class Rec:
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp: int


@dataclass
class PartitionModel:
    records: dict[int, Rec] = field(default_factory=dict)
    """What the log holds from its start: offset -> record."""
    start: int = 0
    end: int = 0
    producer_id: int = -1
    """An idempotent producer writing here through Engine.produce, once it has."""
    sent: list[tuple[bytes, int, int]] = field(default_factory=list)
    """Its batches: (bytes, first offset, last offset)."""
    next_sequence: int = 0


@dataclass
class TopicModel:
    compact: bool
    drop_tombstones: bool
    partitions: list[PartitionModel]


values = st.none() | st.binary(max_size=24)
headers = st.lists(
    st.tuples(st.sampled_from(["h", "trace-id"]), st.none() | st.binary(max_size=6)), max_size=2
).map(tuple)
timestamps = st.integers(T0 - 50, T0 + 50)  # not monotonic
codecs = st.sampled_from([Compression.NONE, Compression.NONE, Compression.GZIP, Compression.ZSTD])


class EngineMachine(RuleBasedStateMachine):
    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.data_dir = root / "node"
        self.engine = engine.open(self.data_dir, config=CONFIG)
        self.topics: dict[str, TopicModel] = {}

    def teardown(self) -> None:
        try:
            self.engine.close()
        finally:
            self.engine.store.close(flush=False)  # in case close raised before closing it
            shutil.rmtree(self.root, ignore_errors=True)

    # -- helpers ----------------------------------------------------------------

    def _partitions(
        self, compact: bool | None = None, nonempty: bool = False
    ) -> list[tuple[str, int]]:
        return [
            (name, p)
            for name, model in sorted(self.topics.items())
            if compact is None or model.compact == compact
            for p, pm in enumerate(model.partitions)
            if not nonempty or pm.end > pm.start
        ]

    def _model(self, topic: str, partition: int) -> PartitionModel:
        return self.topics[topic].partitions[partition]

    def _read(self, topic: str, partition: int, offset: int) -> dict[int, Rec]:
        """Every record from ``offset`` to the high watermark, via Engine.fetch."""
        model = self._model(topic, partition)
        got: dict[int, Rec] = {}
        position = offset
        while position < model.end:
            fetched = self.engine.fetch(topic, partition, position, 300)
            assert (fetched.log_start_offset, fetched.high_watermark) == (model.start, model.end)
            for payload in fetched.records:
                for r in native.decode_records(payload):
                    if r.offset >= position:
                        assert r.offset not in got
                        got[r.offset] = Rec(r.key, r.value, r.headers, r.timestamp)
            assert fetched.next_offset > position  # gaps are stepped over
            position = fetched.next_offset
        assert position == model.end
        return got

    def _check_reads(self, topic: str, partition: int, offset: int) -> None:
        model = self._model(topic, partition)
        want = {o: r for o, r in model.records.items() if o >= offset}
        assert self._read(topic, partition, offset) == want

    # -- topics -------------------------------------------------------------------

    @initialize()
    def first_topics(self) -> None:
        self.create_topic(compact=False, partitions=2, drop_tombstones=False, interval=0)
        self.create_topic(compact=True, partitions=1, drop_tombstones=False, interval=100)
        self.create_topic(compact=True, partitions=1, drop_tombstones=True, interval=0)

    @precondition(lambda self: len(self.topics) < 6)
    @rule(
        compact=st.booleans(),
        partitions=st.integers(1, 3),
        drop_tombstones=st.booleans(),
        interval=st.sampled_from([0, 100, 4096]),
    )
    def create_topic(
        self, compact: bool, partitions: int, drop_tombstones: bool, interval: int
    ) -> None:
        name = f"t{len(self.topics)}"
        configs: dict[str, object] = {"index.interval.bytes": interval}
        if compact:
            configs |= {
                "cleanup.policy": "compact",
                "min.compaction.lag.ms": 0,
                "delete.retention.ms": 0 if drop_tombstones else FOREVER_MS,
            }
        description = self.engine.create_topic(name, partitions, configs)
        assert [p.partition for p in description.partitions] == list(range(partitions))
        assert all((p.log_start_offset, p.high_watermark) == (0, 0) for p in description.partitions)
        self.topics[name] = TopicModel(
            compact, compact and drop_tombstones, [PartitionModel() for _ in range(partitions)]
        )

    # -- producing ------------------------------------------------------------------

    @rule(data=st.data())
    def produce(self, data: st.DataObject) -> None:
        """One produce request of one or two batches through Engine.produce; a
        record without a key is refused by a compacted topic."""
        topic, partition = data.draw(st.sampled_from(self._partitions()))
        compact = self.topics[topic].compact
        keys = st.sampled_from(KEYS) if compact else st.sampled_from([*KEYS, None])
        recs = st.builds(Rec, keys, values, headers, timestamps)
        batches = data.draw(
            st.lists(st.lists(recs, min_size=1, max_size=4), min_size=1, max_size=2)
        )
        null_key = compact and data.draw(st.sampled_from([False, False, False, True]))
        if null_key:
            batches[-1][-1] = Rec(None, b"v", (), T0)
        payload = b"".join(
            native.encode_batch(
                [RecordSpec(r.timestamp, r.key, r.value, r.headers) for r in batch],
                compression=data.draw(codecs),
            )
            for batch in batches
        )
        model = self._model(topic, partition)
        if null_key:
            with pytest.raises(engine.InvalidRecord):
                self.engine.produce(topic, partition, payload)
            return
        result = self.engine.produce(topic, partition, payload)
        flat = [r for batch in batches for r in batch]
        assert (result.base_offset, result.last_offset) == (model.end, model.end + len(flat) - 1)
        assert result.log_start_offset == model.start
        assert not result.duplicate
        for i, rec in enumerate(flat):
            model.records[model.end + i] = rec
        model.end += len(flat)

    @rule(data=st.data())
    def produce_idempotent(self, data: st.DataObject) -> None:
        """A batch of a per-partition idempotent producer; or a retry of one of
        its last five batches, which is answered with the original offsets
        and not written again, whatever happened since (restarts, deletion,
        cleaning)."""
        topic, partition = data.draw(st.sampled_from(self._partitions()))
        model = self._model(topic, partition)
        if model.sent and data.draw(st.booleans()):
            payload, first, last = data.draw(st.sampled_from(model.sent[-5:]))
            retried = self.engine.produce(topic, partition, payload)
            assert retried.duplicate
            assert (retried.base_offset, retried.last_offset) == (first, last)
            return
        if model.producer_id < 0:
            model.producer_id = self.engine.init_producer_id()[0]
        recs = data.draw(
            st.lists(
                st.builds(Rec, st.sampled_from(KEYS), values, headers, timestamps),
                min_size=1,
                max_size=4,
            )
        )
        payload = native.encode_batch(
            [RecordSpec(r.timestamp, r.key, r.value, r.headers) for r in recs],
            compression=data.draw(codecs),
            producer_id=model.producer_id,
            producer_epoch=0,
            base_sequence=model.next_sequence,
        )
        result = self.engine.produce(topic, partition, payload)
        assert not result.duplicate
        assert (result.base_offset, result.last_offset) == (model.end, model.end + len(recs) - 1)
        model.sent.append((payload, result.base_offset, result.last_offset))
        model.next_sequence += len(recs)
        for i, rec in enumerate(recs):
            model.records[model.end + i] = rec
        model.end += len(recs)

    @rule(data=st.data())
    def produce_with_producer(self, data: st.DataObject) -> None:
        """Records through the embedded (idempotent) Producer: to a named
        partition or to the key's. (Null keys get a named partition: the
        sticky partitioner's random choice would make the draws that follow
        depend on it; test_units covers it.)"""
        topic = data.draw(st.sampled_from(sorted(self.topics)))
        model = self.topics[topic]
        count = len(model.partitions)
        keys = st.sampled_from(KEYS) if model.compact else st.sampled_from([*KEYS, None])
        sends = data.draw(
            st.lists(
                st.tuples(
                    st.builds(Rec, keys, values, headers, timestamps),
                    st.none() | st.integers(0, count - 1),
                ).map(lambda s: (s[0], 0 if s[0].key is None and s[1] is None else s[1])),
                min_size=1,
                max_size=8,
            )
        )
        batch_size = data.draw(st.sampled_from([60, 16384]))
        with self.engine.producer(batch_size=batch_size) as producer:
            futures = [
                producer.send(topic, r.value, r.key, r.headers, p, r.timestamp) for r, p in sends
            ]
            producer.flush()
        placed: dict[int, list[tuple[int, Rec]]] = {}
        for (rec, wanted), future in zip(sends, futures, strict=True):
            partition, offset = future.result()
            if wanted is not None:
                assert partition == wanted
            elif rec.key is not None:
                assert partition == partition_for_key(rec.key, count)
            placed.setdefault(partition, []).append((offset, rec))
        for partition, written in placed.items():
            pm = model.partitions[partition]
            offsets = [o for o, _ in written]
            assert offsets == list(range(pm.end, pm.end + len(written)))  # in send order
            pm.records.update(written)
            pm.end += len(written)

    # -- reading ------------------------------------------------------------------------

    @rule(data=st.data())
    def fetch(self, data: st.DataObject) -> None:
        topic, partition = data.draw(st.sampled_from(self._partitions()))
        model = self._model(topic, partition)
        offset = data.draw(st.integers(model.start, model.end))
        self._check_reads(topic, partition, offset)
        if model.start > 0:
            below = data.draw(st.integers(0, model.start - 1))
            with pytest.raises(engine.OffsetOutOfRange) as raised:
                self.engine.fetch(topic, partition, below)
            assert raised.value.log_start_offset == model.start
        with pytest.raises(engine.OffsetOutOfRange):
            self.engine.fetch(topic, partition, model.end + data.draw(st.integers(1, 3)))

    @rule()
    def read_everything(self) -> None:
        for topic, partition in self._partitions():
            self._check_reads(topic, partition, self._model(topic, partition).start)

    @rule(data=st.data())
    def consume(self, data: st.DataObject) -> None:
        """The embedded Consumer from a sought offset to the end."""
        topic, partition = data.draw(st.sampled_from(self._partitions()))
        model = self._model(topic, partition)
        offset = data.draw(st.integers(model.start, model.end))
        tp = TopicPartition(topic, partition)
        got: dict[int, Rec] = {}
        with self.engine.consumer(auto_offset_reset="none", max_poll_records=3) as consumer:
            consumer.assign([tp])
            consumer.seek(tp, offset)
            while records := consumer.poll(0):
                for r in records:
                    assert (r.topic, r.partition) == tp
                    assert r.offset not in got
                    got[r.offset] = Rec(r.key, r.value, r.headers, r.timestamp)
        assert got == {o: r for o, r in model.records.items() if o >= offset}

    @rule(data=st.data())
    def list_offset(self, data: st.DataObject) -> None:
        """ListOffsets for -2 (log start), -1 (high watermark), a random
        timestamp and every timestamp in the partition and its neighbours."""
        topic, partition = data.draw(st.sampled_from(self._partitions()))
        model = self._model(topic, partition)
        assert self.engine.list_offset(topic, partition, -2) == (model.start, -1)
        assert self.engine.list_offset(topic, partition, -1) == (model.end, -1)
        targets = {data.draw(st.integers(T0 - 60, T0 + 60))}
        targets |= {r.timestamp + d for r in model.records.values() for d in (-1, 0, 1)}
        in_order = sorted(model.records.items())
        for timestamp in sorted(targets):
            first = next(((o, r.timestamp) for o, r in in_order if r.timestamp >= timestamp), None)
            found = self.engine.list_offset(topic, partition, timestamp)
            assert found == (first or (-1, -1)), f"ListOffsets({timestamp})"

    # -- deleting -------------------------------------------------------------------------

    @rule(data=st.data())
    def delete_records(self, data: st.DataObject) -> None:
        topic, partition = data.draw(st.sampled_from(self._partitions()))
        model = self._model(topic, partition)
        offset = data.draw(st.just(-1) | st.integers(0, model.end))
        new_start = self.engine.delete_records(topic, partition, offset)
        assert new_start == max(model.start, model.end if offset == -1 else offset)
        model.start = new_start
        model.records = {o: r for o, r in model.records.items() if o >= new_start}
        with pytest.raises(engine.OffsetOutOfRange):
            self.engine.delete_records(topic, partition, model.end + 1)

    # -- storage and restarts --------------------------------------------------------------

    @rule(how=st.sampled_from(["flush", "checkpoint", "compact_objects"]))
    def storage(self, how: str) -> None:
        """Upload (and checkpoint) everything; checkpoint only; or upload and
        let the store compact its objects."""
        if how == "flush":
            assert self.engine.flush(timeout=30)
        elif how == "checkpoint":
            self.engine.checkpoint()
        else:
            assert self.engine.store.flush(timeout=30)
            self.engine.store.compact()

    @rule(how=st.sampled_from(["restart", "crash", "fresh_machine"]))
    def reopen(self, how: str) -> None:
        """``restart``: close and reopen; ``crash``: reopen without the close's
        checkpoint and upload (the WAL has it all); ``fresh_machine``: close
        (which uploads everything), lose the WAL, reopen from the bucket."""
        self.engine.close(flush=how != "crash")
        if how == "fresh_machine":
            shutil.rmtree(self.data_dir / "wal")
            assert (self.data_dir / "objects").is_dir()
        self.engine = engine.open(self.data_dir, config=CONFIG)

    # -- the log cleaner ----------------------------------------------------------------------

    @precondition(lambda self: self._partitions(compact=True, nonempty=True))
    @rule(data=st.data())
    def clean(self, data: st.DataObject) -> None:
        topic, partition = data.draw(st.sampled_from(self._partitions(compact=True, nonempty=True)))
        model = self._model(topic, partition)
        drop_tombstones = self.topics[topic].drop_tombstones
        assert self.engine.flush(timeout=30)
        self.engine.cleaner.last.pop((topic, partition), None)
        leader = self.engine.partition(topic, partition)
        if not self.engine.cleaner.clean(leader, force=True):
            assert self._read(topic, partition, model.start) == model.records
            return
        stats = self.engine.cleaner.last[(topic, partition)]
        start, end = stats.start_offset, stats.end_offset
        assert model.start <= start < end <= model.end
        before = model.records
        after = self._read(topic, partition, model.start)
        inside = {o: r for o, r in before.items() if start <= o < end}
        kept = {o: r for o, r in after.items() if start <= o < end}
        # Outside the cleaned range nothing changed; inside, what is left was there.
        assert {o: r for o, r in after.items() if not start <= o < end} == {
            o: r for o, r in before.items() if not start <= o < end
        }
        assert kept.items() <= inside.items()
        assert stats.records_read == len(inside)
        latest_in_range = {r.key: o for o, r in sorted(inside.items())}
        expected = {
            o: r
            for o, r in inside.items()
            if latest_in_range[r.key] == o and not (r.value is None and drop_tombstones)
        }
        if expected:
            assert kept == expected
            assert stats.records_kept == len(kept)
        else:
            # Only old tombstones were left: the cleaner keeps the range's last
            # batch as it is (an object holds at least one batch).
            assert kept
            assert max(kept) == max(inside)
        latest = {r.key: o for o, r in sorted(before.items())}
        for key, o in latest.items():
            if before[o].value is not None or not drop_tombstones or o >= end:
                assert after.get(o) == before[o], f"the latest record of {key!r} is gone"
        model.records = after

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def log_start_and_high_watermark_are_the_models(self) -> None:
        assert self.engine.list_topics() == sorted(self.topics)
        for topic, model in self.topics.items():
            assert self.engine.partition_count(topic) == len(model.partitions)
            for p, pm in enumerate(model.partitions):
                assert self.engine.offsets(topic, p) == (pm.start, pm.end)
                assert all(pm.start <= o < pm.end for o in pm.records)


# Explicit sizes, whatever the profile: CI's 500 examples would take minutes.
# No "explain" phase: it traces every line of the engine's threads and turns
# a failure's report from seconds into many minutes.
PHASES = [phase for phase in Phase if phase is not Phase.explain]


@pytest.fixture
def memory_path() -> Iterator[Path]:
    """The histories' engines in memory: their fsyncs were most of their
    time on a shared disk, and their crashes (closes without a flush) do not
    reach past the page cache (tests/ram_dir.py)."""
    with memory_backed_dir("tidelog-engine-model-") as root:
        yield root


def test_engine_matches_model(memory_path: Path) -> None:
    runs = itertools.count()
    run_state_machine_as_test(
        lambda: EngineMachine(memory_path / f"run-{next(runs)}"),
        settings=settings(max_examples=30, stateful_step_count=40, deadline=None, phases=PHASES),
    )


@pytest.mark.slow
def test_engine_matches_model_at_length(memory_path: Path) -> None:
    """Longer histories than the test above (60 steps): 60 of them by
    default, 300 with TIDELOG_LONG=1."""
    runs = itertools.count()
    run_state_machine_as_test(
        lambda: EngineMachine(memory_path / f"run-{next(runs)}"),
        settings=settings(
            max_examples=sized(60, 300), stateful_step_count=60, deadline=None, phases=PHASES
        ),
    )


# -- a bug the model found (fixed since) ---------------------------------------------------


def test_checkpoint_and_close_after_delete_records_past_unsaved_index_entries(
    tmp_path: Path,
) -> None:
    e = engine.open(tmp_path / "node", config=CONFIG)
    try:
        e.create_topic("t", 1, {"index.interval.bytes": 0})
        for i in range(5):
            e.produce("t", 0, native.encode_batch([RecordSpec(T0 + i, b"k", b"v%d" % i)]))
        assert e.delete_records("t", 0, -1) == 5
        e.checkpoint()
        e.close()
        e = engine.open(tmp_path / "node", config=CONFIG)
        assert e.offsets("t", 0) == (5, 5)
        assert e.list_offset("t", 0, T0) == (-1, -1)
    finally:
        with contextlib.suppress(IndexError):
            e.close()
        e.store.close(flush=False)  # in case close raised before closing it
