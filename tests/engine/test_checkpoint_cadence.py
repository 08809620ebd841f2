"""A partition's checkpoint follows the bytes appended since its last one,
not the clock (docs/design/0128): one written at a trickle is not
checkpointed at every look, one past ``checkpoint_bytes`` is, the
partitions with the most bytes go once their sum passes
``checkpoint_replay_bytes``, and one appended to is checkpointed at least
every ``checkpoint_max_interval_s``. A crash at any point among appends,
transactions and these checkpoints still recovers every acknowledged
record, the producers' sequences, the time index and the last stable
offset, replaying only the bytes since each partition's last checkpoint."""

from __future__ import annotations

import itertools
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, settings
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
from engine.clock import ManualClock
from engine.partition import Partition
from native import RecordSpec
from tests.engine.conftest import FAST_STORE, EngineFactory
from tests.engine.test_transactions import TxnClient

TS = 1_700_000_000_000
WAIT_S = 30.0


def _sized(size: int, timestamp: int = TS) -> bytes:
    """A plain batch of one record about ``size`` bytes long."""
    return native.encode_batch([RecordSpec(timestamp, None, b"v" * size)])


def _state_appends(e: engine.Engine, partition: Partition) -> int:
    return e.store.next_offset(partition.state_stream_id)


def _wait_for_state_appends(e: engine.Engine, partition: Partition, count: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while _state_appends(e, partition) < count:
        assert time.monotonic() < deadline, f"{partition} was not checkpointed"
        time.sleep(0.02)


def test_a_partition_written_at_a_trickle_is_not_checkpointed_at_every_look(
    engine_factory: EngineFactory,
) -> None:
    """The engine's thread looks every 50 ms: a partition given one small
    batch is left alone while one written past the byte bound beside it is
    checkpointed at two looks (which saw the small batch too)."""
    e = engine_factory(checkpoint_interval_s=0.05, checkpoint_bytes=4096)
    e.create_topic("t", 2)
    trickle, busy = e.partition("t", 0), e.partition("t", 1)
    e.produce("t", 0, _sized(100))
    for looks in (1, 2):
        e.produce("t", 1, _sized(5000))
        _wait_for_state_appends(e, busy, looks)
    assert trickle.unsaved_bytes > 0
    assert _state_appends(e, trickle) == 0


def test_a_partition_past_the_byte_bound_is_checkpointed(engine_factory: EngineFactory) -> None:
    e = engine_factory(checkpoint_interval_s=3600.0, checkpoint_bytes=4096)
    e.create_topic("t", 2)
    below, past = e.partition("t", 0), e.partition("t", 1)
    e.produce("t", 0, _sized(3000))
    e.produce("t", 1, _sized(3000))
    e.produce("t", 1, _sized(1500))
    assert past.unsaved_bytes >= 4096 > below.unsaved_bytes
    assert e.checkpoint_due() == 1
    assert _state_appends(e, past) == 1 and past.unsaved_bytes == 0
    assert past.checkpointed_end == past.high_watermark == 2
    assert _state_appends(e, below) == 0
    # Nothing more appended: nothing more is due.
    assert e.checkpoint_due() == 0


def test_the_partitions_with_most_bytes_go_past_the_replay_budget(
    engine_factory: EngineFactory,
) -> None:
    """Four partitions under their own bound but together past the budget:
    the largest are checkpointed until at most half the budget is left."""
    e = engine_factory(
        checkpoint_interval_s=3600.0, checkpoint_bytes=1 << 20, checkpoint_replay_bytes=6000
    )
    e.create_topic("t", 4)
    for index, size in enumerate((3000, 2500, 1800, 1000)):
        e.produce("t", index, _sized(size))
    partitions = [e.partition("t", i) for i in range(4)]
    unsaved = [p.unsaved_bytes for p in partitions]
    assert sum(unsaved) > 6000 and sum(unsaved[2:]) <= 3000 < sum(unsaved[1:])
    assert e.checkpoint_due() == 2
    assert [_state_appends(e, p) for p in partitions] == [1, 1, 0, 0]
    assert e.checkpoint_due() == 0


def test_a_partition_appended_to_is_checkpointed_after_the_longer_interval(
    engine_factory: EngineFactory,
) -> None:
    clock = ManualClock()
    e = engine_factory(clock=clock, checkpoint_interval_s=3600.0, checkpoint_max_interval_s=60.0)
    e.create_topic("t", 2)
    written, idle = e.partition("t", 0), e.partition("t", 1)
    e.produce("t", 0, _sized(10))
    clock.advance(59)
    assert e.checkpoint_due() == 0
    clock.advance(1)
    assert e.checkpoint_due() == 1
    assert _state_appends(e, written) == 1 and _state_appends(e, idle) == 0
    clock.advance(120)
    assert e.checkpoint_due() == 0  # nothing appended since


def test_a_restart_replays_only_the_bytes_since_the_last_checkpoint(
    engine_factory: EngineFactory, tmp_path: Path
) -> None:
    """Past the byte bound a checkpoint is taken; what a crash after it
    replays is the bytes appended since, never the partition's history,
    and they count toward the next checkpoint of the reopened engine."""
    options: dict[str, object] = {"checkpoint_interval_s": 3600.0, "checkpoint_bytes": 8192}
    e = engine_factory(**options)
    e.create_topic("t", 1)
    for _ in range(20):
        e.produce("t", 0, _sized(1000))
        e.checkpoint_due()
    after = e.partition("t", 0).unsaved_bytes
    assert 0 < after < 8192
    assert _state_appends(e, e.partition("t", 0)) == 2
    e.close(flush=False)
    e = engine_factory(**options)
    partition = e.partition("t", 0)
    assert partition.high_watermark == 20
    assert partition.unsaved_bytes == after
    assert e.checkpoint_due() == 0
    e.produce("t", 0, _sized(8192 - after))
    assert e.checkpoint_due() == 1


@dataclass
class _Txn:
    partitions: set[int] = field(default_factory=set)
    first: dict[int, int] = field(default_factory=dict)
    """Its first offset in each partition it wrote to."""


PARTITIONS = 2
CLIENTS = ("a", "b")


class CrashMachine(RuleBasedStateMachine):
    """Idempotent and transactional appends, the cadence's checkpoints
    (with bounds a few batches wide, so they fall between any two steps)
    and crashes (a close without checkpoint or upload, as after kill -9)."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="cadence-"))
        self.engine: engine.Engine | None = None
        self.config = engine.EngineConfig()
        self.counter = itertools.count()
        self.acked: list[list[tuple[int, int, bytes]]] = [[] for _ in range(PARTITIONS)]
        """(offset, timestamp, value) of every acknowledged record."""
        self.producer = (-1, -1)
        self.sequences = [0] * PARTITIONS
        self.last_batch: list[tuple[bytes, int] | None] = [None] * PARTITIONS
        """The idempotent producer's last batch to each partition, and its offset."""
        self.clients: dict[str, TxnClient] = {}
        self.open: dict[str, _Txn] = {}

    @initialize(
        partition_bytes=st.integers(100, 2000),
        replay_bytes=st.integers(200, 4000),
    )
    def open_engine(self, partition_bytes: int, replay_bytes: int) -> None:
        self.config = engine.EngineConfig(
            checkpoint_interval_s=3600.0,
            cleaner_interval_s=3600.0,
            checkpoint_bytes=partition_bytes,
            checkpoint_replay_bytes=replay_bytes,
            store=FAST_STORE,
        )
        self.engine = engine.open(self.root, config=self.config)
        self.engine.create_topic("t", PARTITIONS)
        self.producer = self.engine.init_producer_id()
        self.clients = {name: TxnClient(self.engine, name) for name in CLIENTS}

    def teardown(self) -> None:
        try:
            if self.engine is not None:
                self.engine.close()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _e(self) -> engine.Engine:
        assert self.engine is not None
        return self.engine

    @rule(partition=st.integers(0, PARTITIONS - 1), count=st.integers(1, 4))
    def send_idempotent(self, partition: int, count: int) -> None:
        n = next(self.counter)
        values = [b"i%d-%d" % (n, i) for i in range(count)]
        timestamp = TS + 1000 * n
        data = native.encode_batch(
            [RecordSpec(timestamp, None, v) for v in values],
            producer_id=self.producer[0],
            producer_epoch=self.producer[1],
            base_sequence=self.sequences[partition],
        )
        result = self._e().produce("t", partition, data)
        assert not result.duplicate
        self.sequences[partition] += count
        self.last_batch[partition] = (data, result.base_offset)
        self.acked[partition] += [
            (result.base_offset + i, timestamp, v) for i, v in enumerate(values)
        ]

    @rule(
        name=st.sampled_from(CLIENTS),
        partition=st.integers(0, PARTITIONS - 1),
    )
    def send_transactional(self, name: str, partition: int) -> None:
        txn = self.open.get(name)
        client = self.clients[name]
        if txn is None or partition not in txn.partitions:
            client.begin(("t", partition))
            txn = self.open.setdefault(name, _Txn())
            txn.partitions.add(partition)
        n = next(self.counter)
        value = b"x%d" % n
        result = client.send("t", partition, value)
        txn.first.setdefault(partition, result.base_offset)
        # TxnClient stamps TS + i: the time index and lookups below use the
        # idempotent producer's timestamps, which are all larger.
        self.acked[partition].append((result.base_offset, TS, value))

    @precondition(lambda self: bool(self.open))
    @rule(data=st.data(), commit=st.booleans())
    def end(self, data: st.DataObject, commit: bool) -> None:
        name = data.draw(st.sampled_from(sorted(self.open)))
        self.clients[name].end(commit)
        del self.open[name]

    @rule()
    def look(self) -> None:
        self._e().checkpoint_due()

    @rule()
    def crash(self) -> None:
        self._e().close(flush=False)
        self.engine = engine.open(self.root, config=self.config)
        for client in self.clients.values():
            client.engine = self.engine
        for partition in range(PARTITIONS):
            last = self.last_batch[partition]
            if last is not None:
                retried = self.engine.produce("t", partition, last[0])
                assert retried.duplicate and retried.base_offset == last[1]

    @invariant()
    def every_acknowledged_record_is_there(self) -> None:
        e = self._e()
        for partition in range(PARTITIONS):
            leader = e.partition("t", partition)
            expected = self.acked[partition]
            found: dict[int, tuple[int, bytes]] = {}
            offset = 0
            while offset < leader.high_watermark:
                fetched = leader.fetch(offset, 1 << 20)
                for payload in fetched.records:
                    markers = {
                        o
                        for h in native.scan_batches(payload)
                        if h.is_control
                        for o in range(h.base_offset, h.last_offset + 1)
                    }
                    for record in native.decode_records(payload):
                        if record.offset not in markers:
                            found[record.offset] = (record.timestamp, record.value or b"")
                offset = fetched.next_offset
            assert {o: (t, v) for o, t, v in expected} == found
            opened = [t.first[partition] for t in self.open.values() if partition in t.first]
            assert leader.last_stable_offset == min(opened, default=leader.high_watermark)

    @invariant()
    def lookups_by_timestamp_answer_the_first_record_at_or_after(self) -> None:
        e = self._e()
        for partition in range(PARTITIONS):
            leader = e.partition("t", partition)
            stamped = [(o, t) for o, t, _ in self.acked[partition] if t > TS]
            for timestamp in sorted({t for _, t in stamped}):
                found = leader.offset_for_timestamp(timestamp)
                first = next(o for o, t in stamped if t >= timestamp)
                assert found is not None and found.offset == first
            # Every time-index entry (ts, offset), recovered from checkpoints
            # and replay, says no record before offset is later than ts.
            index = leader.time_index
            for entry_ts, entry_offset in zip(index.timestamps, index.offsets, strict=True):
                assert all(t <= entry_ts for o, t, _ in self.acked[partition] if o < entry_offset)


def test_a_crash_among_appends_transactions_and_checkpoints_recovers_everything() -> None:
    run_state_machine_as_test(
        CrashMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_retention_past_the_last_checkpoint_makes_one_due(
    engine_factory: EngineFactory, tmp_path: Path
) -> None:
    """Retention moves the log start past the partition's last checkpoint:
    the next look checkpoints it, so a crash after still knows the
    producer's sequences (recovery cannot replay them from below the
    start), and a retried batch is answered as a duplicate."""
    e = engine_factory(checkpoint_interval_s=3600.0)
    e.create_topic("t", 1, {"retention.bytes": 4096})
    producer_id, epoch = e.init_producer_id()

    def idempotent(sequence: int) -> bytes:
        return native.encode_batch(
            [RecordSpec(TS, None, b"x" * 1000)],
            producer_id=producer_id,
            producer_epoch=epoch,
            base_sequence=sequence,
        )

    e.produce("t", 0, idempotent(0))
    e.checkpoint()
    partition = e.partition("t", 0)
    assert partition.checkpointed_end == 1
    for sequence in range(1, 12):
        last = idempotent(sequence)
        e.produce("t", 0, last)
        assert e.store.flush(30)  # uploaded, one object a round, no checkpoint
    assert e.checkpoint_due() == 0
    e.store.compact()
    assert partition.log_start_offset > 1
    assert e.checkpoint_due() == 1
    assert partition.checkpointed_end == 12
    e.close(flush=False)
    e = engine_factory(checkpoint_interval_s=3600.0)
    retried = e.produce("t", 0, last)
    assert retried.duplicate and retried.base_offset == 11


def test_a_transaction_marker_counts_as_bytes_appended(engine_factory: EngineFactory) -> None:
    """A marker is a batch a restart replays (it ends the transaction the
    checkpoint before holds open): it counts toward the next checkpoint,
    and the longer interval checkpoints a partition given only a marker."""
    clock = ManualClock()
    e = engine_factory(clock=clock, checkpoint_interval_s=3600.0, checkpoint_max_interval_s=60.0)
    e.create_topic("t", 1)
    leader = e.partition("t", 0)
    client = TxnClient(e, "app")
    client.begin(("t", 0))
    client.send("t", 0, b"a")
    e.checkpoint()
    assert leader.unsaved_bytes == 0
    checkpoints = _state_appends(e, leader)
    client.commit()
    assert leader.unsaved_bytes > 0
    clock.advance(60)
    assert e.checkpoint_due() == 1
    assert _state_appends(e, leader) == checkpoints + 1
    assert leader.unsaved_bytes == 0


def test_the_cleaner_checkpoints_only_what_it_would_clean(
    engine_factory: EngineFactory,
) -> None:
    """A compacted partition whose batches are all younger than
    min.compaction.lag.ms has nothing cleanable: the cleaner's looks write
    no checkpoint for it. Once the lag has passed, one checkpoint comes
    before the clean that needs it."""
    clock = ManualClock()
    e = engine_factory(clock=clock, checkpoint_interval_s=3600.0)
    e.create_topic("t", 1, {"cleanup.policy": "compact", "min.compaction.lag.ms": "3600000"})
    partition = e.partition("t", 0)
    for round_no in range(3):
        now = clock.time_ms()
        for _ in range(2):
            e.produce("t", 0, native.encode_batch([RecordSpec(now, b"k", b"v%d" % round_no)]))
        assert e.store.flush(30)
        assert e.clean() == 0
        clock.advance(15)
    assert _state_appends(e, partition) == 0
    clock.advance(3600)
    assert e.clean() == 1
    assert _state_appends(e, partition) >= 1
    assert partition.durable_checkpoint_end == partition.high_watermark
