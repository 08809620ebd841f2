"""A Fetch of a partition at its high watermark, as a caught-up consumer
sends for most of its partitions: answered from the partition's offsets,
without a read of the stream store, with the watermarks a read would give."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

import engine
from tests.server.fetching import engine_with_records, entries_by_partition, fetch_request
from tests.server.in_process import InProcessServer
from tests.server.store_reads import count_store_reads
from tests.server.wire import Wire

RECORDS = 5


@dataclasses.dataclass
class Served:
    engine: engine.Engine
    bootstrap: str
    store_reads: list[int]


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    with engine_with_records(tmp_path / "data", 2, {0: RECORDS}) as opened:
        opened.delete_records("t", 0, 2)
        reads = count_store_reads(monkeypatch, opened.store)
        server = InProcessServer(opened)
        try:
            yield Served(opened, server.bootstrap, reads)
        finally:
            server.stop()


def _fetch(offsets: dict[int, int], isolation_level: int = 0) -> Any:
    return fetch_request(11, [("t", offsets.items())], isolation_level=isolation_level)


@pytest.mark.parametrize("isolation_level", [0, 1])
def test_a_fetch_at_the_end_reads_nothing_and_answers_the_watermarks(
    served: Served, isolation_level: int
) -> None:
    with Wire(served.bootstrap) as wire:
        answers = entries_by_partition(wire.request(_fetch({0: RECORDS, 1: 0}, isolation_level)))
    assert served.store_reads == []  # neither partition was read from the store
    at_end, empty = answers[0], answers[1]
    assert at_end.error_code == 0 and not at_end.records
    assert (at_end.high_watermark, at_end.log_start_offset) == (RECORDS, 2)
    assert at_end.last_stable_offset == RECORDS
    assert (empty.high_watermark, empty.log_start_offset, empty.last_stable_offset) == (0, 0, 0)
    if isolation_level == 1:
        assert at_end.aborted_transactions == ()


def test_a_fetch_below_the_end_or_past_it_takes_the_read_path(served: Served) -> None:
    with Wire(served.bootstrap) as wire:
        below = entries_by_partition(wire.request(_fetch({0: 3})))[0]
        past = entries_by_partition(wire.request(_fetch({0: RECORDS + 1})))[0]
        before_start = entries_by_partition(wire.request(_fetch({0: 1})))[0]
    assert served.store_reads == [3, RECORDS + 1, 1]  # each read, as before
    assert below.error_code == 0 and below.records
    assert past.error_code == 1  # OFFSET_OUT_OF_RANGE, as a read finds
    assert before_start.error_code == 1
    assert (past.high_watermark, past.log_start_offset) == (RECORDS, 2)


@pytest.mark.parametrize("isolation_level", [0, 1])
def test_a_tail_read_is_made_at_once_not_awaited(
    served: Served, monkeypatch: pytest.MonkeyPatch, isolation_level: int
) -> None:
    """A partition whose data is in the log cache (a tailing consumer's)
    is read without a coroutine chain: neither the partition's nor the
    store's fetch_async is called, and the answer is the read's."""
    awaited: list[int] = []
    partition = served.engine.partition("t", 0)
    partition_fetch = partition.fetch_async

    async def counted(offset: int, *args: Any) -> Any:
        awaited.append(offset)
        return await partition_fetch(offset, *args)

    monkeypatch.setattr(partition, "fetch_async", counted)
    with Wire(served.bootstrap) as wire:
        answer = entries_by_partition(wire.request(_fetch({0: 3}, isolation_level)))[0]
    assert awaited == []
    assert served.store_reads == [3]  # read once, at once
    assert answer.error_code == 0 and answer.records
    assert (answer.high_watermark, answer.log_start_offset) == (RECORDS, 2)
    if isolation_level == 1:
        assert answer.aborted_transactions == ()


def test_a_fetch_at_the_end_looks_at_each_partitions_offsets_once(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full fetch names every partition of a consumer (librdkafka's every
    fetch): a caught-up one costs one look at its stream, for its log start,
    high watermark and last stable offset together."""
    store = served.engine.store
    look = store._stream
    looks: list[int] = []

    def counted(stream_id: int) -> Any:
        if threading.current_thread().name == "wire-server":  # not the uploader's
            looks.append(stream_id)
        return look(stream_id)

    looked_together = store.offsets_many

    def counted_together(stream_ids: Iterable[int]) -> Any:  # a topic's, in one pass
        named = list(stream_ids)
        if threading.current_thread().name == "wire-server":
            looks.extend(named)
        return looked_together(named)

    monkeypatch.setattr(store, "_stream", counted)
    monkeypatch.setattr(store, "offsets_many", counted_together)
    with Wire(served.bootstrap) as wire:
        answers = entries_by_partition(wire.request(_fetch({0: RECORDS, 1: 0})))
    streams = [served.engine.partition("t", p).stream_id for p in (0, 1)]
    assert sorted(looks) == sorted(streams)
    assert (answers[0].high_watermark, answers[0].log_start_offset) == (RECORDS, 2)
    assert answers[0].last_stable_offset == RECORDS
    assert (answers[1].high_watermark, answers[1].last_stable_offset) == (0, 0)


UNKNOWN_SERVER_ERROR = -1


@pytest.mark.parametrize("isolation_level", [2, -1])
def test_an_unknown_isolation_level_is_refused_and_the_connection_kept(
    served: Served, isolation_level: int
) -> None:
    """Kafka's IsolationLevel.forId throws and KafkaApis answers
    FetchRequest.getErrorResponse: UNKNOWN_SERVER_ERROR at the top and,
    before v13, in each partition named; nothing is read."""
    with Wire(served.bootstrap) as wire:
        refused = wire.request(_fetch({0: 2, 1: 0}, isolation_level))
        kept = entries_by_partition(wire.request(_fetch({0: 2})))
    assert refused.error_code == UNKNOWN_SERVER_ERROR
    assert {p: a.error_code for p, a in entries_by_partition(refused).items()} == {
        0: UNKNOWN_SERVER_ERROR,
        1: UNKNOWN_SERVER_ERROR,
    }
    assert all(not a.records for a in entries_by_partition(refused).values())
    assert kept[0].error_code == 0
    assert kept[0].high_watermark == RECORDS
