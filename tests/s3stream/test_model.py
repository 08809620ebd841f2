"""A stateful property: random appends, trims, uploads, compactions, stream
deletions, range replacements (a log cleaner dropping batches) and restarts
across many streams, checked against a model that is just a dict of lists.
Every stream's content must be exactly what was appended and not trimmed
or replaced away, whether it is read from the log cache, from objects, or
after a restart with or without the WAL."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from s3stream import StoredBatch, StreamStore, StreamStoreConfig
from s3stream.store import MemoryStore
from tests.ram_dir import memory_root

CONFIG = StreamStoreConfig(
    upload_interval_s=3600,
    compaction_interval_s=3600,
    block_bytes=256,
    stream_object_bytes=2048,
    small_object_bytes=4096,
    garbage_grace_s=0,
    wal_segment_bytes=16 * 1024,
    log_cache_bytes=1024,  # tiny: most reads go to objects
)
# After a "restart as an old node", every stream-set object counts as old
# enough to split and small stream objects merge (up to 8 KiB).
SPLITTING = dataclasses.replace(CONFIG, force_split_after_s=0, stream_object_max_bytes=8192)


class StreamStoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # In memory: its restarts are closes in this process, which the page
        # cache survives as a tmpfs does (tests/ram_dir.py).
        self.root = Path(tempfile.mkdtemp(prefix="tidelog-model-", dir=memory_root()))
        self.bucket = MemoryStore()
        self.generation = 0
        self.config = CONFIG
        self.store = self._open()
        self.model: dict[int, list[tuple[int, int, bytes]]] = {}
        self.starts: dict[int, int] = {}
        self.ends: dict[int, int] = {}

    def _open(self, fresh_dir: bool = False) -> StreamStore:
        if fresh_dir:
            self.generation += 1
        return StreamStore.open(self.root / f"node-{self.generation}", self.bucket, self.config)

    def _reopen(self, fresh_dir: bool = False) -> StreamStore:
        store = self._open(fresh_dir)
        # An open seals what it replayed from the WAL and the uploader commits
        # it on its own thread: waiting for that here makes the committed
        # ranges, which bound replace's draws, follow from the rules run so
        # far alone (else a run and its replay draw differently:
        # FlakyStrategyDefinition on a loaded machine). Nothing else is
        # uploaded by it, so a replace still runs beside appends that are
        # only in the log cache and the WAL.
        assert store.flush(timeout=30)
        for stream in self.model:  # appends need the stream open in this process
            store.open_stream(stream, 1)
        return store

    @initialize()
    def first_streams(self) -> None:
        for _ in range(2):
            self.create()

    def teardown(self) -> None:
        self.store.close(flush=False)
        shutil.rmtree(self.root, ignore_errors=True)

    # -- rules ----------------------------------------------------------------

    @rule()
    def create(self) -> None:
        stream = self.store.create_stream()
        self.store.open_stream(stream, 1)
        self.model[stream] = []
        self.starts[stream] = 0
        self.ends[stream] = 0

    @precondition(lambda self: self.model)
    @rule(data=st.data(), count=st.integers(1, 5), size=st.integers(0, 300))
    def append(self, data: st.DataObject, count: int, size: int) -> None:
        stream = data.draw(st.sampled_from(sorted(self.model)))
        base = self.store.next_offset(stream)
        body = bytes([base % 256, count]) * (size // 2)
        assert self.store.append(stream, base, base + count - 1, body) == base + count
        self.model[stream].append((base, base + count, body))
        self.ends[stream] = base + count

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def trim(self, data: st.DataObject) -> None:
        stream = data.draw(st.sampled_from(sorted(self.model)))
        end = self.store.end_offset(stream)
        start = data.draw(st.integers(self.starts[stream], end))
        self.store.trim(stream, start)
        self.starts[stream] = start

    @precondition(lambda self: len(self.model) > 1)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        stream = data.draw(st.sampled_from(sorted(self.model)))
        self.store.delete_stream(stream)
        del self.model[stream], self.starts[stream], self.ends[stream]

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def replace(self, data: st.DataObject) -> None:
        """Rewrites one to three adjacent uploaded ranges of a stream, keeping
        some of their batches (new bytes, same offsets) and dropping the rest."""
        stream = data.draw(st.sampled_from(sorted(self.model)))
        start_offset = self.store.start_offset(stream)
        ranges = [r for r in self.store.committed_ranges(stream) if r[0] >= start_offset]
        if not ranges:
            return
        first = data.draw(st.integers(0, len(ranges) - 1))
        last = data.draw(st.integers(first, min(len(ranges) - 1, first + 2)))
        start, end = ranges[first][0], ranges[last][1]
        inside = [b for b in self.model[stream] if start <= b[0] < end]
        if not inside:
            return  # everything in it was removed by an earlier replace
        keep = data.draw(st.lists(st.booleans(), min_size=len(inside), max_size=len(inside)))
        kept = [(b[0], b[1], b"r" + b[2]) for b, k in zip(inside, keep, strict=True) if k]
        kept = kept or [(b[0], b[1], b"r" + b[2]) for b in inside[-1:]]
        self.store.replace_range(stream, start, end, [StoredBatch(*b) for b in kept])
        outside = [b for b in self.model[stream] if not start <= b[0] < end]
        self.model[stream] = sorted(outside + kept)

    @rule()
    def upload(self) -> None:
        assert self.store.flush(timeout=30)

    @rule()
    def compact(self) -> None:
        self.store.flush(timeout=30)
        self.store.compact()

    @rule(flush=st.booleans())
    def restart(self, flush: bool) -> None:
        """Close (uploading or not) and reopen on the same WAL."""
        self.store.close(flush=flush)
        self.store = self._reopen()

    @rule(splitting=st.booleans())
    def restart_aged(self, splitting: bool) -> None:
        """Reopen with compaction that splits every stream-set object and
        merges stream objects (``splitting``), or back to the defaults."""
        self.store.close(flush=True)
        self.config = SPLITTING if splitting else CONFIG
        self.store = self._reopen()

    @rule()
    def new_machine(self) -> None:
        """Upload everything, then reopen with an empty data directory."""
        self.store.close(flush=True)
        self.store = self._reopen(fresh_dir=True)

    # -- the property -----------------------------------------------------------

    @invariant()
    def every_stream_reads_back_its_model(self) -> None:
        assert self.store.streams() == sorted(self.model)
        for stream, batches in self.model.items():
            start = self.starts[stream]
            assert self.store.start_offset(stream) >= start
            start = self.store.start_offset(stream)  # retention may only move it forward
            want = [b for b in batches if b[1] > start]
            got = []
            offset = start
            while offset < self.store.end_offset(stream):
                result = self.store.fetch(stream, offset, 700)
                got += [(b.base_offset, b.end_offset, bytes(b.payload)) for b in result.batches]
                assert result.next_offset > offset  # gaps are stepped over, never stuck in
                offset = result.next_offset
            assert got == want
            assert self.store.end_offset(stream) == max(self.ends[stream], self.starts[stream])


StreamStoreMachine.TestCase.settings = settings(
    max_examples=settings().max_examples // 5 or 1,
    stateful_step_count=25,
    deadline=None,
)
test_stream_store_matches_model = StreamStoreMachine.TestCase


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_a_replace_runs_beside_appends_not_yet_uploaded(data: st.DataObject) -> None:
    """replace draws among the committed ranges without uploading first: a
    later append stays only in the log cache and the WAL, and the stream
    reads back its model across the replace and a restart that replays it."""
    machine = StreamStoreMachine()
    try:
        machine.first_streams()
        for stream in sorted(machine.model):
            machine.store.append(stream, 0, 1, b"uploaded")
            machine.model[stream].append((0, 2, b"uploaded"))
            machine.ends[stream] = 2
        machine.upload()
        for stream in sorted(machine.model):
            machine.store.append(stream, 2, 2, b"in the log cache")
            machine.model[stream].append((2, 3, b"in the log cache"))
            machine.ends[stream] = 3
        machine.replace(data)
        for stream in machine.model:
            assert machine.store.committed_ranges(stream) == [(0, 2)]
        machine.every_stream_reads_back_its_model()
        machine.restart(flush=False)
        machine.every_stream_reads_back_its_model()
    finally:
        machine.teardown()
