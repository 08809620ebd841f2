"""Bounded replay against a model: after any interleaving of produces,
transactions (committed and aborted), snapshots (now and at a time),
restarts on the same storage, DeleteRecords and compaction, replaying to a
snapshot returns exactly the records the model says were durable below it
and are still held, in offset order per partition; a start below the log
start is RecordsRemoved, never a later start.

The model keeps every entry a partition was given (record or transaction
marker) with the engine clock's time at its append and the leader epoch it
was written in; the topic is LogAppendTime so a snapshot at a time has one
right answer. A compacted topic's replay is checked against what its log
holds below the vector, which must be an ordered part of the model's
records that keeps each key's latest record.

``TIDELOG_HYPOTHESIS=thorough`` runs a longer hunt than the default.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine.clock import ManualClock
from engine.memory.replay import RecordsRemoved
from engine.memory.vector import OffsetVector, Position
from engine.types import TopicPartition
from s3stream import StreamStoreConfig
from tests.engine.helpers_records import batch, read_partition

SMALL_SEGMENTS = engine.EngineConfig(store=StreamStoreConfig(wal_segment_bytes=256 * 1024))
"""A close trims the WAL and waits for a spare segment to be zero-filled:
at the default segment size, most of an example's time."""

EXAMPLES = 300 if os.environ.get("TIDELOG_HYPOTHESIS") == "thorough" else 20
PARTITIONS = 2
KEYS = (b"k0", b"k1", b"k2")
COMPACTED = TopicPartition("c", 0)


@dataclass
class Entry:
    offset: int
    value: bytes | None
    """None: a transaction marker."""
    status: str
    """plain, committed, aborted, or marker."""
    time: int
    epoch: int


@dataclass
class Model:
    entries: dict[int, list[Entry]] = field(
        default_factory=lambda: {p: [] for p in range(PARTITIONS)}
    )
    log_start: dict[int, int] = field(default_factory=lambda: dict.fromkeys(range(PARTITIONS), 0))
    compacted: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    """(offset, key, value) of every record produced to the compacted topic."""
    compacted_start: int = 0

    def end(self, p: int) -> int:
        return self.entries[p][-1].offset + 1 if self.entries[p] else 0

    def cut_at(self, p: int, at: int) -> int:
        for entry in self.entries[p]:
            if entry.offset >= self.log_start[p] and entry.time > at:
                return entry.offset
        return self.end(p)

    def epoch_below(self, p: int, offset: int) -> int:
        return self.entries[p][offset - 1].epoch if offset > 0 else -1

    def visible(self, p: int, since: int, until: int, committed: bool) -> list[bytes | None]:
        wanted = ("plain", "committed") if committed else ("plain", "committed", "aborted")
        return [
            e.value
            for e in self.entries[p]
            if since <= e.offset < until and e.status in wanted and e.offset >= self.log_start[p]
        ]


ops = st.one_of(
    st.tuples(st.just("produce"), st.integers(0, PARTITIONS - 1), st.integers(1, 4)),
    st.tuples(
        st.just("transaction"),
        st.sets(st.integers(0, PARTITIONS - 1), min_size=1),
        st.booleans(),
        st.integers(0, 2000),
    ),
    st.tuples(st.just("advance"), st.integers(1, 3000)),
    st.tuples(st.just("snapshot"), st.just(0), st.just(0)),
    st.tuples(st.just("snapshot_at"), st.integers(0, 50)),
    st.tuples(
        st.just("restart"),
    ),
    st.tuples(st.just("delete_records"), st.integers(0, PARTITIONS - 1), st.integers(0, 100)),
    st.tuples(st.just("produce_keyed"), st.sampled_from(KEYS)),
    st.tuples(
        st.just("compact"),
    ),
)


class Run:
    """One engine on a temporary directory, driven by ops, mirrored in a Model."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.clock = ManualClock(time_ms=1_000_000)
        self.model = Model()
        self.vectors: list[OffsetVector] = []
        self.counter = 0
        self.e = self._open()
        self.e.create_topic(
            "t", partitions=PARTITIONS, configs={"message.timestamp.type": "LogAppendTime"}
        )
        self.e.create_topic(
            "c",
            partitions=1,
            configs={
                "cleanup.policy": "compact",
                "min.cleanable.dirty.ratio": 0.01,
                # Its records are dated 2023, the clock 1970: no bound ahead.
                "message.timestamp.after.max.ms": 2**63 - 1,
            },
        )

    def _open(self) -> engine.Engine:
        return engine.open(self.root / "node", config=SMALL_SEGMENTS, clock=self.clock)

    def _value(self) -> bytes:
        self.counter += 1
        return b"v%d" % self.counter

    def _epoch(self, p: int) -> int:
        return self.e.partition("t", p).leader_epoch

    def apply(self, op: tuple[Any, ...]) -> None:
        getattr(self, op[0])(*op[1:])

    def produce(self, p: int, count: int) -> None:
        values = [self._value() for _ in range(count)]
        result = self.e.produce("t", p, batch(values))
        assert result.base_offset == self.model.end(p)
        now, epoch = self.clock.time_ms(), self._epoch(p)
        for i, value in enumerate(values):
            self.model.entries[p].append(Entry(result.base_offset + i, value, "plain", now, epoch))

    def transaction(self, partitions: set[int], commit: bool, pause_ms: int) -> None:
        with self.e.producer(transactional_id="tx") as producer:
            producer.init_transactions()
            producer.begin_transaction()
            sent = [
                (p, v, producer.send("t", v, partition=p))
                for p in sorted(partitions)
                for v in (self._value(),)
            ]
            producer.flush()
            self.clock.advance(pause_ms / 1000)  # the marker comes later than the records
            if commit:
                producer.commit_transaction()
            else:
                producer.abort_transaction()
        now = self.clock.time_ms()
        sent_at = now - pause_ms
        status = "committed" if commit else "aborted"
        for p, value, future in sent:
            offset = future.result(10).offset
            assert offset == self.model.end(p)
            self.model.entries[p].append(Entry(offset, value, status, sent_at, self._epoch(p)))
        for p in partitions:  # the marker ends the partition's log
            marker = self.e.offsets("t", p)[1] - 1
            assert marker == self.model.end(p)
            self.model.entries[p].append(Entry(marker, None, "marker", now, self._epoch(p)))

    def advance(self, ms: int) -> None:
        self.clock.advance(ms / 1000)

    def snapshot(self, _a: int, _b: int) -> None:
        vector = self.e.snapshot(["t", "c"])
        for p in range(PARTITIONS):
            end = self.model.end(p)
            epoch = self.model.epoch_below(p, end)
            assert vector[TopicPartition("t", p)] == Position(end, epoch, self.e.topic_id("t"))
        self.vectors.append(vector)

    def snapshot_at(self, pick: int) -> None:
        # At an entry's time and either side of it, where an off-by-one shows.
        times = sorted({e.time for p in range(PARTITIONS) for e in self.model.entries[p]})
        chosen = times[pick % len(times)] if times else self.clock.time_ms()
        for at in (chosen - 1, chosen + 1, chosen):
            vector = self.e.snapshot(["t"], at=at)
            for p in range(PARTITIONS):
                cut = self.model.cut_at(p, at)
                expected = Position(cut, self.model.epoch_below(p, cut), self.e.topic_id("t"))
                assert vector[TopicPartition("t", p)] == expected, at
        self.vectors.append(vector)

    def restart(self) -> None:
        self.e.close()
        self.e = self._open()

    def delete_records(self, p: int, percent: int) -> None:
        start, end = self.model.log_start[p], self.model.end(p)
        target = start + (end - start) * percent // 100
        assert self.e.delete_records("t", p, target) == max(start, target)
        self.model.log_start[p] = max(start, target)

    def produce_keyed(self, key: bytes) -> None:
        value = self._value()
        result = self.e.produce("c", 0, batch([value], key=key))
        self.model.compacted.append((result.base_offset, key, value))

    def compact(self) -> None:
        self.e.flush(10)
        self.e.clean()

    # -- checks -----------------------------------------------------------------------

    def check(self) -> None:
        vectors = [*self.vectors, self.e.snapshot(["t", "c"])]
        for until in vectors:
            self._check_replay(None, until)
            self._check_replay(self.e.earliest(until.topics), until)
        for since, until in itertools.pairwise(vectors):
            self._check_replay(since, until)

    def _check_replay(self, since: OffsetVector | None, until: OffsetVector) -> None:
        since = OffsetVector({tp: since[tp] for tp in until if since and tp in since})
        starts = {tp: since[tp].offset if tp in since else 0 for tp in until}
        if any(s > until[tp].offset for tp, s in starts.items()):
            return  # a snapshot at an earlier time may precede the one before it
        removed = any(
            starts[tp] < until[tp].offset and starts[tp] < self._log_start(tp) for tp in until
        )
        for committed in (True, False):
            level = "read_committed" if committed else "read_uncommitted"
            if removed:
                with pytest.raises(RecordsRemoved):
                    self.e.replay(until, since, isolation_level=level)
                continue
            with self.e.replay(until, since, isolation_level=level, timeout=5) as replay:
                got: dict[TopicPartition, list[tuple[int, bytes | None]]] = {}
                for r in replay:
                    got.setdefault(TopicPartition(r.topic, r.partition), []).append(
                        (r.offset, r.value)
                    )
                assert replay.at_end()
            for tp in until:
                values = [v for _, v in got.get(tp, [])]
                if tp.topic == "t":
                    expected = self.model.visible(
                        tp.partition, starts[tp], until[tp].offset, committed
                    )
                    assert values == expected, (tp, since, until)
                else:
                    self._check_compacted(got.get(tp, []), starts[tp], until[tp].offset)

    def _log_start(self, tp: TopicPartition) -> int:
        return self.model.log_start[tp.partition] if tp.topic == "t" else self.model.compacted_start

    def _check_compacted(self, got: list[tuple[int, bytes | None]], since: int, until: int) -> None:
        held = [
            (r.offset, r.value) for r in read_partition(self.e, "c", 0) if since <= r.offset < until
        ]
        assert got == held
        produced = [(o, v) for o, _, v in self.model.compacted if since <= o < until]
        assert set(got) <= set(produced)
        latest = {key: (o, v) for o, key, v in self.model.compacted}
        for o, v in latest.values():
            if since <= o < until:
                assert (o, v) in got

    def close(self) -> None:
        self.e.close()


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(ops, max_size=14))
def test_replay_to_a_vector_returns_what_the_model_says_was_durable_below_it(
    steps: list[tuple[Any, ...]],
) -> None:
    with tempfile.TemporaryDirectory(prefix="replay-model-") as root:
        run = Run(Path(root))
        try:
            for op in [("produce", 0, 2), ("advance", 5), ("produce", 1, 1), *steps]:
                run.apply(op)
            run.check()
        finally:
            run.close()
