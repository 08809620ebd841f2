"""A Fetch's look at a partition (fetch._look: its leader and watermarks)
stands for the rest of the partition's read. Another thread may change the
partition between the look and the read (an append, a transaction's end,
DeleteRecords, the topic deleted and created again); the answer must still
be one Kafka could give: no records past the high watermark it carries,
read_committed records below its last stable offset, an aborted
transaction's records only with its entry, OffsetOutOfRange below the log
start, never a deleted topic's records."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import engine
import native
from engine.protocol.kafka_code import KafkaCode
from engine.server.handlers import fetch
from tests.server.fetching import (
    TIMEOUT,
    answer,
    engine_with_records,
    entries_by_partition,
    fetch_request,
)


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[engine.Engine]:
    with engine_with_records(tmp_path / "data", 1, {0: 3}) as served:
        yield served


def _answer(
    served: engine.Engine,
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[[], object],
    offset: int,
    isolation_level: int,
) -> Any:
    """The one partition's entry of a Fetch at ``offset``, with ``change``
    made right after the handler's look at the partition."""
    look = fetch._look

    def looked_then_changed(*args: Any) -> Any:
        found = look(*args)
        assert found is not None  # the look's path is the one raced
        change()
        return found

    run_looks = fetch._run_looks

    def run_looked_then_changed(*args: Any) -> Any:  # a sessionless Fetch's looks
        found = run_looks(*args)
        assert any(look is not None for look in found[0])
        change()
        return found

    monkeypatch.setattr(fetch, "_look", looked_then_changed)
    monkeypatch.setattr(fetch, "_run_looks", run_looked_then_changed)
    request = fetch_request(12, [("t", [(0, offset)])], isolation_level=isolation_level)
    (entry,) = entries_by_partition(answer(served, request)).values()
    return entry


def _batches(entry: Any) -> list[native.BatchHeader]:
    return native.scan_batches(entry.records or b"")


def _assert_kafka_could_answer(entry: Any, committed: bool) -> None:
    batches = _batches(entry)
    ends = [b.base_offset + b.last_offset_delta + 1 for b in batches]
    assert entry.last_stable_offset <= entry.high_watermark
    assert all(end <= entry.high_watermark for end in ends)
    if committed:
        assert all(end <= entry.last_stable_offset for end in ends)
        aborted = {(a.producer_id, a.first_offset) for a in entry.aborted_transactions or ()}
        for batch in batches:
            if batch.is_transactional and not batch.is_control:
                assert any(
                    pid == batch.producer_id and first <= batch.base_offset
                    for pid, first in aborted
                ) or _committed(entry, batch), f"an aborted batch at {batch.base_offset} sent bare"


def _committed(entry: Any, batch: native.BatchHeader) -> bool:
    """Whether the transaction of ``batch`` ended with a commit marker sent
    in the same answer (a control batch of the same producer after it)."""
    for later in _batches(entry):
        if (
            later.is_control
            and later.producer_id == batch.producer_id
            and later.base_offset > batch.base_offset
        ):
            control = native.decode_records(entry.records[later.position :][: later.size])
            return bool(control) and control[0].key is not None and control[0].key[3] == 1
    return False


def test_an_append_after_the_look(opened: engine.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    producer = opened.producer()

    def append() -> None:
        producer.send("t", b"late", partition=0).result(TIMEOUT)

    try:
        for isolation_level in (0, 1):
            entry = _answer(opened, monkeypatch, append, 1, isolation_level)
            assert entry.error_code == KafkaCode.NONE
            assert _batches(entry)[0].base_offset == 1
            _assert_kafka_could_answer(entry, isolation_level == 1)
    finally:
        producer.close()


@pytest.mark.parametrize("commit", [False, True], ids=["abort", "commit"])
def test_a_transaction_ended_after_the_look(
    opened: engine.Engine, monkeypatch: pytest.MonkeyPatch, commit: bool
) -> None:
    transactional = opened.producer(transactional_id="racing")
    try:
        transactional.init_transactions()
        transactional.begin_transaction()
        transactional.send("t", b"in doubt", partition=0)
        transactional.flush(TIMEOUT)
        leader = opened.partition("t", 0)
        (producer,) = [p for p in leader.describe_producers() if p.current_txn_start_offset >= 0]

        def end() -> None:
            marker = leader.write_marker(
                producer.producer_id, producer.producer_epoch, producer.coordinator_epoch, commit
            )
            marker.result(TIMEOUT)

        entry = _answer(opened, monkeypatch, end, 0, 1)
        assert entry.error_code == KafkaCode.NONE
        _assert_kafka_could_answer(entry, committed=True)
    finally:
        transactional.close()


def test_records_deleted_after_the_look(
    opened: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = _answer(opened, monkeypatch, lambda: opened.delete_records("t", 0, 2), 0, 0)
    assert entry.error_code == KafkaCode.OFFSET_OUT_OF_RANGE
    assert not _batches(entry)


def test_the_topic_deleted_and_created_again_after_the_look(
    opened: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def recreate() -> None:
        opened.delete_topic("t")
        opened.create_topic("t", 1)

    entry = _answer(opened, monkeypatch, recreate, 0, 0)
    assert not _batches(entry), "the deleted topic's records were sent"
