"""A long-polling Fetch whose partition goes away while it waits: the
topic deleted (and created again) between the handler's read and its wait
or during the wait, or DeleteRecords moving the log start past the offset
read. Kafka's DelayedFetch completes a fetch of a partition gone at once
(DeleteRecords: at its next completion, with the same answer), and its
read answers UNKNOWN_TOPIC_OR_PARTITION for a partition gone,
INCONSISTENT_TOPIC_ID for one fetched by topic id (v13+) whose topic is
another now, the new topic's own answer for one fetched by name, and
OFFSET_OUT_OF_RANGE below the log start; sessions alike
(docs/design/0090)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from kio.static.primitive import i32

import engine
from engine.protocol.kafka_code import KafkaCode
from engine.server.handlers import fetch
from tests.server.in_process import InProcessServer
from tests.server.long_polls import HOUR_MS, registered, until
from tests.server.wire import Wire, fetch_each, response_schema_for

TIMEOUT = 30.0
RECORDS = 3


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[engine.Engine]:
    with engine.open(tmp_path / "data", config=engine.EngineConfig.small()) as served:
        served.create_topic("t", 1)
        produce(served, RECORDS)
        yield served


def produce(served: engine.Engine, count: int) -> None:
    with served.producer() as producer:
        for i in range(count):
            producer.send("t", b"v%d" % i, partition=0).result(TIMEOUT)


def recreate(served: engine.Engine) -> None:
    """Deletes the topic and creates it again, from another thread (an admin
    request of another connection, the embedded API)."""

    def run() -> None:
        served.delete_topic("t")
        served.create_topic("t", 1)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()


def delete(served: engine.Engine) -> None:
    thread = threading.Thread(target=served.delete_topic, args=("t",))
    thread.start()
    thread.join()


def rereads_held(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Every read of the handler after its first waits for the event: the
    test's change is complete before the read that follows the wake-up
    (a deletion wakes the wait before the topic is created again)."""
    read_all = fetch._read_all
    changed = threading.Event()
    reads = 0

    async def held(*args: Any) -> Any:
        nonlocal reads
        reads += 1
        if reads > 1:
            await asyncio.get_running_loop().run_in_executor(None, changed.wait, TIMEOUT)
        return await read_all(*args)

    monkeypatch.setattr(fetch, "_read_all", held)
    return changed


def long_poll(served: engine.Engine, version: int, offset: int, **session: int) -> Any:
    name: Any = "t" if version < 13 else uuid.UUID(bytes=served.topic_id("t"))
    return fetch_each(version, [(name, 0, offset)], max_wait_ms=HOUR_MS, min_bytes=1, **session)


def entry(response: Any) -> Any:
    ((partition,),) = [topic.partitions for topic in response.responses]
    return partition


def answered_without_records(sent: int, answered: int, response: Any, code: KafkaCode) -> None:
    assert answered == sent
    assert entry(response).error_code == code
    assert not entry(response).records


GONE = KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
BY_NAME, BY_ID = 12, 13


class Gone(NamedTuple):
    """A Fetch's version, what happens to its partition, and the answer."""

    version: int
    change: Callable[[engine.Engine], None]
    code: KafkaCode

    def __str__(self) -> str:
        return f"{self.version}-{self.change.__name__}-{int(self.code)}"


RECREATED_BY_NAME = Gone(BY_NAME, recreate, KafkaCode.OFFSET_OUT_OF_RANGE)
"""By name the read finds the topic created again: the new topic's answer."""
RECREATED_BY_ID = Gone(BY_ID, recreate, KafkaCode.INCONSISTENT_TOPIC_ID)
DELETED_BY_NAME = Gone(BY_NAME, delete, GONE)
DELETED_BY_ID = Gone(BY_ID, delete, GONE)


@pytest.mark.parametrize(
    "gone",
    [RECREATED_BY_NAME, RECREATED_BY_ID, DELETED_BY_NAME, DELETED_BY_ID],
    ids=str,
)
def test_a_topic_gone_between_the_read_and_the_wait_answers_at_once(
    opened: engine.Engine, monkeypatch: pytest.MonkeyPatch, gone: Gone
) -> None:
    """The wait watches the partition the read saw: a lookup by name found
    the new topic and waited under it, past the old topic's high watermark,
    until max_wait."""
    read_all = fetch._read_all
    reads = 0

    async def read_then_changed(*args: Any) -> Any:
        nonlocal reads
        found = await read_all(*args)
        reads += 1
        if reads == 1:
            gone.change(opened)
        return found

    monkeypatch.setattr(fetch, "_read_all", read_then_changed)
    request = long_poll(opened, gone.version, RECORDS)
    with InProcessServer(opened) as server, Wire(server.bootstrap, timeout=TIMEOUT) as wire:
        sent = wire.send(request)
        answered, response = wire.receive(response_schema_for(request))
    answered_without_records(sent, answered, response, gone.code)
    until(lambda: registered(opened) == 0, "a wait stayed registered")


@pytest.mark.parametrize("gone", [RECREATED_BY_NAME, RECREATED_BY_ID, DELETED_BY_ID], ids=str)
def test_a_topic_gone_during_the_wait_answers_as_kafkas_read_does(
    opened: engine.Engine, monkeypatch: pytest.MonkeyPatch, gone: Gone
) -> None:
    """By topic id the read after the wake-up must not read the topic created
    again under the same name: Kafka's readFromLog finds its id changed."""
    changed = rereads_held(monkeypatch)
    request = long_poll(opened, gone.version, RECORDS)
    with InProcessServer(opened) as server, Wire(server.bootstrap, timeout=TIMEOUT) as wire:
        sent = wire.send(request)
        until(lambda: registered(opened) == 1, "the fetch never waited")
        gone.change(opened)
        changed.set()
        answered, response = wire.receive(response_schema_for(request))
    answered_without_records(sent, answered, response, gone.code)


@pytest.mark.parametrize(
    ("version", "code", "next_code"),
    [
        (BY_NAME, KafkaCode.OFFSET_OUT_OF_RANGE, KafkaCode.OFFSET_OUT_OF_RANGE),
        (BY_ID, KafkaCode.INCONSISTENT_TOPIC_ID, KafkaCode.UNKNOWN_TOPIC_ID),
    ],
)
def test_a_sessions_long_poll_over_a_topic_created_again(
    opened: engine.Engine,
    monkeypatch: pytest.MonkeyPatch,
    version: int,
    code: KafkaCode,
    next_code: KafkaCode,
) -> None:
    """An incremental fetch waits over the session's partitions: the topic
    created again ends it as for a sessionless fetch, and the session's
    next fetch finds the old topic id unknown (by id) or the new topic's
    end (by name)."""
    with InProcessServer(opened) as server, Wire(server.bootstrap, timeout=TIMEOUT) as wire:
        name: Any = "t" if version < 13 else uuid.UUID(bytes=opened.topic_id("t"))
        full = wire.request(fetch_each(version, [(name, 0, RECORDS)], session_epoch=0))
        session = full.session_id
        assert session != 0
        changed = rereads_held(monkeypatch)
        waiting = fetch_each(
            version, [], session_id=session, session_epoch=1, max_wait_ms=HOUR_MS, min_bytes=1
        )
        sent = wire.send(waiting)
        until(lambda: registered(opened) == 1, "the incremental fetch never waited")
        recreate(opened)
        changed.set()
        answered, response = wire.receive(response_schema_for(waiting))
        assert answered == sent
        assert entry(response).error_code == code
        after = wire.request(fetch_each(version, [], session_id=session, session_epoch=2))
        assert entry(after).error_code == next_code


@pytest.mark.parametrize("width", [1, 40])
def test_records_deleted_past_the_offset_read_answer_the_long_poll_at_once(
    tmp_path: Path, width: int
) -> None:
    """The fetch read below its min_bytes and waits; DeleteRecords moving the
    log start past its offset answers it OFFSET_OUT_OF_RANGE at once, one
    moving it only up to that offset leaves it waiting. ``width``: a narrow
    wait and a wide one (docs/design/0082)."""
    with engine.open(tmp_path / "data", config=engine.EngineConfig.small()) as served:
        served.create_topic("t", width)
        produce(served, RECORDS)
        request = fetch_each(
            12, [("t", p, 1 if p == 0 else 0) for p in range(width)], max_wait_ms=HOUR_MS
        )
        request = dataclasses.replace(request, min_bytes=i32(1 << 20))
        with InProcessServer(served) as server, Wire(server.bootstrap, timeout=TIMEOUT) as wire:
            sent = wire.send(request)
            until(lambda: registered(served) == 1, "the fetch never waited")
            served.delete_records("t", 0, 1)  # up to the offset read: no answer
            assert registered(served) == 1
            served.delete_records("t", 0, 2)
            answered, response = wire.receive(response_schema_for(request))
            until(lambda: registered(served) == 0, "a wait stayed registered")
    assert answered == sent
    first = response.responses[0].partitions[0]
    assert (first.error_code, first.log_start_offset) == (KafkaCode.OFFSET_OUT_OF_RANGE, 2)
    assert not first.records


@pytest.mark.parametrize("width", [1, 40])
def test_retention_moving_the_log_start_past_the_offset_read_answers_the_long_poll_at_once(
    tmp_path: Path, width: int
) -> None:
    """As after DeleteRecords: the store's retention drops the object that
    held the records, moving the log start to 3, past the offset the fetch
    read (1): it is answered OFFSET_OUT_OF_RANGE at once, not at max_wait.
    A fetch waiting at the end (3), not below the new start, goes on
    waiting, and so does one of another topic."""
    with engine.open(tmp_path / "data", config=engine.EngineConfig.small()) as served:
        served.create_topic("t", width)
        served.create_topic("other", 1)
        produce(served, RECORDS)
        assert served.flush(TIMEOUT)  # in an object: retention drops whole objects
        request = fetch_each(
            12, [("t", p, 1 if p == 0 else 0) for p in range(width)], max_wait_ms=HOUR_MS
        )
        request = dataclasses.replace(request, min_bytes=i32(1 << 20))
        at_end = fetch_each(12, [("t", 0, RECORDS)], max_wait_ms=HOUR_MS, min_bytes=1)
        elsewhere = fetch_each(12, [("other", 0, 0)], max_wait_ms=HOUR_MS, min_bytes=1)
        with (
            InProcessServer(served) as server,
            Wire(server.bootstrap, timeout=TIMEOUT) as wire,
            Wire(server.bootstrap, timeout=TIMEOUT) as waiting_at_end,
            Wire(server.bootstrap, timeout=TIMEOUT) as waiting_elsewhere,
        ):
            waiting_at_end.send(at_end)
            waiting_elsewhere.send(elsewhere)
            until(lambda: registered(served) == 2, "the other fetches never waited")
            sent = wire.send(request)
            until(lambda: registered(served) == 3, "the fetch never waited")
            served.alter_configs("t", {"retention.ms": 1})
            time.sleep(0.01)  # the object is older than retention.ms
            served.store.compact()
            assert served.offsets("t", 0) == (RECORDS, RECORDS)
            answered, response = wire.receive(response_schema_for(request))
            until(lambda: registered(served) == 2, "the answered wait stayed registered")
            # The other two were still waiting: their answers carry the
            # records that end their waits, not an early empty answer.
            with served.producer() as producer:
                producer.send("t", b"after", partition=0).result(TIMEOUT)
                producer.send("other", b"elsewhere", partition=0).result(TIMEOUT)
            _, grown = waiting_at_end.receive(response_schema_for(at_end))
            _, other = waiting_elsewhere.receive(response_schema_for(elsewhere))
    assert answered == sent
    first = response.responses[0].partitions[0]
    assert (first.error_code, first.log_start_offset) == (KafkaCode.OFFSET_OUT_OF_RANGE, RECORDS)
    assert not first.records
    assert entry(grown).error_code == KafkaCode.NONE and entry(grown).records
    assert entry(other).error_code == KafkaCode.NONE and entry(other).records
