"""Forks, replay and lookup against a model: after any interleaving of
produces (with and without the indexed header), transactions (committed,
aborted, and one left open across other steps), snapshots, forks (at the
high watermark or at an earlier snapshot, of the parent or of a fork),
restarts, uploads, merges, DeleteRecords and topic deletions, every live
topic reads what the model says it holds (from its log start):

- a replay to its end returns every record (read uncommitted), and to its
  last stable offset the committed ones (read committed), as does a replay
  to any vector taken earlier of it;
- a lookup by header returns exactly the records carrying the value, and so
  does the lookup from the object store alone once everything is uploaded;
- a fork holds its parent's records below the fork point and its own only;
  a transaction open at the fork point is aborted in the fork and goes on
  in the parent.

``TIDELOG_HYPOTHESIS=thorough`` runs a longer hunt than the default.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
import native
from engine.client.transactional_producer import TransactionalProducer
from engine.errors import OffsetOutOfRange
from engine.memory.uploaded_lookup import lookup_uploaded
from engine.memory.vector import OffsetVector, Position
from engine.types import TopicPartition
from native.records import RecordSpec
from s3stream import StreamStoreConfig
from s3stream.store.local import LocalStore

EXAMPLES = 200 if os.environ.get("TIDELOG_HYPOTHESIS") == "thorough" else 12
HEADER = "cid"
CIDS = (b"a", b"b")
CONFIG = engine.EngineConfig(
    # Small WAL segments: a close trims the WAL and waits for a spare segment
    # to be zero-filled, at the default size most of an example's time.
    store=StreamStoreConfig(
        upload_interval_s=3600,
        upload_bytes=1 << 30,
        compaction_interval_s=3600,
        wal_segment_bytes=256 * 1024,
    ),
    cleaner_interval_s=3600,
)


@dataclass(frozen=True)
class Entry:
    offset: int
    value: bytes | None
    """None: a transaction marker."""
    cid: bytes | None
    status: str
    """plain, open, committed, aborted or marker."""


@dataclass
class Topic:
    entries: list[Entry] = field(default_factory=list)
    start: int = 0
    """The log start offset (DeleteRecords)."""
    vectors: list[tuple[OffsetVector, int]] = field(default_factory=list)
    """Snapshots taken of it (read committed), with the high watermark then."""

    @property
    def end(self) -> int:
        return self.entries[-1].offset + 1 if self.entries else 0

    @property
    def stable(self) -> int:
        return next((e.offset for e in self.entries if e.status == "open"), self.end)


cids = st.lists(st.sampled_from([*CIDS, None]), min_size=1, max_size=3)
ops = st.one_of(
    st.tuples(st.just("produce"), st.integers(0, 9), cids),
    st.tuples(st.just("begin"), st.integers(0, 9), st.sampled_from([*CIDS, None])),
    st.tuples(st.just("end"), st.booleans()),
    st.tuples(st.just("snapshot"), st.integers(0, 9)),
    st.tuples(st.just("fork"), st.integers(0, 9), st.integers(-1, 9)),
    st.tuples(st.just("restart")),
    st.tuples(st.just("flush")),
    st.tuples(st.just("merge")),
    st.tuples(st.just("delete"), st.integers(0, 9)),
    st.tuples(st.just("delete_records"), st.integers(0, 9), st.integers(0, 100)),
)  # fmt: skip


class Run:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.bucket = LocalStore(root / "bucket")
        self.topics: dict[str, Topic] = {"t": Topic()}
        self.forks = 0
        self.counter = 0
        self.txn: tuple[str, TransactionalProducer] | None = None
        self.e = engine.Engine.open(root / "node", self.bucket, CONFIG)
        self.e.create_topic("t", 1, {"tidelog.index.headers": HEADER})

    def _pick(self, choice: int) -> str:
        names = sorted(self.topics)
        return names[choice % len(names)]

    def _value(self) -> bytes:
        self.counter += 1
        return b"v%d" % self.counter

    def apply(self, op: tuple[Any, ...]) -> None:
        if self.topics:
            getattr(self, op[0])(*op[1:])

    def produce(self, choice: int, cids: list[bytes | None]) -> None:
        name = self._pick(choice)
        values = [self._value() for _ in cids]
        specs = [
            RecordSpec(0, None, v, () if cid is None else ((HEADER, cid),))
            for v, cid in zip(values, cids, strict=True)
        ]
        base = self.e.produce(name, 0, native.encode_batch(specs)).base_offset
        topic = self.topics[name]
        assert base == topic.end
        for i, (value, cid) in enumerate(zip(values, cids, strict=True)):
            topic.entries.append(Entry(base + i, value, cid, "plain"))

    def begin(self, choice: int, cid: bytes | None) -> None:
        if self.txn is not None:
            return
        name = self._pick(choice)
        producer = self.e.producer(transactional_id="tx")
        producer.init_transactions()
        producer.begin_transaction()
        value = self._value()
        headers = () if cid is None else ((HEADER, cid),)
        offset = producer.send(name, value, headers=headers, partition=0).result(10).offset
        topic = self.topics[name]
        assert offset == topic.end
        topic.entries.append(Entry(offset, value, cid, "open"))
        self.txn = (name, producer)

    def end(self, commit: bool) -> None:
        if self.txn is None:
            return
        name, producer = self.txn
        if commit:
            producer.commit_transaction()
        else:
            producer.abort_transaction()
        producer.close()
        self.txn = None
        topic = self.topics[name]
        status = "committed" if commit else "aborted"
        topic.entries = [
            replace(e, status=status) if e.status == "open" else e for e in topic.entries
        ]
        topic.entries.append(Entry(topic.end, None, None, "marker"))
        assert self.e.offsets(name, 0)[1] == topic.end

    def snapshot(self, choice: int) -> None:
        name = self._pick(choice)
        vector = self.e.snapshot([name])
        topic = self.topics[name]
        assert vector[TopicPartition(name, 0)].offset == topic.stable
        topic.vectors.append((vector, topic.end))

    def fork(self, choice: int, at: int) -> None:
        name = self._pick(choice)
        parent = self.topics[name]
        self.forks += 1
        fork_name = f"f{self.forks}"
        if at < 0 or not parent.vectors:
            self.e.fork(name, name=fork_name)
            point = parent.end
        else:
            vector, _ = parent.vectors[at % len(parent.vectors)]
            point = vector[TopicPartition(name, 0)].offset
            if point < parent.start:
                with pytest.raises(OffsetOutOfRange):
                    self.e.fork(name, vector, name=fork_name)
                return
            self.e.fork(name, vector, name=fork_name)
        below = [e for e in parent.entries if e.offset < point]
        fork = Topic(
            [replace(e, status="aborted") if e.status == "open" else e for e in below],
            parent.start,
        )
        if any(e.status == "open" for e in below):  # the fork ends it with an abort
            fork.entries.append(Entry(fork.end, None, None, "marker"))
        assert self.e.offsets(fork_name, 0) == (fork.start, fork.end)
        self.topics[fork_name] = fork

    def restart(self) -> None:
        self.end(False)
        self.e.close()
        self.e = engine.Engine.open(self.root / "node", self.bucket, CONFIG)

    def flush(self) -> None:
        assert self.e.flush(timeout=30)

    def merge(self) -> None:
        self.flush()
        self.e.store.compact()

    def delete(self, choice: int) -> None:
        name = self._pick(choice)
        if self.txn is not None and self.txn[0] == name:
            return
        self.e.delete_topic(name)
        del self.topics[name]

    def delete_records(self, choice: int, percent: int) -> None:
        name = self._pick(choice)
        topic = self.topics[name]
        target = topic.start + (topic.stable - topic.start) * percent // 100
        assert self.e.delete_records(name, 0, target) == max(topic.start, target)
        topic.start = max(topic.start, target)

    # -- checks -----------------------------------------------------------------------

    def check(self) -> None:
        for name, topic in self.topics.items():
            tp = TopicPartition(name, 0)
            held = [e for e in topic.entries if e.offset >= topic.start]
            now = self.e.snapshot([name], isolation_level="read_uncommitted")
            assert self._replay(now, "read_uncommitted", topic.start) == [
                e.value for e in held if e.status != "marker"
            ], name
            for vector, _ in [*topic.vectors, (self.e.snapshot([name]), topic.end)]:
                cut = vector[tp].offset
                assert self._replay(vector, "read_committed", topic.start) == [
                    e.value for e in held if e.offset < cut and e.status in ("plain", "committed")
                ], (name, vector)
            for cid in CIDS:
                expected = [(e.offset, e.value) for e in held if e.cid == cid]
                found = self.e.lookup(name, HEADER, cid)
                assert [(r.ref.offset, r.value) for r in found] == expected, (name, cid)
        self.flush()
        for cid in CIDS:
            uploaded = lookup_uploaded(self.bucket, sorted(self.topics), HEADER, cid)
            assert [(r.ref.topic, r.ref.offset, r.value) for r in uploaded] == [
                (name, e.offset, e.value)
                for name in sorted(self.topics)
                for e in self.topics[name].entries
                if e.cid == cid and e.offset >= self.topics[name].start
            ], cid

    def _replay(self, until: OffsetVector, level: str, start: int) -> list[bytes | None]:
        since = OffsetVector({tp: Position(min(start, p.offset)) for tp, p in until.items()})
        with self.e.replay(until, since, isolation_level=level, timeout=10) as replay:
            values = [r.value for r in replay]
            assert replay.at_end()
        return values

    def close(self) -> None:
        if self.txn is not None:
            self.txn[1].close()
        self.e.close()


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(ops, max_size=16))
def test_forks_replays_and_lookups_read_what_the_model_holds(steps: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory(prefix="fork-model-") as root:
        run = Run(Path(root))
        try:
            # Every run has a fork to start from: what the steps do is the hunt.
            for op in [("produce", 0, [b"a", None]), ("fork", 0, -1), *steps]:
                run.apply(op)
            run.check()
        finally:
            run.close()
