"""A Fetch of data that only object storage holds (a catching-up consumer,
past the log cache) asks each question of the read once on its way down:
whether the topic is masked, whether an earlier fetch's read of the same
data can be shared, whether the log cache answers; then it awaits the
object read. The answer is the same as a read of the partition's own."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.engine import READ_COMMITTED, READ_UNCOMMITTED
from engine.server import shared_reads
from engine.server.handlers import fetch
from s3stream import StreamStoreConfig
from s3stream.fetcher import Fetcher
from tests.server.fetching import (
    answer,
    before_the_object_read,
    entries_by_partition,
    fetch_request,
    send_records,
    transactions_aborted_and_open,
)
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire

PARTITIONS = 3
RECORDS = 4

COLD = StreamStoreConfig(
    upload_interval_s=3600,
    compaction_interval_s=3600,
    log_cache_bytes=0,  # once uploaded, a read needs an object
    remote_fetch_max_wait_ms=60_000,  # a loaded machine's slow read is still answered
)


@pytest.fixture
def uploaded(tmp_path: Path) -> Iterator[engine.Engine]:
    config = engine.EngineConfig(store=COLD)
    with engine.open(tmp_path / "data", config=config) as opened:
        opened.create_topic("t", PARTITIONS)
        send_records(opened, "t", dict.fromkeys(range(PARTITIONS), RECORDS))
        assert opened.store.flush(30)
        yield opened


def _counted(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[Any]:
    """The calls of ``owner.name`` from now on, each by its first argument
    (after ``self``, for a class's method)."""
    calls: list[Any] = []
    called = getattr(owner, name)

    def counted(*args: Any) -> Any:
        calls.append(args[1] if isinstance(owner, type) else args[0])
        return called(*args)

    monkeypatch.setattr(owner, name, counted)
    return calls


@pytest.mark.parametrize("version", [4, 11, 12, 13, 17])
def test_a_cold_read_asks_each_question_once(
    uploaded: engine.Engine, monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    topic = "t" if version < 13 else uuid.UUID(bytes=uploaded.topic_id("t"))
    own = [b"".join(uploaded.fetch("t", p, 2).records) for p in range(PARTITIONS)]
    hot = _counted(monkeypatch, Fetcher, "_hot")
    cold = _counted(monkeypatch, Fetcher, "fetch_cold")
    shared = _counted(monkeypatch, shared_reads.SharedReads, "get")
    masking = _counted(monkeypatch, fetch, "masking_for")
    # A partition a Fetch, so that each is its topic's run and none is
    # shared with a read before it.
    for partition in range(PARTITIONS):
        alone = fetch_request(version, [(topic, [(partition, 2)])])
        (entry,) = entries_by_partition(answer(uploaded, alone)).values()
        assert (entry.error_code, entry.high_watermark) == (0, RECORDS)
        assert entry.records == own[partition]
    streams = [uploaded.partition("t", p).stream_id for p in range(PARTITIONS)]
    assert hot == streams  # the log cache asked once a read: it has none of them
    assert cold == streams  # then the object read, awaited
    assert len(shared) == PARTITIONS
    assert len(masking) == PARTITIONS


@pytest.fixture
def settled(tmp_path: Path) -> Iterator[engine.Engine]:
    """Partitions in every state a cold read meets, all uploaded: records,
    a log start moved past some, an aborted transaction, an open one (its
    last stable offset below its high watermark)."""
    with engine.open(tmp_path / "data", config=engine.EngineConfig(store=COLD)) as opened:
        opened.create_topic("t", 4)
        send_records(opened, "t", dict.fromkeys(range(4), RECORDS))
        opened.delete_records("t", 1, 2)
        with transactions_aborted_and_open(opened, "t", aborted_partition=2, open_partition=3):
            send_records(opened, "t", {3: 1})  # past the open transaction's first batch
            assert opened.store.flush(30)
            yield opened


def _own_read(opened: engine.Engine, partition: int, offset: int, committed: bool) -> Any:
    """What the engine's own read answers (Engine.fetch, the blocking
    path): the entry's fields a Fetch must answer alike."""
    isolation = READ_COMMITTED if committed else READ_UNCOMMITTED
    try:
        own = opened.fetch("t", partition, offset, 1 << 20, isolation)
    except engine.OffsetOutOfRange:
        return 1
    aborted = None
    if committed:
        aborted = sorted((a.producer_id, a.first_offset) for a in own.aborted_transactions or ())
    return (
        own.high_watermark,
        own.last_stable_offset,
        own.log_start_offset,
        aborted,
        b"".join(own.records),
    )


@pytest.mark.parametrize("committed", [False, True])
def test_a_cold_read_answers_what_the_engines_own_read_answers(
    settled: engine.Engine, monkeypatch: pytest.MonkeyPatch, committed: bool
) -> None:
    """Read committed (the last stable offset, the aborted transactions),
    below the log start, inside the records: a cold read's answer is the
    engine's own read's."""
    cold = _counted(monkeypatch, Fetcher, "fetch_cold")
    seen: list[Any] = []
    for partition in range(4):
        for offset in (0, 1, 3):
            request = fetch_request(
                12, [("t", [(partition, offset)])], isolation_level=int(committed)
            )
            (entry,) = entries_by_partition(answer(settled, request)).values()
            expected = _own_read(settled, partition, offset, committed)
            if expected == 1:
                assert entry.error_code == 1  # OFFSET_OUT_OF_RANGE
                continue
            aborted = None
            if committed:
                aborted = sorted(
                    (a.producer_id, a.first_offset) for a in entry.aborted_transactions
                )
            found = (
                entry.high_watermark,
                entry.last_stable_offset,
                entry.log_start_offset,
                aborted,
                entry.records or b"",
            )
            assert (entry.error_code, found) == (0, expected), (partition, offset)
            seen.append(found)
    assert cold  # the reads were cold ones
    assert any(stable < high for high, stable, *_ in seen)  # the open transaction's
    assert not committed or any(aborted for *_, aborted, _ in seen)


def test_a_log_start_moved_past_a_cold_read_before_its_object_read_is_out_of_range(
    uploaded: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    before_the_object_read(monkeypatch, lambda: uploaded.delete_records("t", 0, 3))
    request = fetch_request(12, [("t", [(0, 1)])])
    (entry,) = entries_by_partition(answer(uploaded, request)).values()
    assert (entry.error_code, entry.log_start_offset, entry.high_watermark) == (1, 3, RECORDS)
    assert not entry.records


@pytest.mark.parametrize("isolation_level", [0, 1])
def test_data_uploaded_between_the_look_and_the_read_is_read_from_its_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolation_level: int
) -> None:
    """In the log cache at the look, in an object only when read: the
    log cache's answer is None, and the object read answers it."""
    config = engine.EngineConfig(store=COLD)
    with engine.open(tmp_path / "data", config=config) as opened:
        opened.create_topic("t", 1)
        send_records(opened, "t", {0: RECORDS})
        own = b"".join(opened.fetch("t", 0, 1).records)
        run_looks = fetch._run_looks

        def looked_then_uploaded(*args: Any) -> Any:
            found = run_looks(*args)
            assert opened.store.flush(30)
            return found

        monkeypatch.setattr(fetch, "_run_looks", looked_then_uploaded)
        cold = _counted(monkeypatch, Fetcher, "fetch_cold")
        request = fetch_request(12, [("t", [(0, 1)])], isolation_level=isolation_level)
        (entry,) = entries_by_partition(answer(opened, request)).values()
    assert (entry.error_code, entry.high_watermark, entry.records) == (0, RECORDS, own)
    assert cold  # read from its object


def test_a_cold_read_over_what_the_answer_has_left_sends_only_its_offsets(
    uploaded: engine.Engine,
) -> None:
    """KIP-74 on object reads: the first partition sends its first batch
    whatever the answer's max_bytes; a later one whose first batch is over
    what is left sends none, only its offsets."""
    request = fetch_request(12, [("t", [(0, 0), (1, 0)])])
    request = dataclasses.replace(request, max_bytes=1)
    entries = entries_by_partition(answer(uploaded, request))
    first = b"".join(uploaded.fetch("t", 0, 0, 1).records)
    assert (entries[0].error_code, entries[0].records) == (0, first)
    assert (entries[1].error_code, entries[1].high_watermark) == (0, RECORDS)
    assert not entries[1].records


def test_a_cold_read_is_shared_with_the_next_fetch_of_the_same_data(
    uploaded: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The object read is kept for later fetches of the same data (fan-out),
    under the key and marks of its look: a second consumer's Fetch of it
    is answered without another read, with the same records."""
    cold = _counted(monkeypatch, Fetcher, "fetch_cold")
    request = fetch_request(12, [("t", [(0, 1)])])
    server = InProcessServer(uploaded)
    try:
        with Wire(server.bootstrap) as first, Wire(server.bootstrap) as second:
            (read,) = entries_by_partition(first.request(request)).values()
            (shared,) = entries_by_partition(second.request(request)).values()
        hits = server.server.state.shared_reads.hits
    finally:
        server.stop()
    assert read.records and (shared.error_code, shared.records) == (0, read.records)
    assert len(cold) == 1  # the second was answered by the first's read
    assert hits == 1
