"""Pipelined requests on one connection: their answers go out in request
order, and answers ready together leave in one write to the socket, not one
write each (librdkafka keeps hundreds of one-partition Produce requests in
flight to a topic of thousands of partitions)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import engine
import native
from engine.protocol.apis import ApiKey, load_request_schema, load_response_schema
from native import RecordSpec
from tests.server.in_process import InProcessServer, hold_config_changes
from tests.server.wire import Wire, build, encode_request

REQUESTS = 32


@pytest.fixture
def served(tmp_path: Path) -> Iterator[InProcessServer]:
    with engine.open(tmp_path / "data", config=engine.EngineConfig.small()) as opened:
        opened.create_topic("t", REQUESTS)
        server = InProcessServer(opened)
        try:
            yield server
        finally:
            server.stop()


def _api_versions() -> Any:
    return build(
        load_request_schema(ApiKey.API_VERSIONS, 3),
        client_software_name="pipelined",
        client_software_version="1",
    )


def test_answers_to_requests_read_together_leave_in_one_write(served: InProcessServer) -> None:
    request = _api_versions()
    schema = load_response_schema(ApiKey.API_VERSIONS, 3)
    with Wire(served.bootstrap) as wire:
        wire.request(request)  # connected, and answered once, before the count
        writes = served.server.stats.writes
        wire.send_raw(b"".join(encode_request(request, 100 + i) for i in range(REQUESTS)))
        answers = [wire.receive(schema) for _ in range(REQUESTS)]
    assert [correlation_id for correlation_id, _ in answers] == [100 + i for i in range(REQUESTS)]
    assert all(answer.error_code == 0 for _, answer in answers)
    # One read of the socket brings them all on loopback; a read split in
    # two by the kernel makes two writes, still far fewer than one per answer.
    assert served.server.stats.writes - writes <= REQUESTS // 4


def _produce(partition: int, value: bytes) -> Any:
    batch = native.encode_batch([RecordSpec(1_700_000_000_000, None, value, ())])
    return build(
        load_request_schema(ApiKey.PRODUCE, 9),
        acks=-1,
        timeout_ms=30_000,
        topic_data=[{"name": "t", "partition_data": [{"index": partition, "records": batch}]}],
    )


def test_pipelined_one_partition_produces_are_each_answered_in_order(
    served: InProcessServer,
) -> None:
    schema = load_response_schema(ApiKey.PRODUCE, 9)
    rounds = 3
    with Wire(served.bootstrap, timeout=30) as wire:
        frames = [
            encode_request(_produce(i % REQUESTS, b"v%d" % i), 1000 + i)
            for i in range(rounds * REQUESTS)
        ]
        wire.send_raw(b"".join(frames))
        answers = [wire.receive(schema) for _ in frames]
    assert [correlation_id for correlation_id, _ in answers] == [
        1000 + i for i in range(rounds * REQUESTS)
    ]
    for i, (_, answer) in enumerate(answers):
        (topic,) = answer.responses
        (partition,) = topic.partition_responses
        assert (topic.name, partition.index, partition.error_code) == ("t", i % REQUESTS, 0)
        assert partition.base_offset == i // REQUESTS


def test_a_one_partition_produce_makes_no_task(served: InProcessServer) -> None:
    """Its answer is a future the WAL's group commit settles by a call on
    the loop (docs/design/0072), not a coroutine of its own awaiting the
    append: no task per request nor per append, at a request per record or
    two at thousands of partitions."""
    tasks: list[str] = []

    def counting(loop: asyncio.AbstractEventLoop, coroutine: Any) -> asyncio.Task[Any]:
        tasks.append(getattr(coroutine, "__qualname__", "?"))
        return asyncio.Task(coroutine, loop=loop)

    served.loop.call_soon_threadsafe(served.loop.set_task_factory, counting)
    schema = load_response_schema(ApiKey.PRODUCE, 9)
    with Wire(served.bootstrap, timeout=30) as wire:
        frames = [encode_request(_produce(i, b"v"), 2000 + i) for i in range(REQUESTS)]
        wire.send_raw(b"".join(frames))
        answers = [wire.receive(schema) for _ in frames]
    served.loop.call_soon_threadsafe(served.loop.set_task_factory, None)
    assert [a.responses[0].partition_responses[0].error_code for _, a in answers] == [0] * REQUESTS
    # Only the one that accepts the connection.
    assert [name for name in tasks if "accept_connection" not in name] == []


def _log_append_time() -> Any:
    return build(
        load_request_schema(ApiKey.INCREMENTAL_ALTER_CONFIGS, 1),
        resources=[
            {
                "resource_type": 2,  # a topic
                "resource_name": "t",
                "configs": [
                    {
                        "name": "message.timestamp.type",
                        "config_operation": 0,  # SET
                        "value": "LogAppendTime",
                    }
                ],
            }
        ],
        validate_only=False,
    )


def test_a_request_pipelined_after_a_config_change_is_handled_after_it(
    served: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kafka handles a connection's requests one at a time, each after the
    one before it has been answered: a Produce sent right behind an
    IncrementalAlterConfigs that sets message.timestamp.type=LogAppendTime
    is appended with the log's time. The change is made on the admin
    thread, here held up until the server has read both requests; the
    Produce waits for it."""
    server = served.server
    held = hold_config_changes(server.engine, monkeypatch)
    with Wire(served.bootstrap, timeout=30) as wire:
        wire.request(_api_versions())  # connected before the count
        before = server.stats.requests
        frames = encode_request(_log_append_time(), 10) + encode_request(_produce(0, b"v"), 11)
        wire.send_raw(frames)
        try:
            assert held.holding.wait(10)
            # Both read: handled, or the Produce held back until the change is made.
            served.until_on_loop(
                lambda: (
                    server.stats.requests - before >= 2 or any(c._held for c in server.connections)
                )
            )
        finally:
            held.release.set()
        altered_schema = load_response_schema(ApiKey.INCREMENTAL_ALTER_CONFIGS, 1)
        altered_id, altered = wire.receive(altered_schema)
        produced_id, produced = wire.receive(load_response_schema(ApiKey.PRODUCE, 9))
    assert (altered_id, [r.error_code for r in altered.responses]) == (10, [0])
    (partition,) = produced.responses[0].partition_responses
    assert (produced_id, partition.error_code) == (11, 0)
    assert partition.log_append_time is not None, "appended before the config change"


def _idempotent_produce(producer: tuple[int, int], topics: dict[str, int]) -> Any:
    """A Produce of one record to partition 0 of each topic, at the given
    sequence, from an idempotent producer."""

    def batch(sequence: int) -> bytes:
        return native.encode_batch(
            [RecordSpec(1_700_000_000_000, None, b"v%d" % sequence, ())],
            producer_id=producer[0],
            producer_epoch=producer[1],
            base_sequence=sequence,
        )

    return build(
        load_request_schema(ApiKey.PRODUCE, 9),
        acks=-1,
        timeout_ms=30_000,
        topic_data=[
            {"name": name, "partition_data": [{"index": 0, "records": batch(sequence)}]}
            for name, sequence in topics.items()
        ],
    )


def test_a_produce_behind_one_waiting_for_its_topics_creation_appends_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Produce naming a topic that does not exist yet waits for its
    creation on the admin thread; a Produce pipelined behind it on the
    connection, for a partition both name, is handled only once the first
    one's appends are submitted, so an idempotent producer's sequences
    arrive in order (else the second is refused OUT_OF_ORDER_SEQUENCE_NUMBER:
    its sequence 1 would come before the 0 still waiting). Kafka handles a
    connection's requests one at a time."""
    config = dataclasses.replace(engine.EngineConfig.small(), auto_create_topics=True)
    with engine.open(tmp_path / "data", config=config) as opened:
        opened.create_topic("t", 1)
        held, released = threading.Event(), threading.Event()
        create_topics = opened.create_topics

        def held_up(*args: Any, **kwargs: Any) -> Any:
            held.set()
            released.wait(30)
            return create_topics(*args, **kwargs)

        monkeypatch.setattr(opened, "create_topics", held_up)
        served = InProcessServer(opened)
        try:
            with Wire(served.bootstrap, timeout=30) as wire:
                started = wire.request(
                    build(
                        load_request_schema(ApiKey.INIT_PRODUCER_ID, 4),
                        transactional_id=None,
                        transaction_timeout_ms=60_000,
                        producer_id=-1,
                        producer_epoch=-1,
                    )
                )
                producer = (started.producer_id, started.producer_epoch)
                before = served.server.stats.requests
                wire.send_raw(
                    encode_request(_idempotent_produce(producer, {"new": 0, "t": 0}), 20)
                    + encode_request(_idempotent_produce(producer, {"t": 1}), 21)
                )
                try:
                    assert held.wait(10)
                    # Both read: the second handled, or held back behind the first.
                    served.until_on_loop(
                        lambda: (
                            served.server.stats.requests - before >= 2
                            or any(c._held for c in served.server.connections)
                        )
                    )
                finally:
                    released.set()
                schema = load_response_schema(ApiKey.PRODUCE, 9)
                first = wire.receive(schema)[1]
                second = wire.receive(schema)[1]
        finally:
            served.stop()
    assert sorted(
        (t.name, p.error_code, p.base_offset)
        for t in first.responses
        for p in t.partition_responses
    ) == [("new", 0, 0), ("t", 0, 0)]
    ((answer,),) = [t.partition_responses for t in second.responses]
    assert (answer.error_code, answer.base_offset) == (0, 1)
