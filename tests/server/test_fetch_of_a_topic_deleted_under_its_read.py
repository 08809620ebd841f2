"""A topic deleted between a read's look at its partition (the Fetch
handler's look, the embedded API's lookup) and the object read that
follows: the read of the deleted stream fails, and the answer is the one
for a partition that no longer exists, UNKNOWN_TOPIC_OR_PARTITION (Kafka's
ReplicaManager.getPartitionOrException, by name or by topic id alike, as
the look answers a topic deleted before it: docs/design/0090), not
KAFKA_STORAGE_ERROR, on which a client retries the same log instead of
refreshing its metadata. The embedded API raises UnknownTopic. A live
topic's refused object read still answers KAFKA_STORAGE_ERROR."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from kio.static.primitive import i32

import engine
from engine.engine import READ_COMMITTED, READ_UNCOMMITTED
from engine.offset_lookup import MAX_TIMESTAMP
from engine.partition import Partition
from engine.protocol.kafka_code import KafkaCode
from engine.server.handlers import fetch
from s3stream import ObjectStoreError
from s3stream.fetcher import Fetcher
from tests.server.fetching import (
    TIMEOUT,
    answer,
    before_the_object_read,
    changed_after,
    entries_by_partition,
    fetch_request,
    send_records,
)
from tests.server.in_process import InProcessServer
from tests.server.long_polls import HOUR_MS, registered, until
from tests.server.test_fetch_cold_read import COLD
from tests.server.test_long_poll_gone_partitions import rereads_held
from tests.server.wire import Wire, response_schema_for

RECORDS = 4
MASKED = json.dumps([{"path": "/name", "action": "hash"}])
"""Masking rules: with no authorizer every Fetch of the topic reads it masked."""


@pytest.fixture
def uploaded(tmp_path: Path) -> Iterator[engine.Engine]:
    """A topic whose records only object storage holds: a read of them is
    an object read."""
    with engine.open(tmp_path / "data", config=engine.EngineConfig(store=COLD)) as opened:
        opened.create_topic("t", 1)
        send_records(opened, "t", {0: RECORDS})
        assert opened.store.flush(30)
        yield opened


def _deleted_under_the_read(opened: engine.Engine, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    return before_the_object_read(monkeypatch, lambda: opened.delete_topic("t"))


@pytest.mark.parametrize("isolation_level", [0, 1], ids=["read_uncommitted", "read_committed"])
@pytest.mark.parametrize("version", [12, 13, 17])
def test_a_fetch_of_a_topic_deleted_under_its_object_read_answers_unknown_topic(
    uploaded: engine.Engine, monkeypatch: pytest.MonkeyPatch, version: int, isolation_level: int
) -> None:
    """By name (v12) and by topic id (v13+): the id was known when the
    request was read, the partition is gone when it is read."""
    topic: str | uuid.UUID = "t" if version < 13 else uuid.UUID(bytes=uploaded.topic_id("t"))
    deleted = _deleted_under_the_read(uploaded, monkeypatch)
    request = fetch_request(version, [(topic, [(0, 1)])], isolation_level=isolation_level)
    (entry,) = entries_by_partition(answer(uploaded, request)).values()
    assert deleted, "the read never reached the object store"
    assert entry.error_code == KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
    assert not entry.records
    assert (entry.high_watermark, entry.log_start_offset) == (-1, -1)


def test_a_masked_fetch_of_a_topic_deleted_under_its_read_answers_unknown_topic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The masked read (the handler's _fetch) reads through the same path."""
    with engine.open(tmp_path / "data", config=engine.EngineConfig(store=COLD)) as opened:
        opened.create_topic("t", 1, {"tidelog.masking.rules": MASKED})
        send_records(opened, "t", {0: RECORDS})
        assert opened.store.flush(30)
        deleted = _deleted_under_the_read(opened, monkeypatch)
        (entry,) = entries_by_partition(
            answer(opened, fetch_request(12, [("t", [(0, 1)])]))
        ).values()
    assert deleted, "the read never reached the object store"
    assert entry.error_code == KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
    assert not entry.records


def _fetch_async(opened: engine.Engine, *args: Any) -> Any:
    return asyncio.run(opened.fetch_async(*args))


@pytest.mark.parametrize("isolation", [READ_UNCOMMITTED, READ_COMMITTED])
@pytest.mark.parametrize("read", [engine.Engine.fetch, _fetch_async], ids=["fetch", "fetch_async"])
def test_the_embedded_fetch_of_a_topic_deleted_under_its_read_raises_unknown_topic(
    uploaded: engine.Engine,
    monkeypatch: pytest.MonkeyPatch,
    read: Callable[..., Any],
    isolation: str,
) -> None:
    deleted = _deleted_under_the_read(uploaded, monkeypatch)
    with pytest.raises(engine.UnknownTopic):
        read(uploaded, "t", 0, 1, 1 << 20, isolation)
    assert deleted


def test_a_list_offsets_of_a_topic_deleted_under_its_read_raises_unknown_topic(
    uploaded: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ListOffsets by the largest timestamp reads the records holding it."""
    deleted = before_the_object_read(
        monkeypatch, lambda: uploaded.delete_topic("t"), "_read_objects"
    )
    with pytest.raises(engine.UnknownTopic):
        uploaded.list_offset("t", 0, MAX_TIMESTAMP)
    assert deleted


def _refused() -> None:
    raise ObjectStoreError("get", "an object", "connection reset")


def test_a_live_topics_refused_object_read_still_answers_storage_error(
    uploaded: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = before_the_object_read(monkeypatch, _refused)
    (entry,) = entries_by_partition(answer(uploaded, fetch_request(12, [("t", [(0, 1)])]))).values()
    assert refused
    assert entry.error_code == KafkaCode.KAFKA_STORAGE_ERROR
    monkeypatch.undo()
    with pytest.raises(engine.StoreUnavailable):
        before_the_object_read(monkeypatch, _refused)
        uploaded.fetch("t", 0, 1)


def test_a_tail_read_of_a_topic_deleted_after_the_look_answers_unknown_topic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log cache's read (no object read) of a partition deleted between
    the handler's look and the read."""
    with engine.open(tmp_path / "data", config=engine.EngineConfig.small()) as opened:
        opened.create_topic("t", 1)
        send_records(opened, "t", {0: RECORDS})
        changed_after(monkeypatch, fetch, "_run_looks", lambda: opened.delete_topic("t"))
        request = fetch_request(12, [("t", [(0, 1)])])
        (entry,) = entries_by_partition(answer(opened, request)).values()
    assert entry.error_code == KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
    assert not entry.records


def test_a_long_polls_read_after_its_wake_up_of_a_topic_deleted_under_it(
    uploaded: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fetch waits at the end; a record arrives, which wakes it, and
    its read after the wake-up (held until the record is uploaded, so that
    only its object holds it) meets the deletion."""
    request = fetch_request(12, [("t", [(0, RECORDS)])])
    request = dataclasses.replace(
        request, max_wait=datetime.timedelta(milliseconds=HOUR_MS), min_bytes=i32(1)
    )
    uploaded_now = rereads_held(monkeypatch)
    with InProcessServer(uploaded) as server, Wire(server.bootstrap, timeout=TIMEOUT) as wire:
        sent = wire.send(request)
        until(lambda: registered(uploaded) == 1, "the fetch never waited")
        deleted = _deleted_under_the_read(uploaded, monkeypatch)
        send_records(uploaded, "t", {0: 1})
        assert uploaded.store.flush(30)
        uploaded_now.set()
        answered, response = wire.receive(response_schema_for(request))
    assert answered == sent
    assert deleted, "the read after the wake-up never reached the object store"
    (entry,) = entries_by_partition(response).values()
    assert entry.error_code == KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
    assert not entry.records


def test_a_read_of_a_topic_deleted_and_created_again_under_it_answers_unknown_topic(
    uploaded: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read holds the old topic's partition: it answers that one gone,
    never the new topic's records under the old one's look, while a read
    of the new topic (a live partition) is answered as usual."""

    def deleted_and_created_again() -> None:
        uploaded.delete_topic("t")
        uploaded.create_topic("t", 1)
        send_records(uploaded, "t", {0: RECORDS})

    deleted = before_the_object_read(monkeypatch, deleted_and_created_again)
    request = fetch_request(12, [("t", [(0, 1)])])
    (entry,) = entries_by_partition(answer(uploaded, request)).values()
    assert deleted, "the read never reached the object store"
    assert entry.error_code == KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
    assert not entry.records
    (again,) = entries_by_partition(answer(uploaded, request)).values()
    assert again.error_code == KafkaCode.NONE
    assert (again.log_start_offset, again.high_watermark) == (0, RECORDS)
    assert again.records


def test_a_read_of_a_deleted_topic_cancelled_under_its_object_read_ends_cancelled(
    uploaded: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cancellation (a closed connection, a wait given up) is the
    caller's, never an UnknownTopic: only an error of the read itself says
    the topic is gone."""
    never_answered: Future[Any] = Future()
    reached = asyncio.Event()

    def deleted_then_held(self: Fetcher, *args: Any) -> tuple[Future[Any], bool]:
        uploaded.delete_topic("t")
        reached.set()
        return never_answered, False

    monkeypatch.setattr(Fetcher, "_object_read", deleted_then_held)

    async def cancelled_read() -> asyncio.Task[Any]:
        read = asyncio.ensure_future(uploaded.fetch_async("t", 0, 1, 1 << 20))
        await asyncio.wait_for(reached.wait(), 30)
        read.cancel()
        await asyncio.wait([read], timeout=30)
        return read

    read = asyncio.run(cancelled_read())
    assert read.done()
    assert read.cancelled(), f"the read ended with {read.exception()!r}"


def test_a_lookup_of_a_topic_deleted_under_its_scan_raises_unknown_topic(
    uploaded: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lookup by header scans the log through the engine's own reader,
    which reads a deleted stream's objects as none: the scan ends early,
    and its answer would be no match where the topic is gone."""
    deleted = before_the_object_read(
        monkeypatch, lambda: uploaded.delete_topic("t"), "_read_objects"
    )
    with pytest.raises(engine.UnknownTopic):
        uploaded.lookup("t", "k", b"v")
    assert deleted, "the lookup never reached the object store"


def _after_the_out_of_range(
    monkeypatch: pytest.MonkeyPatch, opened: engine.Engine, change: Callable[[], object]
) -> None:
    """``change`` made once the read has found its offset out of the
    partition's range, before the handler answers it."""
    read = opened.fetch_leader_hot

    def then_changed(*args: Any) -> Any:
        try:
            return read(*args)
        except engine.OffsetOutOfRange:
            change()
            raise

    monkeypatch.setattr(opened, "fetch_leader_hot", then_changed)


@pytest.mark.parametrize("created_again", [False, True], ids=["deleted", "created_again"])
@pytest.mark.parametrize("version", [12, 13, 17])
def test_an_out_of_range_read_of_a_topic_deleted_after_it_answers_the_offsets_it_read(
    uploaded: engine.Engine, monkeypatch: pytest.MonkeyPatch, version: int, created_again: bool
) -> None:
    """The answer to a read past the end carries the log start and high
    watermark of the partition read (Kafka answers -1 for both; see
    docs/server.md's differences): never those of a topic of the same name
    created since (another incarnation, another log), which a lookup by
    name would find, by topic id (v13+) above all: the client named the
    old topic's id. A topic deleted after the read changes nothing of its
    answer, and the connection keeps serving."""
    topic: str | uuid.UUID = "t" if version < 13 else uuid.UUID(bytes=uploaded.topic_id("t"))

    def deleted() -> None:
        uploaded.delete_topic("t")
        if created_again:
            uploaded.create_topic("t", 1)
            send_records(uploaded, "t", {0: 3 * RECORDS})

    _after_the_out_of_range(monkeypatch, uploaded, deleted)
    request = fetch_request(version, [(topic, [(0, RECORDS + 1)])])
    (entry,) = entries_by_partition(answer(uploaded, request)).values()
    assert entry.error_code == KafkaCode.OFFSET_OUT_OF_RANGE
    assert (entry.log_start_offset, entry.high_watermark) == (0, RECORDS)
    if created_again:
        assert uploaded.offsets("t", 0) == (0, 3 * RECORDS)  # the new topic's, not answered


@pytest.mark.parametrize("version", [12, 13, 17])
def test_an_out_of_range_read_of_a_topic_deleted_before_its_offsets_answers_unknown_topic(
    uploaded: engine.Engine, monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    """The partition read gone before its offsets are read for the answer:
    the answer for a partition that no longer exists, by name or by id."""
    topic: str | uuid.UUID = "t" if version < 13 else uuid.UUID(bytes=uploaded.topic_id("t"))
    found_out_of_range = Partition._not_durable_yet

    def deleted_first(self: Partition, *args: Any) -> Any:
        uploaded.delete_topic("t")
        return found_out_of_range(self, *args)

    monkeypatch.setattr(Partition, "_not_durable_yet", deleted_first)
    request = fetch_request(version, [(topic, [(0, RECORDS + 1)])])
    (entry,) = entries_by_partition(answer(uploaded, request)).values()
    assert entry.error_code == KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
    assert (entry.high_watermark, entry.log_start_offset) == (-1, -1)


def _deleted_before_its_objects_are_read(
    opened: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> list[bool]:
    """The topic deleted once the store's read has looked its stream up
    (found it, with its range), before it reads the stream's objects: the
    objects' read finds no stream, which is no answer of "no data"."""
    return before_the_object_read(monkeypatch, lambda: opened.delete_topic("t"), "_read_objects")


@pytest.mark.parametrize("version", [12, 13, 17])
def test_a_fetch_of_a_topic_deleted_before_its_objects_are_read_answers_unknown_topic(
    uploaded: engine.Engine, monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    """An empty answer (error NONE, no records) would have a consumer fetch
    the deleted partition again, and a long poll wait on it, for ever."""
    topic: str | uuid.UUID = "t" if version < 13 else uuid.UUID(bytes=uploaded.topic_id("t"))
    deleted = _deleted_before_its_objects_are_read(uploaded, monkeypatch)
    (entry,) = entries_by_partition(
        answer(uploaded, fetch_request(version, [(topic, [(0, 1)])]))
    ).values()
    assert deleted, "the read never reached the objects"
    assert entry.error_code == KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
    assert not entry.records


@pytest.mark.parametrize("read", [engine.Engine.fetch, _fetch_async], ids=["fetch", "fetch_async"])
def test_the_embedded_fetch_of_a_topic_deleted_before_its_objects_are_read_raises_unknown_topic(
    uploaded: engine.Engine, monkeypatch: pytest.MonkeyPatch, read: Callable[..., Any]
) -> None:
    deleted = _deleted_before_its_objects_are_read(uploaded, monkeypatch)
    with pytest.raises(engine.UnknownTopic):
        read(uploaded, "t", 0, 1)
    assert deleted
