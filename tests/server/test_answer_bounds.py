"""What a client's requests can make the server hold for their answers:
never more than the broker's fetch.max.bytes for one Fetch, whatever
max_bytes it claims (and no append a fetch cannot cut: one batch per
partition per produce, as in Kafka), and, for a client that sends many
requests and reads no answer, about one connection budget, however small
the requests are.

Each attack is made over a real socket; afterwards the same connection
gets every answer, in order, once it reads them, and another client is
served as before."""

from __future__ import annotations

import datetime
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kio.schema.fetch.v12.response import FetchResponse
from kio.schema.metadata.v12.response import MetadataResponse

import engine
import native
from engine.protocol.apis import ApiKey, request_schema
from engine.protocol.kafka_code import KafkaCode
from engine.server.config import ServerConfig
from engine.server.handlers.fetch import WAITING_FETCH_BYTES
from native import RecordSpec
from tests.server.in_process import InProcessServer, hold_config_changes
from tests.server.wire import (
    Wire,
    build,
    encode_request,
    fetch_from_start,
    produce_answers,
    response_schema_for,
)

KiB = 1024
MiB = 1024 * KiB
INT32_MAX = 2**31 - 1
INVALID_RECORD = 87
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_REQUEST = 42
TOPIC = "t"
BATCHES = 256
BATCH = native.encode_batch([RecordSpec(1_700_000_000_000, None, b"v" * (8 * KiB - 100), ())])
"""Batches of about 8 KiB: 2 MiB in the topic, every answer made of many."""


def _served(root: Path, config: ServerConfig, partitions: int = 1) -> Iterator[InProcessServer]:
    with engine.open(root / "data", config=engine.EngineConfig.small()) as opened:
        opened.create_topic(TOPIC, partitions)
        for _ in range(BATCHES):  # a batch an append, as Kafka's clients send them
            opened.produce(TOPIC, 0, BATCH)
        server = InProcessServer(opened, config=config)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def small_fetch_max(tmp_path: Path) -> Iterator[InProcessServer]:
    yield from _served(tmp_path, ServerConfig(fetch_max_bytes=256 * KiB))


@pytest.fixture
def small_budget(tmp_path: Path) -> Iterator[InProcessServer]:
    yield from _served(tmp_path, ServerConfig(max_connection_inflight_bytes=1 * MiB))


@pytest.fixture
def many_partitions(tmp_path: Path) -> Iterator[InProcessServer]:
    yield from _served(tmp_path, ServerConfig(max_connection_inflight_bytes=1 * MiB), 1000)


def _fetch(max_bytes: int, repeats: int = 1) -> Any:
    return fetch_from_start(TOPIC, 12, max_bytes=max_bytes, repeats=repeats)


def _records_bytes(answer: Any) -> int:
    return sum(len(p.records or b"") for t in answer.responses for p in t.partitions)


def _metadata() -> Any:
    return build(
        request_schema(ApiKey.METADATA, 12),
        topics=[{"name": TOPIC}],
        allow_auto_topic_creation=False,
    )


def _assert_serves_others(served: InProcessServer) -> None:
    with Wire(served.bootstrap) as other:
        answer = other.request(_fetch(1 * MiB))
    assert answer.responses[0].partitions[0].error_code == 0
    assert _records_bytes(answer) > 0


def _not_reading(served: InProcessServer) -> Wire:
    wire = Wire(served.bootstrap, timeout=30)
    # Little room on the client's side, so that the server's writes back up.
    wire.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * KiB)
    return wire


def _send_what_fits(wire: Wire, frames: bytes) -> int:
    """Sends what of ``frames`` the socket takes now, without waiting;
    returns how many bytes that was."""
    wire.sock.settimeout(None)
    wire.sock.setblocking(False)
    try:
        return wire.sock.send(frames)
    finally:
        wire.sock.setblocking(True)
        wire.sock.settimeout(wire.timeout)


def _settled(served: InProcessServer, before: int, sent: int) -> int:
    """Requests read since ``before``, once the server has either read all
    ``sent`` or stopped writing to the client (its socket takes no more)."""
    server = served.server
    served.until_on_loop(
        lambda: (
            server.stats.requests - before >= sent
            or any("writing" in c._pauses for c in server.connections)
        )
    )
    return server.stats.requests - before


# -- one Fetch ------------------------------------------------------------------------


def test_a_fetch_carries_at_most_the_brokers_fetch_max_bytes(
    small_fetch_max: InProcessServer,
) -> None:
    """A Fetch claiming max_bytes of 2 GiB, naming its 2 MiB partition eight
    times, gets at most fetch.max.bytes (256 KiB here) of records, as
    Kafka's handleFetchRequest caps it: the answer is built before the
    client reads any of it, so the claim would size what the server holds."""
    with Wire(small_fetch_max.bootstrap) as wire:
        answer = wire.request(_fetch(INT32_MAX, repeats=8))
    assert answer.error_code == 0
    assert 0 < _records_bytes(answer) <= 256 * KiB
    _assert_serves_others(small_fetch_max)


def test_a_produce_of_more_than_one_batch_for_a_partition_is_refused(
    small_fetch_max: InProcessServer,
) -> None:
    """A fetch answer carries at least the whole first append at its offset,
    whatever max_bytes it asks for: 100 batches in one partition's data
    would be a 800 KiB answer to every fetch of that offset, past any
    consumer's limit. Kafka refuses such a produce (v3 and later: exactly
    one batch a partition) with INVALID_RECORD; nothing is appended."""
    produce = build(
        request_schema(ApiKey.PRODUCE, 9),
        acks=-1,
        timeout=datetime.timedelta(seconds=10),
        topic_data=[{"name": TOPIC, "partition_data": [{"index": 0, "records": BATCH * 100}]}],
    )
    with Wire(small_fetch_max.bootstrap) as wire:
        answer = wire.request(produce).responses[0].partition_responses[0]
        assert answer.error_code == INVALID_RECORD
        assert "exactly one record batch" in (answer.error_message or "")
        high_watermark = wire.request(_fetch(1)).responses[0].partitions[0].high_watermark
        assert high_watermark == BATCHES
    _assert_serves_others(small_fetch_max)


def test_a_second_batch_is_refused_per_partition_after_the_partition_is_known(
    many_partitions: InProcessServer,
) -> None:
    """As Kafka's handleProduceRequest: a partition that does not exist is
    UNKNOWN_TOPIC_OR_PARTITION however many batches it was sent, one that
    does is refused its second batch, and the request's other partitions
    are appended as usual."""
    codes = produce_answers(
        many_partitions.bootstrap,
        [
            {
                "name": TOPIC,
                "partition_data": [
                    {"index": 1, "records": BATCH * 2},
                    {"index": 2, "records": BATCH},
                    {"index": 5000, "records": BATCH * 2},
                ],
            }
        ],
    )
    assert codes == {
        (TOPIC, 1): (INVALID_RECORD, -1),
        (TOPIC, 2): (0, 0),
        (TOPIC, 5000): (UNKNOWN_TOPIC_OR_PARTITION, -1),
    }


def test_a_second_batch_is_refused_before_its_first_is_validated(
    many_partitions: InProcessServer,
) -> None:
    """Kafka's ProduceRequest.validateRecords runs before any batch is
    validated, and for its internal topics too, which exist to it: a
    second batch is INVALID_RECORD even behind a corrupt first batch or to
    __consumer_offsets, and a corrupt lone batch is still CORRUPT_MESSAGE."""
    corrupt = bytearray(BATCH)
    corrupt[100] ^= 0x01
    codes = produce_answers(
        many_partitions.bootstrap,
        [
            {
                "name": TOPIC,
                "partition_data": [
                    {"index": 1, "records": bytes(corrupt) + BATCH},
                    {"index": 2, "records": bytes(corrupt)},
                    {"index": 3, "records": BATCH},
                ],
            },
            {"name": "__consumer_offsets", "partition_data": [{"index": 0, "records": BATCH * 2}]},
        ],
    )
    assert codes == {
        (TOPIC, 1): (INVALID_RECORD, -1),
        (TOPIC, 2): (CORRUPT_MESSAGE, -1),
        (TOPIC, 3): (0, 0),
        ("__consumer_offsets", 0): (INVALID_RECORD, -1),
    }


def test_a_frame_too_short_for_kafkas_iterator_after_the_first_batch_is_corrupt(
    many_partitions: InProcessServer,
) -> None:
    """Kafka's MemoryRecords iterator throws CorruptRecordException on a
    batchLength below 14 (LegacyRecord.RECORD_OVERHEAD_V0) while
    ProduceRequest.validateRecords looks for a second batch: such a frame
    is answered CORRUPT_MESSAGE, not as a second batch; from 14 on it is one."""
    codes = produce_answers(
        many_partitions.bootstrap,
        [
            {
                "name": TOPIC,
                "partition_data": [
                    {"index": 1, "records": BATCH + struct.pack(">qi", 0, 0)},
                    {"index": 2, "records": BATCH + struct.pack(">qi", 0, 13) + bytes(13)},
                    {"index": 3, "records": BATCH + struct.pack(">qi", 0, 14) + bytes(14)},
                ],
            }
        ],
    )
    assert codes == {
        (TOPIC, 1): (CORRUPT_MESSAGE, -1),
        (TOPIC, 2): (CORRUPT_MESSAGE, -1),
        (TOPIC, 3): (INVALID_RECORD, -1),
    }


def test_a_magic_kafkas_iterator_refuses_is_corrupt_message_alone_or_second(
    many_partitions: InProcessServer,
) -> None:
    """Kafka's MemoryRecords iterator throws CorruptRecordException ("Invalid
    magic found in record") at a magic byte below 0 or above 2, before
    ProduceRequest.validateRecords refuses magic 0 and 1 (INVALID_RECORD)."""

    def with_magic(magic: int) -> bytes:
        batch = bytearray(BATCH)
        struct.pack_into(">b", batch, 16, magic)
        return bytes(batch)

    codes = produce_answers(
        many_partitions.bootstrap,
        [
            {
                "name": TOPIC,
                "partition_data": [
                    {"index": 1, "records": with_magic(3)},
                    {"index": 2, "records": BATCH + with_magic(-1)},
                    {"index": 3, "records": with_magic(1)},
                    {"index": 4, "records": BATCH + with_magic(1)},
                ],
            }
        ],
    )
    assert codes == {
        (TOPIC, 1): (CORRUPT_MESSAGE, -1),
        (TOPIC, 2): (CORRUPT_MESSAGE, -1),
        (TOPIC, 3): (INVALID_RECORD, -1),
        (TOPIC, 4): (INVALID_RECORD, -1),
    }


def test_fetch_max_bytes_has_kafkas_lower_bound() -> None:
    assert ServerConfig(fetch_max_bytes=1024).fetch_max_bytes == 1024
    with pytest.raises(ValueError, match=r"fetch[._]max[._]bytes"):
        ServerConfig(fetch_max_bytes=1023)


# -- one Metadata -----------------------------------------------------------------------


def test_a_topic_named_many_times_in_metadata_is_answered_once(
    many_partitions: InProcessServer,
) -> None:
    """A Metadata request of 2 KiB naming a 1,000-partition topic a hundred
    times would be answered with a hundred copies of its 26 KiB entry;
    Kafka's handleTopicMetadataRequest takes the names as a set."""
    request = build(
        request_schema(ApiKey.METADATA, 12),
        topics=[{"name": TOPIC}] * 100,
        allow_auto_topic_creation=False,
    )
    with Wire(many_partitions.bootstrap) as wire:
        answer = wire.request(request)
    assert [t.name for t in answer.topics] == [TOPIC]
    assert len(answer.topics[0].partitions) == 1000
    _assert_serves_others(many_partitions)


@pytest.mark.parametrize(
    ("key", "version", "values", "answered"),
    [
        pytest.param(
            ApiKey.DESCRIBE_GROUPS, 5, {"groups": ["g"] * 100}, "groups", id="DescribeGroups"
        ),
        pytest.param(
            ApiKey.CONSUMER_GROUP_DESCRIBE,
            1,
            {"group_ids": ["g"] * 100},
            "groups",
            id="ConsumerGroupDescribe",
        ),
        pytest.param(
            ApiKey.OFFSET_FETCH,
            8,
            {"groups": [{"group_id": "g", "topics": None}] * 100},
            "groups",
            id="OffsetFetch-every-offset",
        ),
    ],
)
def test_a_group_named_many_times_is_described_once(
    small_fetch_max: InProcessServer, key: ApiKey, version: int, values: Any, answered: str
) -> None:
    """An answer about a group is as large as the group (its members'
    metadata and assignments, every offset it committed): a group named a
    hundred times in one request is answered once, not a hundred times."""
    with Wire(small_fetch_max.bootstrap) as wire:
        answer = wire.request(build(request_schema(key, version), **values))
    assert [g.group_id for g in getattr(answer, answered)] == ["g"]
    _assert_serves_others(small_fetch_max)


def test_a_transaction_or_partition_named_many_times_is_described_once(
    small_fetch_max: InProcessServer,
) -> None:
    """A transaction's answer lists its partitions, a partition's every
    producer that wrote to it: each is described once per request."""
    describe_transactions = build(
        request_schema(ApiKey.DESCRIBE_TRANSACTIONS, 0), transactional_ids=["x"] * 100
    )
    describe_producers = build(
        request_schema(ApiKey.DESCRIBE_PRODUCERS, 0),
        topics=[{"name": TOPIC, "partition_indexes": [0] * 100}] * 2,
    )
    with Wire(small_fetch_max.bootstrap) as wire:
        states = wire.request(describe_transactions).transaction_states
        topics = wire.request(describe_producers).topics
    assert [s.transactional_id for s in states] == ["x"]
    assert [(t.name, [p.partition_index for p in t.partitions]) for t in topics] == [(TOPIC, [0])]
    _assert_serves_others(small_fetch_max)


def test_a_partition_named_twice_in_list_offsets_is_invalid_request(
    small_fetch_max: InProcessServer,
) -> None:
    """Kafka answers every entry of a partition a ListOffsets names twice
    INVALID_REQUEST, and looks none up: a lookup by time reads the log, and
    a request could name one partition a hundred thousand times."""
    by_time = {"partition_index": 0, "current_leader_epoch": -1, "timestamp": 0}
    request = build(
        request_schema(ApiKey.LIST_OFFSETS, 7),
        replica_id=-1,
        isolation_level=0,
        topics=[
            {"name": TOPIC, "partitions": [by_time] * 3},
            {"name": TOPIC, "partitions": [by_time]},
        ],
    )
    once = build(
        request_schema(ApiKey.LIST_OFFSETS, 7),
        replica_id=-1,
        isolation_level=0,
        topics=[{"name": TOPIC, "partitions": [by_time]}],
    )
    with Wire(small_fetch_max.bootstrap) as wire:
        answer = wire.request(request)
        alone = wire.request(once).topics[0].partitions[0]
    codes = [p.error_code for t in answer.topics for p in t.partitions]
    assert codes == [INVALID_REQUEST] * 4
    assert (alone.error_code, alone.offset) == (0, 0)
    _assert_serves_others(small_fetch_max)


def test_config_changes_are_made_off_the_event_loop(
    small_fetch_max: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each resource an AlterConfigs or IncrementalAlterConfigs changes is a
    durable write (a group's waits for it): a request naming thousands of
    topics held the event loop for seconds. While a change is held up
    here, another connection is still answered."""
    held = hold_config_changes(small_fetch_max.server.engine, monkeypatch)
    request = build(
        request_schema(ApiKey.INCREMENTAL_ALTER_CONFIGS, 1),
        resources=[
            {
                "resource_type": 2,
                "resource_name": TOPIC,
                "configs": [{"name": "retention.ms", "config_operation": 0, "value": "86400000"}],
            }
        ],
        validate_only=False,
    )
    with Wire(small_fetch_max.bootstrap) as wire:
        correlation_id = wire.send(request)
        try:
            assert held.holding.wait(10)
            _assert_serves_others(small_fetch_max)
        finally:
            held.release.set()
        answered, answer = wire.receive(response_schema_for(request))
    assert answered == correlation_id
    assert [r.error_code for r in answer.responses] == [0]


def test_an_alter_configs_of_more_than_kafkas_bound_is_refused_whole(
    small_fetch_max: InProcessServer,
) -> None:
    """Kafka's controller writes a record per config changed, at most
    10,000 for a request; each resource altered here is a durable write of
    its own, so a request naming more configs (a resource counting at
    least one) is refused whole, POLICY_VIOLATION, and changes nothing."""
    resources = [
        {
            "resource_type": 2,
            "resource_name": TOPIC,
            "configs": [{"name": "retention.ms", "config_operation": 0, "value": "86400000"}],
        }
    ] + [{"resource_type": 2, "resource_name": f"other-{i}", "configs": []} for i in range(10_000)]
    request = build(
        request_schema(ApiKey.INCREMENTAL_ALTER_CONFIGS, 1),
        resources=resources,
        validate_only=False,
    )
    with Wire(small_fetch_max.bootstrap) as wire:
        answer = wire.request(request)
    assert {r.error_code for r in answer.responses} == {KafkaCode.POLICY_VIOLATION}
    assert len(answer.responses) == len(resources)
    retention = small_fetch_max.server.engine.topic_config(TOPIC).retention_ms
    assert retention != 86_400_000


def test_an_alter_configs_counts_only_what_the_principal_may_alter(tmp_path: Path) -> None:
    """Kafka's KafkaApis refuses the resources a principal may not alter
    before its controller counts records: a request of more than the bound
    from one who may alter none of them is refused for its authorization,
    not POLICY_VIOLATION."""
    resources = [
        {
            "resource_type": 2,
            "resource_name": f"other-{i}",
            "configs": [{"name": "retention.ms", "config_operation": 0, "value": "1"}],
        }
        for i in range(10_001)
    ]
    request = build(
        request_schema(ApiKey.INCREMENTAL_ALTER_CONFIGS, 1), resources=resources, validate_only=True
    )
    config = ServerConfig(authorizer="acl", super_users=("User:admin",))
    with engine.open(tmp_path / "node") as opened:
        server = InProcessServer(opened, config=config, principal="User:mallory")
        try:
            with Wire(server.bootstrap) as wire:
                answer = wire.request(request)
        finally:
            server.stop()
    codes = {r.error_code for r in answer.responses}
    assert codes == {KafkaCode.TOPIC_AUTHORIZATION_FAILED}


def test_a_config_resource_named_many_times_is_described_once(
    small_fetch_max: InProcessServer,
) -> None:
    """A topic's description is some fifty entries: a DescribeConfigs naming
    it a hundred times is answered once for it; with the other resources it
    names (more than the event loop describes itself), in order."""
    others = [f"missing-{i}" for i in range(20)]
    names = [TOPIC] * 100 + others + others
    request = build(
        request_schema(ApiKey.DESCRIBE_CONFIGS, 4),
        resources=[
            {"resource_type": 2, "resource_name": name, "configuration_keys": None}
            for name in names
        ],
        include_synonyms=True,
        include_documentation=True,
    )
    with Wire(small_fetch_max.bootstrap) as wire:
        answer = wire.request(request)
    assert [r.resource_name for r in answer.results] == [TOPIC, *others]
    assert answer.results[0].error_code == 0 and answer.results[0].configs
    assert {r.error_code for r in answer.results[1:]} == {UNKNOWN_TOPIC_OR_PARTITION}
    _assert_serves_others(small_fetch_max)


# -- many requests, no answer read ------------------------------------------------------


def test_pipelined_fetches_whose_answers_are_not_read_are_not_all_handled(
    small_budget: InProcessServer,
) -> None:
    """64 Fetch requests of a hundred bytes each, sent at once, each asking
    for 2 MiB: their answers (128 MiB) would be built whether or not the
    client reads them. Each counts its answer's bound against the
    connection's budget (1 MiB here), so the server handles a few and holds
    the rest back; once the client reads, every one is answered, in order."""
    count = 64
    with _not_reading(small_budget) as wire:
        wire.request(_metadata())
        before = small_budget.server.stats.requests
        wire.send_raw(b"".join(encode_request(_fetch(2 * MiB), 100 + i) for i in range(count)))
        handled = _settled(small_budget, before, count)
        assert handled <= 8, f"{handled} of {count} fetches handled with no answer read"
        _assert_serves_others(small_budget)

        for index in range(count):
            correlation_id, answer = wire.receive(FetchResponse)
            assert correlation_id == 100 + index
            assert _records_bytes(answer) == BATCHES * len(BATCH)


def _long_poll(correlation_id: int) -> bytes:
    """A Fetch at the end of the topic, of max_bytes 1, that waits for a
    byte for two hours: about 100 bytes on the wire."""
    partition = {"partition": 0, "fetch_offset": BATCHES, "partition_max_bytes": 1}
    request = build(
        request_schema(ApiKey.FETCH, 12),
        replica_id=-1,
        max_wait=datetime.timedelta(hours=2),
        min_bytes=1,
        max_bytes=1,
        isolation_level=0,
        session_epoch=-1,
        topics=[{"topic": TOPIC, "partitions": [partition]}],
    )
    return encode_request(request, correlation_id)


def test_pipelined_long_polls_count_what_they_hold_while_they_wait(
    small_budget: InProcessServer,
) -> None:
    """3,000 long polls of max_bytes 1 sent at once on a connection of a
    1 MiB budget: each holds some 6 KiB while it waits, so counted by its
    max_bytes and its 100 bytes they held sixty times the budget. Counted
    by what they hold, the server reads about a budget's worth of them and
    stops reading; it serves others meanwhile, and once data arrives every
    one is answered, in order."""
    count = 3000
    server = small_budget.server
    with Wire(small_budget.bootstrap, timeout=30) as wire:
        before = server.stats.requests
        frames = b"".join(_long_poll(100 + i) for i in range(count))
        sent = _send_what_fits(wire, frames)
        small_budget.until_on_loop(
            lambda: (
                server.stats.requests - before >= count
                or any("inflight" in c._pauses for c in server.connections)
            )
        )
        waiting = server.stats.requests - before
        assert waiting <= 1 * MiB // WAITING_FETCH_BYTES + 1, f"{waiting} long polls held"
        _assert_serves_others(small_budget)

        server.engine.produce(TOPIC, 0, BATCH)
        wire.send_raw(frames[sent:])
        for index in range(count):
            correlation_id, answer = wire.receive(FetchResponse)
            assert correlation_id == 100 + index
            assert _records_bytes(answer) == len(BATCH)


def test_pipelined_requests_whose_answers_are_not_read_stop_being_handled(
    many_partitions: InProcessServer,
) -> None:
    """3,000 Metadata requests of 40 bytes for a topic of 1,000 partitions,
    sent at once: each answer is some 40 KiB, 120 MiB in all. Once the
    client's socket stops taking answers, the server handles no more of
    them until it does (the rest of what it read is held back, as the
    socket's unread bytes are); then every one is answered, in order."""
    count = 3000
    with _not_reading(many_partitions) as wire:
        wire.request(_metadata())
        before = many_partitions.server.stats.requests
        frames = b"".join(encode_request(_metadata(), 100 + i) for i in range(count))
        sent = _send_what_fits(wire, frames)
        handled = _settled(many_partitions, before, count)
        assert handled < count // 4, f"{handled} of {count} requests handled with no answer read"
        _assert_serves_others(many_partitions)

        wire.send_raw(frames[sent:])
        for index in range(count):
            correlation_id, answer = wire.receive(MetadataResponse)
            assert correlation_id == 100 + index
            assert len(answer.topics[0].partitions) == 1000
