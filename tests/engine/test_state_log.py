"""The keyed state log: a model check over puts, deletes, compactions and
reopenings, on a real stream store."""

from __future__ import annotations

import errno
import shutil
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine.state_log as state_log_module
from engine.state_log import StateLog
from s3stream import AppendOptions, AppendTooLarge, StoreFailed, StreamStore
from tests.engine.conftest import FAST_STORE

keys = st.one_of(st.integers(0, 20), st.tuples(st.sampled_from(["g", "h"]), st.integers(0, 5)))
int64s = st.integers(-(2**63), 2**63 - 1)
values = st.one_of(
    st.none(),
    int64s,
    st.binary(max_size=8),
    st.lists(int64s, max_size=3),
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.dictionaries(keys, values, max_size=4)),
        st.tuples(st.just("del"), st.lists(keys, max_size=3)),
        st.tuples(st.just("compact"), st.none()),
        st.tuples(st.just("reopen"), st.booleans()),
    ),
    max_size=40,
)


def _plain(value: Any) -> Any:
    """What msgpack gives back: tuples as lists."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


@settings(max_examples=40, deadline=None)
@given(steps)
def test_the_state_read_back_is_the_state_written(program: list[tuple[str, Any]]) -> None:
    root = Path(tempfile.mkdtemp(prefix="tidelog-state-log-"))
    bucket = f"file://{root / 'bucket'}"
    opened: list[StreamStore] = []

    def open_store(directory: str) -> StreamStore:
        opened.append(StreamStore.open(root / directory, bucket, FAST_STORE))
        return opened[-1]

    try:
        store = open_store("node")
        stream_id, log = _new_log(store)
        model: dict[Any, Any] = {}
        for kind, argument in program:
            if kind == "put":
                log.update(puts=argument).result()
                model.update({k: _plain(v) for k, v in argument.items()})
            elif kind == "del":
                log.update(deletes=argument).result()
                for key in argument:
                    model.pop(key, None)
            elif kind == "compact":
                log.compact()
            else:  # reopen, after a clean close or a crash (the WAL holds everything)
                store.close(flush=argument)
                store = open_store("node")
                store.open_stream(stream_id, 0)
                log = StateLog.open(store, stream_id)
            assert dict(log.items()) == model
        store.close(flush=True)
        fresh = open_store("fresh")  # a fresh machine: only the bucket
        fresh.open_stream(stream_id, 0)
        assert dict(StateLog.open(fresh, stream_id).items()) == model
    finally:
        for each in opened:
            each.close(flush=False)
        shutil.rmtree(root, ignore_errors=True)


def _open_store(tmp_path: Path) -> StreamStore:
    return StreamStore.open(tmp_path / "node", f"file://{tmp_path / 'bucket'}", FAST_STORE)


def _new_log(store: StreamStore) -> tuple[int, StateLog]:
    """A state log on a stream of its own: the stream's id and the log."""
    stream_id = store.create_stream()
    store.open_stream(stream_id, 0)
    return stream_id, StateLog.open(store, stream_id)


def test_compaction_trims_what_the_rewrite_repeats(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(state_log_module, "COMPACT_AFTER", 10)
    store = _open_store(tmp_path)
    try:
        stream_id, log = _new_log(store)
        for i in range(200):
            log.put(("offset", i % 3), i).result()
        # Whatever compaction the puts started in the background, compact()
        # returns once its own has rewritten the three keys and trimmed.
        log.compact()
        assert store.end_offset(stream_id) - store.start_offset(stream_id) == 2
        reread = StateLog.open(store, stream_id)
        assert dict(reread.items()) == {("offset", 0): 198, ("offset", 1): 199, ("offset", 2): 197}
    finally:
        store.close()


def test_compact_waits_for_a_compaction_running_in_the_background(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setattr(state_log_module, "COMPACT_AFTER", 10)
    store = _open_store(tmp_path)
    trim = store.trim
    trimming, release = threading.Event(), threading.Event()

    def held_trim(stream_id: int, offset: int) -> None:
        # The first trim, the background compaction's, is held until the
        # test lets it go: a compaction caught half way.
        if not trimming.is_set():
            trimming.set()
            assert release.wait(60)
        trim(stream_id, offset)

    monkeypatch.setattr(store, "trim", held_trim)
    try:
        stream_id, log = _new_log(store)
        i = 0
        while not trimming.is_set():
            assert i < 1000, "no compaction started in the background"
            log.put(("offset", i % 3), i).result()
            i += 1
        assert trimming.wait(60)
        log.put(("offset", 0), "last").result()
        compacted_when_returned: list[int] = []

        def compact() -> None:
            log.compact()
            compacted_when_returned.append(
                store.end_offset(stream_id) - store.start_offset(stream_id)
            )

        caller = threading.Thread(target=compact)
        caller.start()
        caller.join(0.5)  # long enough for a compact() that does not wait to return
        release.set()
        caller.join(60)
        assert not caller.is_alive()
        # Returned only after the background compaction and its own: the
        # stream is its compact record and one put of the three keys.
        assert compacted_when_returned == [2]
        reread = StateLog.open(store, stream_id)
        assert reread.get(("offset", 0)) == "last"
    finally:
        release.set()
        store.close()


def test_a_value_msgpack_refuses_changes_nothing(tmp_path: Path) -> None:
    store = _open_store(tmp_path)
    try:
        stream_id, log = _new_log(store)
        log.put("kept", 1).result()
        with pytest.raises(OverflowError):
            log.update(puts={"kept": 2, "huge": 2**64})
        assert dict(log.items()) == {"kept": 1}
        assert dict(StateLog.open(store, stream_id).items()) == {"kept": 1}
    finally:
        store.close()


def test_a_compaction_splits_what_one_record_cannot_hold(tmp_path: Path, monkeypatch: Any) -> None:
    """Values that each came in a record of their own may together pass
    what one WAL record holds: the compaction's rewrite splits them, the
    store is not failed, and the state reads back."""
    monkeypatch.setattr(state_log_module, "COMPACT_AFTER", 10)
    store = _open_store(tmp_path)
    try:
        stream_id, log = _new_log(store)
        value = b"v" * (store.max_append_bytes // 3)
        for i in range(12):
            log.put(("group", i % 6), value + bytes([i])).result()
        log.compact()
        assert not store.fenced_or_failed()
        # The compact record and the six keys halved until each record fits
        # (three do not, two do): 1 + 2 + 1 + 2.
        assert store.end_offset(stream_id) - store.start_offset(stream_id) == 5
        reread = StateLog.open(store, stream_id)
        assert dict(reread.items()) == {("group", k): value + bytes([k + 6]) for k in range(6)}
    finally:
        store.close()


def test_an_update_a_record_of_which_is_too_large_changes_nothing(tmp_path: Path) -> None:
    """An update's puts and deletes are two records: if the deletes' is
    larger than the store takes, the puts' is not written either, and the
    store serves on."""
    store = _open_store(tmp_path)
    try:
        stream_id, log = _new_log(store)
        log.put("kept", 1).result()
        many = [f"key {i:08d}" for i in range(store.max_append_bytes // 10)]
        with pytest.raises(AppendTooLarge):
            log.update(puts={"kept": 2, "new": 3}, deletes=many)
        assert dict(log.items()) == {"kept": 1}
        log.put("after", 4).result()
        assert not store.fenced_or_failed()
        assert dict(StateLog.open(store, stream_id).items()) == {"kept": 1, "after": 4}
    finally:
        store.close()


def test_a_record_as_large_as_the_store_takes_reads_back_from_the_wal_and_objects(
    tmp_path: Path,
) -> None:
    """The bound a state record is refused by is the one a restart reads
    back by: a record of exactly ``max_append_bytes`` loads again, from the
    WAL and, uploaded, from objects alone; one byte more is refused."""
    bucket = f"file://{tmp_path / 'bucket'}"
    store = StreamStore.open(tmp_path / "node", bucket, FAST_STORE)
    try:
        stream_id, log = _new_log(store)
        framing = len(msgpack.packb(["put", [["k", b""]]], use_bin_type=True))
        # bin 32 takes 3 bytes more than an empty bin 8 for its length
        value = b"v" * (store.max_append_bytes - framing - 3)
        assert len(msgpack.packb(["put", [["k", value]]], use_bin_type=True)) == (
            store.max_append_bytes
        )
        with pytest.raises(AppendTooLarge):
            log.put("k", value + b"!")
        log.put("k", value).result()
    finally:
        store.close(flush=False)
    for data_dir, epoch in (("node", 1), ("fresh", 2)):
        store = StreamStore.open(tmp_path / data_dir, bucket, FAST_STORE)
        try:
            store.open_stream(stream_id, epoch)
            assert dict(StateLog.open(store, stream_id).items()) == {"k": value}
        finally:
            store.close()  # uploads: the fresh directory reads objects alone


class HeldStream:
    """A stream whose appends are accepted, refused (raised at once) or held
    until ``settle`` makes them durable or failed, in any order; ``durable``
    is what a restart reads back."""

    max_append_bytes = 1 << 20

    def __init__(self) -> None:
        self.refuse = False
        self.records: list[tuple[bytes, Future[int]]] = []
        self.outcome: dict[int, bool] = {}

    def next_offset(self, stream_id: int) -> int:
        return len(self.records)

    def submit(
        self, stream_id: int, base: int, last: int, payload: bytes, options: AppendOptions
    ) -> Future[int]:
        if self.refuse:
            raise StoreFailed(OSError(errno.EIO, "refused"))
        future: Future[int] = Future()
        self.records.append((payload, future))
        return future

    def settle(self, index: int, durable: bool) -> None:
        _, future = self.records[index]
        if future.done():
            return
        self.outcome[index] = durable
        if durable:
            future.set_result(index)
        else:
            future.set_exception(StoreFailed(OSError(errno.EIO, "lost")))

    def durable(self) -> dict[Any, Any]:
        state: dict[Any, Any] = {}
        for index, (payload, _) in enumerate(self.records):
            if not self.outcome.get(index, False):
                continue
            kind, items = msgpack.unpackb(payload, raw=False, strict_map_key=False)
            for item in items:
                if kind == "put":
                    state[_hashable(item[0])] = item[1]
                else:
                    state.pop(_hashable(item), None)
        return state


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


held_steps = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.dictionaries(keys, st.integers(0, 9), min_size=1, max_size=3)),
        st.tuples(st.just("del"), st.lists(keys, min_size=1, max_size=2)),
        st.tuples(st.just("refused"), st.dictionaries(keys, st.integers(0, 9), min_size=1)),
        st.tuples(st.just("settle"), st.tuples(st.integers(0, 30), st.booleans())),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(held_steps, st.randoms(use_true_random=False))
def test_a_failed_record_is_undone_whatever_the_order_writes_end_in(
    program: list[tuple[str, Any]], rng: Any
) -> None:
    """Records accepted and then failed, refused at once, or made durable,
    in any order: once every write has ended, the state is the durable
    records' in log order, what a restart reads back; a refused one never
    changed it."""
    stream = HeldStream()
    log = StateLog(stream, 0)  # type: ignore[arg-type]
    for kind, arg in program:
        if kind == "settle":
            index, durable = arg
            if index < len(stream.records):
                stream.settle(index, durable)
        elif kind == "refused":
            stream.refuse = True
            before = log.items()
            with pytest.raises(StoreFailed):
                log.update(puts=arg)
            stream.refuse = False
            assert log.items() == before
        elif kind == "put":
            log.update(puts=arg)
        else:
            log.update(deletes=arg)
    left = list(range(len(stream.records)))
    rng.shuffle(left)
    for index in left:
        stream.settle(index, rng.random() < 0.6)
    assert dict(log.items()) == stream.durable()
