"""Lookup by header (engine/memory/lookup.py, s3stream/header_index.py):
exactly the records whose header holds the value, in offset order, across
uploads, merges, restarts and deletions, whether the index covers the data
or not; and an indexed lookup reads the index and the matching batches,
not the log."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import native
from engine import Engine, EngineConfig
from engine.errors import InvalidConfig, UnknownPartition, UnknownTopic
from engine.memory.uploaded_lookup import lookup_uploaded
from engine.memory.uploaded_transactions import _last_checkpoint
from engine.topic_id import uuid_text
from native.records import Compression, RecordSpec
from s3stream import NoRoom, StreamStoreConfig
from s3stream.manifest import load_state
from s3stream.store.base import ObjectData
from s3stream.store.local import LocalStore
from tests.engine.helpers_records import child_env
from tests.s3stream.faults import FaultyStore

HEADER = "cid"
VALUES = [b"a", b"b", b"c"]
# Uploads and merges only when the test asks (flush, compact).
QUIET = EngineConfig(
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

Headers = tuple[tuple[str, bytes | None], ...]

header = st.one_of(
    st.tuples(st.just(HEADER), st.sampled_from(VALUES)),
    st.tuples(st.just(HEADER), st.none()),
    st.tuples(st.just("other"), st.sampled_from(VALUES)),
)
records = st.lists(st.lists(header, max_size=3).map(tuple), min_size=1, max_size=6)
step = st.one_of(
    st.tuples(st.just("produce"), st.integers(0, 1), records, st.booleans()),
    st.tuples(st.just("flush")),
    st.tuples(st.just("compact")),
    st.tuples(st.just("restart")),
    st.tuples(st.just("delete"), st.integers(0, 1), st.integers(0, 8)),
    st.tuples(st.just("index")),
)


class Model:
    """Every record produced, by partition: (offset, headers); and the log starts."""

    def __init__(self) -> None:
        self.records: dict[int, list[tuple[int, Headers]]] = {0: [], 1: []}
        self.start = {0: 0, 1: 0}

    def expected(self, value: bytes) -> list[tuple[int, int]]:
        return [
            (partition, offset)
            for partition in (0, 1)
            for offset, headers in self.records[partition]
            if offset >= self.start[partition] and (HEADER, value) in headers
        ]


def _batch(headers: list[Headers], compressed: bool) -> bytes:
    specs = [RecordSpec(0, None, b"v", h) for h in headers]
    codec = Compression.GZIP if compressed else Compression.NONE
    return native.encode_batch(specs, compression=codec)


def _check(engine: Engine, model: Model) -> None:
    for value in VALUES:
        found = engine.lookup("t", HEADER, value)
        assert [(r.ref.partition, r.ref.offset) for r in found] == model.expected(value)
        assert all((HEADER, value) in r.headers for r in found)


def _run(steps: list[tuple[object, ...]], indexed_from_start: bool) -> None:
    with tempfile.TemporaryDirectory() as directory:
        configs = {"tidelog.index.headers": f"{HEADER},x-trace"} if indexed_from_start else {}
        engine = Engine.open(directory, config=QUIET)
        try:
            engine.create_topic("t", 2, configs=configs)
            model = Model()
            for action, *args in steps:
                if action == "produce":
                    partition, headers, compressed = args
                    assert isinstance(partition, int) and isinstance(headers, list)
                    base = engine.offsets("t", partition)[1]
                    engine.produce("t", partition, _batch(headers, bool(compressed)))
                    model.records[partition] += [(base + i, h) for i, h in enumerate(headers)]
                elif action == "flush":
                    assert engine.flush(30)
                elif action == "compact":
                    engine.store.compact()
                elif action == "restart":
                    engine.close()
                    engine = Engine.open(directory, config=QUIET)
                elif action == "delete":
                    partition, ahead = args
                    assert isinstance(partition, int) and isinstance(ahead, int)
                    start, end = engine.offsets("t", partition)
                    target = min(end, start + ahead)
                    model.start[partition] = engine.delete_records("t", partition, target)
                elif action == "index":
                    engine.alter_configs("t", {"tidelog.index.headers": HEADER})
                _check(engine, model)
            # Everything uploaded and merged once more: the index alone answers.
            assert engine.flush(30)
            engine.store.compact()
            _check(engine, model)
        finally:
            engine.close()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=12), st.booleans())
def test_lookup_returns_exactly_the_records_holding_the_value(
    steps: list[tuple[object, ...]], indexed_from_start: bool
) -> None:
    _run(steps, indexed_from_start)


def test_objects_written_before_the_topic_indexed_the_header_are_scanned() -> None:
    produce = ("produce", 0, [((HEADER, b"a"),), (("other", b"a"),), ((HEADER, b"b"),)], False)
    _run([produce, ("flush",), ("index",), produce, ("flush",), ("compact",), produce], False)


class CountingStore(FaultyStore):
    """Counts the GETs and the bytes they return."""

    def __init__(self, root: Path) -> None:
        super().__init__(LocalStore(root))
        self.gets = 0
        self.got = 0
        self._count = threading.Lock()

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        data = super().get(key, start, end)
        with self._count:
            self.gets += 1
            self.got += len(data)
        return data

    def put(self, key: str, data: ObjectData) -> str:
        return super().put(key, data)


def _counted_reads(**store: int) -> EngineConfig:
    """Uploads, merges and checkpoints only when the test asks, in blocks
    of 16 KiB read from the bucket each time (no block cache): what a
    lookup reads is what a CountingStore counts."""
    quiet = StreamStoreConfig(
        upload_interval_s=3600,
        upload_bytes=1 << 30,
        compaction_interval_s=3600,
        block_bytes=16 * 1024,
        block_cache_bytes=0,
    )
    return EngineConfig(
        store=replace(quiet, **store),
        checkpoint_interval_s=3600,
        cleaner_interval_s=3600,
    )


def test_an_indexed_lookup_reads_the_index_and_the_matching_batches(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "bucket")
    config = _counted_reads()
    with Engine.open(tmp_path / "data", store, config=config) as engine:
        engine.create_topic("t", 1, configs={"tidelog.index.headers": HEADER})
        for batch in range(400):
            specs = [
                RecordSpec(0, None, bytes(200), ((HEADER, b"id-%d" % (batch * 10 + i)),))
                for i in range(10)
            ]
            engine.produce("t", 0, native.encode_batch(specs))
    # Reopened, nothing is in the log cache: every read goes to the objects.
    with Engine.open(tmp_path / "data", store, config=config) as engine:
        total = sum(info.size for info in store.list("objects/"))
        gets, got = store.gets, store.got
        found = engine.lookup("t", HEADER, "id-1234")
        assert [r.ref.offset for r in found] == [1234]
        # The object's tail (footer, index, directory), one bucket, one block.
        assert store.gets - gets <= 3
        assert store.got - got < total // 10


def test_a_bad_header_list_is_invalid_config(tmp_path: Path) -> None:
    with Engine.open(tmp_path) as engine:
        for bad in ("a,a", "a b", "x\x01", ",".join(f"h{i}" for i in range(17)), "h" * 250):
            with pytest.raises(InvalidConfig):
                engine.create_topic("t", 1, configs={"tidelog.index.headers": bad})
        engine.create_topic("t", 1, configs={"tidelog.index.headers": "correlation-id, tidelog.x"})
        assert engine.topic_config("t").index_headers == ("correlation-id", "tidelog.x")


def _lookup_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", "lookup", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
        check=False,
    )


def test_tidelog_lookup_reads_the_object_store_beside_a_running_engine(tmp_path: Path) -> None:
    with Engine.open(tmp_path, config=QUIET) as engine:
        engine.create_topic("t", 2, configs={"tidelog.index.headers": HEADER})
        engine.create_topic("u", 1)  # not indexed: scanned
        for i in range(6):
            engine.produce("t", i % 2, _batch([((HEADER, b"a" if i % 3 else b"b"),)], i == 4))
        engine.produce("u", 0, _batch([((HEADER, b"b"),), (("other", b"b"),)], False))
        assert engine.flush(30)
        engine.produce("t", 0, _batch([((HEADER, b"b"),)], False))  # only in the WAL
        done = _lookup_cli(tmp_path, "t", "u", "--header", HEADER, "--value", "b", "--json")
        assert done.returncode == 0, done.stderr
        t, u = (f"@{uuid_text(engine.topic_id(name))}" for name in ("t", "u"))
        refs = [json.loads(line)["ref"] for line in done.stdout.splitlines()]
        assert refs == [f"t:0:0:1{t}", f"t:1:1:1{t}", f"u:0:0:1{u}"]
        assert [str(r.ref) for r in engine.lookup_many(["t", "u"], HEADER, "b")] == [
            f"t:0:0:1{t}",
            f"t:0:3:1{t}",
            f"t:1:1:1{t}",
            f"u:0:0:1{u}",
        ]
    missing = _lookup_cli(tmp_path, "nope", "--header", HEADER, "--value", "b")
    assert missing.returncode == 2 and "nope" in missing.stderr


def test_an_unknown_topic_or_partition_is_a_typed_error(tmp_path: Path) -> None:
    with Engine.open(tmp_path) as engine:
        engine.create_topic("t", 1)
        with pytest.raises(UnknownTopic):
            engine.lookup("nope", HEADER, "a")
        with pytest.raises(UnknownPartition):
            engine.lookup("t", HEADER, "a", partitions=[3])
        assert engine.lookup("t", HEADER, "a") == []


def test_a_log_cleaners_rewrite_is_indexed_and_keeps_only_the_latest(tmp_path: Path) -> None:
    configs = {
        "cleanup.policy": "compact",
        "min.cleanable.dirty.ratio": "0",
        "tidelog.index.headers": HEADER,
    }
    with Engine.open(tmp_path, config=QUIET) as engine:
        engine.create_topic("t", 1, configs=configs)
        for key in (b"k1", b"k1", b"k2"):
            spec = RecordSpec(0, key, b"v", ((HEADER, b"a"),))
            engine.produce("t", 0, native.encode_batch([spec]))
            assert engine.flush(30)
        assert engine.clean() == 1
        partition = engine.partition("t", 0)
        candidates = partition.store.header_candidates(partition.stream_id, HEADER, b"a")
        assert candidates.scans == []  # the rewritten object is indexed too
        assert [r.ref.offset for r in engine.lookup("t", HEADER, "a")] == [1, 2]


@pytest.mark.parametrize("indexed", [True, False])
def test_a_read_committed_lookup_leaves_out_aborted_and_open_transactions(
    tmp_path: Path, indexed: bool
) -> None:
    """A decide-and-act that aborted leaves its decision in the log: an
    investigation looking it up by correlation id must be able to read as a
    read_committed consumer does, or it finds a decision never taken."""
    with Engine.open(tmp_path, config=QUIET) as e:
        configs = {"tidelog.index.headers": HEADER} if indexed else {}
        e.create_topic("t", 1, configs)
        with e.producer(transactional_id="agent") as producer:
            producer.init_transactions(timeout=30)
            for value, commit in ((b"aborted", False), (b"committed", True)):
                producer.begin_transaction()
                producer.send("t", value, partition=0, headers=[(HEADER, b"a")])
                if commit:
                    producer.commit_transaction(timeout=30)
                else:
                    # written, so the abort leaves it aborted (unsent, it would fail)
                    producer.flush(30)
                    producer.abort_transaction(timeout=30)
            assert e.flush(timeout=30)  # read back from objects, and from the log cache
            producer.begin_transaction()
            producer.send("t", b"open", partition=0, headers=[(HEADER, b"a")]).result(30)
            committed = e.lookup("t", HEADER, "a", isolation_level="read_committed")
            everything = e.lookup("t", HEADER, "a")
            producer.abort_transaction(timeout=30)
        with pytest.raises(ValueError):
            e.lookup("t", HEADER, "a", isolation_level="read-committed")
    assert [r.value for r in committed] == [b"committed"]
    assert [r.value for r in everything] == [b"aborted", b"committed", b"open"]


def test_tidelog_lookup_reads_committed_when_asked(tmp_path: Path) -> None:
    """``--isolation-level read_committed`` leaves out what Engine.lookup's
    read_committed leaves out, from the object store alone: an aborted
    transaction's records, and those of one still open (its first offset
    holds the stable end). Without it, as Engine.lookup's default, every
    record is found."""
    with Engine.open(tmp_path, config=QUIET) as e:
        e.create_topic("t", 1, {"tidelog.index.headers": HEADER})
        e.create_topic("u", 1)  # not indexed: scanned
        with e.producer(transactional_id="agent") as producer:
            producer.init_transactions(timeout=30)
            for value, commit in ((b"aborted", False), (b"committed", True), (b"open", None)):
                producer.begin_transaction()
                for topic in ("t", "u"):
                    producer.send(topic, value, partition=0, headers=[(HEADER, b"a")])
                producer.flush(30)
                if commit is True:
                    producer.commit_transaction(timeout=30)
                elif commit is False:
                    producer.abort_transaction(timeout=30)
            assert e.flush(timeout=30)
            args = ("t", "u", "--header", HEADER, "--value", "a", "--json")
            default = _lookup_cli(tmp_path, *args)
            committed = _lookup_cli(tmp_path, *args, "--isolation-level", "read_committed")
            uncommitted = _lookup_cli(tmp_path, *args, "--isolation-level", "read_uncommitted")
            embedded = [
                r.value
                for r in e.lookup_many(["t", "u"], HEADER, "a", isolation_level="read_committed")
            ]
            producer.abort_transaction(timeout=30)
    for done in (default, committed, uncommitted):
        assert done.returncode == 0, done.stderr
    values = [
        [json.loads(line)["value"] for line in done.stdout.splitlines()]
        for done in (default, committed, uncommitted)
    ]
    assert values[0] == values[2] == ["aborted", "committed", "open"] * 2
    assert values[1] == ["committed"] * 2
    assert embedded == [b"committed"] * 2
    refused = _lookup_cli(
        tmp_path, "t", "--header", HEADER, "--value", "a", "--isolation-level", "x"
    )
    assert refused.returncode == 2 and "isolation-level" in refused.stderr


def test_a_read_committed_lookup_from_the_store_reads_the_last_checkpoint_not_the_history(
    tmp_path: Path,
) -> None:
    """``tidelog lookup --isolation-level read_committed`` takes the
    partition's transactions from its last uploaded checkpoint and replays
    only the batches after it: it reads about what a read_uncommitted
    lookup reads (the index and the matching batches), not every block of
    the history. Transactions ended before the checkpoint and after it are
    both told apart: aborted ones left out, one still open holds the
    stable end."""
    store = CountingStore(tmp_path / "bucket")
    config = _counted_reads()
    with Engine.open(tmp_path / "data", store, config=config) as e:
        e.create_topic("t", 1, configs={"tidelog.index.headers": HEADER})
        with e.producer(transactional_id="agent") as producer:
            producer.init_transactions(timeout=30)

            def transaction(value: bytes, commit: bool | None) -> None:
                producer.begin_transaction()
                producer.send("t", value, partition=0, headers=[(HEADER, b"a")]).result(30)
                if commit is True:
                    producer.commit_transaction(timeout=30)
                elif commit is False:
                    producer.abort_transaction(timeout=30)

            transaction(b"aborted-before", False)
            for _ in range(400):  # history no lookup needs
                specs = [RecordSpec(0, None, bytes(200), ((HEADER, b"other"),))] * 10
                e.produce("t", 0, native.encode_batch(specs))
            transaction(b"committed-before", True)
            assert e.flush(timeout=30)  # checkpoints, then uploads
            # Uploaded with no checkpoint after them: replayed.
            transaction(b"aborted-after", False)
            transaction(b"committed-after", True)
            transaction(b"open-after", None)
            assert e.store.flush(30)
            total = sum(info.size for info in store.list("objects/"))
            gets, got = store.gets, store.got
            everything = lookup_uploaded(store, ["t"], HEADER, b"a")
            uncommitted = (store.gets - gets, store.got - got)
            gets, got = store.gets, store.got
            committed = lookup_uploaded(store, ["t"], HEADER, b"a", read_committed=True)
            read_committed = (store.gets - gets, store.got - got)
            producer.abort_transaction(timeout=30)
    assert [r.value for r in everything] == [
        b"aborted-before",
        b"committed-before",
        b"aborted-after",
        b"committed-after",
        b"open-after",
    ]
    assert [r.value for r in committed] == [b"committed-before", b"committed-after"]
    # Beyond the read_uncommitted lookup's reads: the object's tail again,
    # the block with the last checkpoint, and the blocks after it.
    assert read_committed[0] - uncommitted[0] <= 4
    assert read_committed[1] - uncommitted[1] < total // 10


def test_a_read_committed_lookup_from_the_store_reads_a_checkpoint_in_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partition whose producers outgrew one WAL record checkpoints in
    parts (docs/engine-format.md, "Checkpoints in parts"): the lookup reads
    the last run whole from its last part back, and passes over a run a
    refused part cut short after it."""
    store = LocalStore(tmp_path / "bucket")
    config = EngineConfig(
        store=StreamStoreConfig(
            upload_interval_s=3600, compaction_interval_s=3600, wal_segment_bytes=32 * 1024
        ),
        checkpoint_interval_s=3600,
        cleaner_interval_s=3600,
    )
    with Engine.open(tmp_path / "data", store, config=config) as e:
        e.create_topic("t", 1, configs={"tidelog.index.headers": HEADER})
        with e.producer(transactional_id="agent") as producer:
            producer.init_transactions(timeout=30)
            producer.begin_transaction()
            producer.send("t", b"aborted", partition=0, headers=[(HEADER, b"a")]).result(30)
            producer.abort_transaction(timeout=30)
        for _ in range(1500):
            pid, epoch = e.init_producer_id()
            spec = RecordSpec(0, None, b"v", ((HEADER, b"a"),))
            batch = native.encode_batch(
                [spec], producer_id=pid, producer_epoch=epoch, base_sequence=0
            )
            e.produce("t", 0, batch)
        partition = e.partition("t", 0)
        assert e.flush(timeout=30)  # the checkpoint, in parts, then uploads
        end = partition.durable_checkpoint_end
        assert end == partition.high_watermark
        # As many producers again, without the header: the next checkpoint
        # holds the producers changed since this one, in parts too.
        for _ in range(1500):
            pid, epoch = e.init_producer_id()
            after = RecordSpec(0, None, b"after")
            batch = native.encode_batch(
                [after], producer_id=pid, producer_epoch=epoch, base_sequence=0
            )
            e.produce("t", 0, batch)
        submit = e.store.submit
        parts: list[int] = []

        def refusing_the_second(stream_id: int, *args: Any) -> Any:
            if stream_id == partition.state_stream_id:
                parts.append(stream_id)
                if len(parts) == 3:  # the one-record try, part 0, then part 1
                    raise NoRoom(stream_id, 0, 0)
            return submit(stream_id, *args)

        monkeypatch.setattr(e.store, "submit", refusing_the_second)
        with pytest.raises(NoRoom):
            partition.checkpoint()
        monkeypatch.setattr(e.store, "submit", submit)
        assert e.store.flush(30)
        state = load_state(store)
        meta = state.streams[partition.state_stream_id]
        assert meta.end_offset - meta.start_offset >= 3  # two parts and one cut short
        txns, described = _last_checkpoint(store, state, partition.state_stream_id, end + 1, None)
        assert described == end
        assert [(a.first_offset, a.last_offset) for a in txns.aborted] == [(0, 1)]
        committed = lookup_uploaded(store, ["t"], HEADER, b"a", read_committed=True)
        assert len(committed) == 1500 and b"aborted" not in {r.value for r in committed}


def test_a_read_committed_lookup_reads_a_run_of_parts_it_passes_over_once(
    tmp_path: Path,
) -> None:
    """A checkpoint in parts newer than the end asked for (it describes
    batches not committed yet) is passed over: its parts are read once, to
    join and date it, not again one by one on the way to the one before."""
    store = CountingStore(tmp_path / "bucket")
    config = _counted_reads(wal_segment_bytes=32 * 1024)
    with Engine.open(tmp_path / "data", store, config=config) as e:
        e.create_topic("t", 1)
        for _ in range(4000):
            pid, epoch = e.init_producer_id()
            batch = native.encode_batch(
                [RecordSpec(0, None, b"v")], producer_id=pid, producer_epoch=epoch, base_sequence=0
            )
            e.produce("t", 0, batch)
        partition = e.partition("t", 0)
        older = partition.checkpoint()
        assert older is not None
        end = older.result(30)
        # As many producers again: the newer checkpoint holds the producers
        # changed since the older one, in parts too.
        for _ in range(4000):
            pid, epoch = e.init_producer_id()
            batch = native.encode_batch(
                [RecordSpec(0, None, b"v")], producer_id=pid, producer_epoch=epoch, base_sequence=0
            )
            e.produce("t", 0, batch)
        newer = partition.checkpoint()
        assert newer is not None and newer.result(30) == end + 4000
        assert e.store.flush(30)
        state = load_state(store)
        meta = state.streams[partition.state_stream_id]
        parts = meta.end_offset - meta.start_offset
        assert parts >= 6  # two runs of three parts or more
        gets = store.gets
        _, described = _last_checkpoint(store, state, partition.state_stream_id, end, None)
        read = store.gets - gets
    assert described == end
    # One read of each part's block or two (a part spans blocks), and the
    # object's index: reading the newer run twice would be a third more.
    assert read <= 2 * parts + 2, (read, parts)
