"""DescribeClientQuotas and AlterClientQuotas over the wire, against
``tidelog serve`` in a child process: Kafka's validation and errors, the
filters' matching, validate_only, and quotas that survive a restart."""

from __future__ import annotations

import datetime
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kio.index import load_request_schema

import engine
import native
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server.config import ServerConfig
from engine.server.handlers.common import MAX_RECORDS_PER_REQUEST
from engine.server.quotas import WINDOW_SAMPLES
from native import RecordSpec
from tests.server.catalog_faults import fail_next_catalog_write
from tests.server.conftest import ServerProcess, quiet_librdkafka
from tests.server.in_process import InProcessServer
from tests.server.wire import CLIENT_ID, Wire, build, fetch_from_start

EXACT, DEFAULT, SPECIFIED = 0, 1, 2


def alter(
    wire: Wire,
    entries: list[tuple[dict[str, str | None], dict[str, float | None]]],
    *,
    validate_only: bool = False,
    version: int = 1,
) -> list[tuple[int, str | None]]:
    """(error code, message) per entry; a None value removes the key."""
    request = build(
        load_request_schema(ApiKey.ALTER_CLIENT_QUOTAS, version),
        entries=[
            {
                "entity": [{"entity_type": t, "entity_name": n} for t, n in entity.items()],
                "ops": [
                    {"key": k, "value": 0.0 if v is None else v, "remove": v is None}
                    for k, v in ops.items()
                ],
            }
            for entity, ops in entries
        ],
        validate_only=validate_only,
    )
    response = wire.request(request)
    return [(int(e.error_code), e.error_message) for e in response.entries]


def describe(
    wire: Wire, components: list[tuple[str, int, str | None]], *, strict: bool = False
) -> Any:
    request = build(
        load_request_schema(ApiKey.DESCRIBE_CLIENT_QUOTAS, 1),
        components=[{"entity_type": t, "match_type": m, "match": n} for t, m, n in components],
        strict=strict,
    )
    return wire.request(request)


def described(
    wire: Wire, components: list[tuple[str, int, str | None]], **kw: Any
) -> dict[tuple[tuple[str, str | None], ...], dict[str, float]]:
    response = describe(wire, components, **kw)
    assert response.error_code == KafkaCode.NONE, response.error_message
    return {
        tuple(sorted((e.entity_type, e.entity_name) for e in entry.entity)): {
            v.key: v.value for v in entry.values
        }
        for entry in response.entries
    }


def test_quotas_are_set_described_by_filter_and_removed(kafka_server: ServerProcess) -> None:
    with Wire(kafka_server.bootstrap) as wire:
        assert (
            alter(
                wire,
                [
                    ({"user": "alice", "client-id": "app"}, {"producer_byte_rate": 1024.0}),
                    ({"user": "alice"}, {"consumer_byte_rate": 2048.0, "request_percentage": 25.0}),
                    ({"user": None}, {"producer_byte_rate": 4096.0}),
                    ({"client-id": None}, {"controller_mutation_rate": 10.0}),
                ],
            )
            == [(0, None)] * 4
        )
        alice = described(wire, [("user", EXACT, "alice")])
        assert alice == {
            (("client-id", "app"), ("user", "alice")): {"producer_byte_rate": 1024.0},
            (("user", "alice"),): {"consumer_byte_rate": 2048.0, "request_percentage": 25.0},
        }
        # strict: only entities with exactly the filter's types
        assert list(described(wire, [("user", EXACT, "alice")], strict=True)) == [
            (("user", "alice"),)
        ]
        assert described(wire, [("user", DEFAULT, None)]) == {
            (("user", None),): {"producer_byte_rate": 4096.0}
        }
        assert set(described(wire, [("user", SPECIFIED, None)])) == set(alice)
        assert list(described(wire, [("client-id", DEFAULT, None)])) == [(("client-id", None),)]
        assert set(described(wire, [])) >= set(alice)  # no component: every entity
        assert alter(wire, [({"user": "alice"}, {"request_percentage": None})]) == [(0, None)]
        assert described(wire, [("user", EXACT, "alice")], strict=True) == {
            (("user", "alice"),): {"consumer_byte_rate": 2048.0}
        }
        # removing an entity's last quota removes the entity
        assert alter(wire, [({"client-id": None}, {"controller_mutation_rate": None})]) == [
            (0, None)
        ]
        assert described(wire, [("client-id", DEFAULT, None)], strict=True) == {}
        # the default user's byte rate would throttle this module's other clients
        assert alter(wire, [({"user": None}, {"producer_byte_rate": None})]) == [(0, None)]


def test_validate_only_checks_and_writes_nothing(kafka_server: ServerProcess) -> None:
    with Wire(kafka_server.bootstrap) as wire:
        assert alter(
            wire, [({"user": "vo"}, {"producer_byte_rate": 100.0})], validate_only=True
        ) == [(0, None)]
        assert described(wire, [("user", EXACT, "vo")]) == {}
        [(code, _)] = alter(wire, [({"user": "vo"}, {"bogus": 1.0})], validate_only=True)
        assert code == KafkaCode.INVALID_REQUEST


def test_bad_entities_and_quotas_get_invalid_request(kafka_server: ServerProcess) -> None:
    with Wire(kafka_server.bootstrap) as wire:
        bad: list[tuple[dict[str, str | None], dict[str, float | None]]] = [
            ({"user": "x1"}, {"no_such_quota": 1.0}),  # an unknown key
            ({"group": "x"}, {"producer_byte_rate": 1.0}),  # an unknown entity type
            ({}, {"producer_byte_rate": 1.0}),  # no entity
            ({"user": ""}, {"producer_byte_rate": 1.0}),  # an empty name
            ({"user": "x2"}, {"producer_byte_rate": 1.5}),  # a byte rate is whole
            ({"user": "x3"}, {"consumer_byte_rate": 0.0}),  # a rate is positive
            ({"user": "x4"}, {"request_percentage": -5.0}),
            ({"user": "x5"}, {"request_percentage": float("nan")}),  # Kafka would take it
            ({"user": "x6"}, {"producer_byte_rate": float("inf")}),  # too large for a long
            ({"user": "x7"}, {"consumer_byte_rate": 1e19}),
        ]  # each entity once: one named twice is refused as such
        fine = ({"user": "fine"}, {"producer_byte_rate": 10.0})
        answers = alter(wire, [*bad, fine])
        assert [code for code, _ in answers] == [KafkaCode.INVALID_REQUEST] * len(bad) + [0]
        assert all(message for _, message in answers[:-1])
        # one bad entry refuses only its own entity
        assert described(wire, [("user", EXACT, "fine")]) == {
            (("user", "fine"),): {"producer_byte_rate": 10.0}
        }
        for name in [f"x{i}" for i in range(1, 8)]:
            assert described(wire, [("user", EXACT, name)]) == {}


def test_a_quota_too_small_for_its_throttle_time_throttles_the_longest_time(
    tmp_path: Path,
) -> None:
    """Kafka takes any positive double as a request_percentage or a
    controller_mutation_rate; one as small as 5e-324 makes the throttle
    time infinite, which the server answers as its longest throttle (the
    request quota's: 1 s, as Kafka caps it) instead of closing the
    connection of every client under that quota."""
    with engine.open(tmp_path / "node") as opened:
        server = InProcessServer(opened)
        try:
            tiny = [
                {"key": "request_percentage", "value": 5e-324, "remove": False},
                {"key": "controller_mutation_rate", "value": 5e-324, "remove": False},
            ]
            request = build(
                load_request_schema(ApiKey.ALTER_CLIENT_QUOTAS, 1),
                entries=[{"entity": [{"entity_type": "user", "entity_name": None}], "ops": tiny}],
                validate_only=False,
            )
            with Wire(server.bootstrap) as wire:
                response = wire.request(request)  # measured against the quota it sets
                assert [e.error_code for e in response.entries] == [KafkaCode.NONE]
                # an answer made on the admin thread carries it, as does
                # one made on the event loop
                assert response.throttle_time == datetime.timedelta(seconds=1)
                throttled = describe(wire, [])
                assert throttled.throttle_time == datetime.timedelta(seconds=1)
                # muted for it, the connection kept
                assert server.server.request_metrics.throttles[ApiKey.ALTER_CLIENT_QUOTAS] == 1
                assert not wire.closed_by_server(timeout=0.5)
        finally:
            server.stop()


def test_a_request_altering_several_entities_is_written_all_or_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kafka's controller commits one AlterClientQuotas' records as one
    atomic batch: a store failure while they are written leaves none of
    them in force, and each valid entry is answered with it."""
    entries: list[tuple[dict[str, str | None], dict[str, float | None]]] = [
        ({"user": "first"}, {"producer_byte_rate": 1024.0}),
        ({"user": "bad"}, {"producer_byte_rate": 0.5}),  # refused on its own
        ({"user": "second"}, {"consumer_byte_rate": 2048.0}),
    ]
    with engine.open(tmp_path / "node") as opened:
        server = InProcessServer(opened)
        try:
            catalog = opened.catalog
            fail_next_catalog_write(monkeypatch, catalog)
            storage = KafkaCode.KAFKA_STORAGE_ERROR
            with Wire(server.bootstrap) as wire:
                failed = [code for code, _ in alter(wire, entries)]
                assert failed == [storage, KafkaCode.INVALID_REQUEST, storage]
                assert described(wire, [("user", SPECIFIED, None)]) == {}
                assert [code for code, _ in alter(wire, entries)][::2] == [KafkaCode.NONE] * 2
                assert described(wire, [("user", SPECIFIED, None)]) == {
                    (("user", "first"),): {"producer_byte_rate": 1024.0},
                    (("user", "second"),): {"consumer_byte_rate": 2048.0},
                }
        finally:
            server.stop()


def test_more_quota_changes_than_kafkas_bound_are_refused_whole(
    kafka_server: ServerProcess,
) -> None:
    """Kafka's controller writes at most 10,000 records for one request (a
    record per quota changed) and refuses the whole of a larger one with
    POLICY_VIOLATION; each entry here is also a catalog write."""
    both = {"producer_byte_rate": 1024.0, "consumer_byte_rate": 1024.0}
    entries: list[tuple[dict[str, str | None], dict[str, float | None]]] = [
        ({"user": f"bulk-{i}"}, dict(both)) for i in range(5_001)
    ]
    with Wire(kafka_server.bootstrap) as wire:
        answers = alter(wire, entries)
        assert {code for code, _ in answers} == {KafkaCode.POLICY_VIOLATION}
        assert len(answers) == len(entries)
        assert described(wire, [("user", EXACT, "bulk-0")]) == {}


def test_a_bad_filter_gets_invalid_request(kafka_server: ServerProcess) -> None:
    with Wire(kafka_server.bootstrap) as wire:
        for components in (
            [("user", EXACT, None)],  # exact match of nothing
            [("user", DEFAULT, "alice")],  # a default with a name
            [("user", EXACT, "a"), ("user", EXACT, "b")],  # a type twice
            [("", SPECIFIED, None)],
            [("user", 7, None)],
        ):
            response = describe(wire, components)
            assert response.error_code == KafkaCode.INVALID_REQUEST, components
            assert response.error_message and response.entries is None


def test_quotas_survive_a_restart(own_server: ServerProcess) -> None:
    entity = {"user": "kept", "client-id": None}
    with Wire(own_server.bootstrap) as wire:
        assert alter(wire, [(entity, {"consumer_byte_rate": 5000.0})], version=0) == [(0, None)]
    own_server.restart()
    with Wire(own_server.bootstrap) as wire:
        assert described(wire, [("user", EXACT, "kept")]) == {
            (("client-id", None), ("user", "kept")): {"consumer_byte_rate": 5000.0}
        }


def _produce(bootstrap: str, topic: str, client_id: str, count: int, size: int) -> list[float]:
    """Sends ``count`` values of ``size`` random bytes, one at a time waiting
    for each, and returns the throttle times (seconds) the server answered."""
    throttles: list[float] = []
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "linger.ms": 0,
            "throttle_cb": lambda event: throttles.append(event.throttle_time),
            **quiet_librdkafka(),
        }
    )
    for _ in range(count):
        producer.produce(topic, os.urandom(size))
        assert producer.flush(60) == 0
    producer.poll(0)  # the last answer's throttle callback
    return throttles


@pytest.mark.slow  # about 15 s: the quota's window is 11 s
def test_a_producer_past_its_byte_rate_is_throttled_to_it(
    own_server: ServerProcess, topic: str
) -> None:
    # 30 records, though each past the window's 20 waits out a throttle:
    # with 24, a rate that forgets its samples after 1 s, not 11, passed
    # (docs/testing.md, "The suite's time, tenth pass").
    quota, count, size = 20_000.0, 30, 10_000
    with Wire(own_server.bootstrap) as wire:
        assert alter(wire, [({"client-id": "slow"}, {"producer_byte_rate": quota})]) == [(0, None)]
    # another client id is not under the quota: never throttled
    assert _produce(own_server.bootstrap, topic, "fast", count, size) == []
    throttles = _produce(own_server.bootstrap, topic, "slow", count, size)
    # Kafka's arithmetic: with the rate measured over the whole window, the
    # throttles add up to at least the time the bytes take at the quota
    # less the window that absorbed the first of them.
    assert throttles and sum(throttles) >= count * size / quota - 11
    assert max(throttles) <= 11  # never past the quota window


@pytest.mark.slow  # about 11 s: the quota's window is 11 s
def test_a_consumer_past_its_byte_rate_is_throttled_and_misses_nothing(
    own_server: ServerProcess, topic: str
) -> None:
    """confluent-kafka under a consumer byte rate that lets four of five
    records through in the first window: librdkafka reports the throttle
    times answered, and every record arrives, in order, however many
    answers were empty."""
    # Four records and their framing in the first window (a Fetch asks for
    # at most the quota over 10 s), the fifth answered once the five's bytes
    # are within the quota: after 50 KB / 4.5 KB/s, 11 s from the first.
    count, size, quota = 5, 10_000, 4_500.0
    assert _produce(own_server.bootstrap, topic, "writer", count, size) == []
    with Wire(own_server.bootstrap) as wire:
        assert alter(wire, [({"client-id": "reader"}, {"consumer_byte_rate": quota})]) == [
            (0, None)
        ]
    throttles: list[float] = []
    consumer = Consumer(
        {
            "bootstrap.servers": own_server.bootstrap,
            "client.id": "reader",
            "group.id": f"g-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "throttle_cb": lambda event: throttles.append(event.throttle_time),
            **quiet_librdkafka(),
        }
    )
    offsets: list[int] = []
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])  # no group to join: quicker
        for _ in range(240):
            if len(offsets) == count:
                break
            message = consumer.poll(0.25)
            if message is not None and message.error() is None:
                assert len(message.value() or b"") == size
                offsets.append(message.offset())
    finally:
        consumer.close()
    assert offsets == list(range(count))
    assert throttles and max(throttles) <= 11


def _fetch(wire: Wire, topic: str) -> Any:
    return wire.request(fetch_from_start(topic))


def test_a_fetch_past_the_consumer_byte_rate_is_answered_empty_with_its_throttle_time(
    kafka_server: ServerProcess, topic: str
) -> None:
    assert _produce(kafka_server.bootstrap, topic, "writer", 10, 10_000) == []
    with Wire(kafka_server.bootstrap) as wire:
        unthrottled = _fetch(wire, topic)
        size = len(unthrottled.responses[0].partitions[0].records)
        assert size >= 100_000 and unthrottled.throttle_time.total_seconds() == 0
        # A quota of a fifth of those bytes in a window (the 10 s minimum),
        # for the wire tests' client id only: the next answer is cut to it,
        # the one after that is past it.
        quota = float(size // 50)
        assert alter(wire, [({"client-id": CLIENT_ID}, {"consumer_byte_rate": quota})]) == [
            (0, None)
        ]
        cut = _fetch(wire, topic)
        assert 0 < len(cut.responses[0].partitions[0].records) < size
        assert cut.throttle_time.total_seconds() == 0
        throttled = _fetch(wire, topic)
        # as Kafka: the answer goes out empty (FetchContext.getThrottledResponse)
        # with the throttle time, (rate - quota) / quota * window
        assert throttled.error_code == KafkaCode.NONE
        assert throttled.responses == ()
        assert 0 < throttled.throttle_time.total_seconds() <= 11
        # another connection is served while this one is muted
        with Wire(kafka_server.bootstrap) as other:
            assert alter(other, [({"client-id": "other"}, {"consumer_byte_rate": 1.0})]) == [
                (0, None)
            ]
        # the muted connection is read again once the throttle has passed,
        # and (the other quota set since, rates are measured afresh) its
        # offsets are served: the throttled answer's bytes were not counted
        again = _fetch(wire, topic)
        assert 0 < len(again.responses[0].partitions[0].records) < size
    with Wire(kafka_server.bootstrap) as wire:
        assert alter(wire, [({"client-id": CLIENT_ID}, {"consumer_byte_rate": None})]) == [
            (0, None)
        ]


def test_a_throttled_connection_is_not_read_until_its_throttle_has_passed(
    tmp_path: Path,
) -> None:
    """KIP-219: the server mutes the connection for the throttle time, so a
    client that does not hold back waits anyway. The user is the
    connection's principal's name."""
    opened = engine.open(tmp_path / "node", "file://" + str(tmp_path / "bucket"))
    server = InProcessServer(opened, principal="User:alice")
    try:
        opened.create_topic("t", 1)
        opened.produce("t", 0, native.encode_batch([RecordSpec(0, None, os.urandom(100_000))]))
        with Wire(server.bootstrap) as wire:
            size = len(_fetch(wire, "t").responses[0].partitions[0].records)
            # the next answer's rate, over the 10 s minimum window, is 20 %
            # past the quota: a throttle of about 2 s
            opened.client_quotas.alter((("user", "alice"),), {"consumer_byte_rate": size // 12})
            throttle = _fetch(wire, "t").throttle_time.total_seconds()
            assert 1 < throttle <= 11
            stats = server.server.stats
            read = stats.requests
            wire.send(build(load_request_schema(ApiKey.API_VERSIONS, 3)))
            wire.sock.settimeout(min(throttle / 2, 1.0))
            with pytest.raises(TimeoutError):
                wire.sock.recv(1, socket.MSG_PEEK)
            assert stats.requests == read  # not even read
            wire.sock.settimeout(throttle + 5)
            wire.read_frame()  # read, and answered, once the throttle has passed
            assert stats.requests == read + 1
    finally:
        server.stop()
        opened.close()


def test_a_fetch_is_cut_to_what_the_quota_allows_in_a_window(tmp_path: Path) -> None:
    """As Kafka's handleFetchRequest: a Fetch asks for no more than the
    consumer byte rate over the window less one sample, so an answer within
    it is sent whole; the next, past the quota, is sent empty and its bytes
    are not counted: after the throttle the same offsets are served."""
    opened = engine.open(tmp_path / "node", "file://" + str(tmp_path / "bucket"))
    server = InProcessServer(opened)
    try:
        opened.create_topic("t", 1)
        for _ in range(10):
            opened.produce("t", 0, native.encode_batch([RecordSpec(0, None, os.urandom(10_000))]))
        # 35 000 bytes in a window: three of the ten batches
        opened.client_quotas.alter((("client-id", CLIENT_ID),), {"consumer_byte_rate": 3_500})
        with Wire(server.bootstrap) as wire:
            first = _fetch(wire, "t")
            records = first.responses[0].partitions[0].records
            assert 3 * 10_000 < len(records) <= 35_000
            assert first.throttle_time.total_seconds() == 0
            second = _fetch(wire, "t")
            assert second.responses == ()
            throttle = second.throttle_time.total_seconds()
            assert 0 < throttle <= 11
            # Kafka's arithmetic, both answers' bytes over the 10 s minimum
            # window: (rate - quota) / quota * window
            window = WINDOW_SAMPLES - 1
            rate = 2 * len(records) / window
            assert throttle == pytest.approx((rate - 3_500) / 3_500 * window, abs=0.5)
            # then the empty answer's bytes are taken back: only the first count
            counted: list[float] = []
            server.until_on_loop(
                lambda: (
                    not counted.append(
                        server.server.quotas.rate("consumer_byte_rate", "", CLIENT_ID)
                    )
                )
            )
            assert counted[0] == pytest.approx(len(records) / window, rel=0.02)
    finally:
        server.stop()
        opened.close()


def test_a_client_past_its_request_percentage_is_throttled(tmp_path: Path) -> None:
    """Kafka's request quota: the server's time spent on a client's
    requests, as a share of a thread's, against request_percentage. A
    share no request can stay within throttles the first answer; another
    client id is not under it."""
    with engine.open(tmp_path / "node") as opened:
        server = InProcessServer(opened)
        try:
            opened.client_quotas.alter((("client-id", CLIENT_ID),), {"request_percentage": 1e-9})
            metadata = build(load_request_schema(ApiKey.METADATA, 12), topics=None)
            with Wire(server.bootstrap) as wire:
                assert 0 < wire.request(metadata).throttle_time.total_seconds() <= 11
            opened.client_quotas.alter((("client-id", CLIENT_ID),), {"request_percentage": None})
            opened.client_quotas.alter((("client-id", "other"),), {"request_percentage": 1e-9})
            with Wire(server.bootstrap) as wire:
                assert wire.request(metadata).throttle_time.total_seconds() == 0
        finally:
            server.stop()


def test_an_unanswered_produce_past_its_quota_still_mutes_its_connection(
    tmp_path: Path,
) -> None:
    """acks=0 has no answer to carry a throttle time: as in Kafka, its
    bytes count all the same and the connection is muted."""
    opened = engine.open(tmp_path / "node", "file://" + str(tmp_path / "bucket"))
    server = InProcessServer(opened)
    try:
        opened.create_topic("t", 1)
        batch = native.encode_batch([RecordSpec(0, None, os.urandom(100_000))])
        # one request's bytes, over the 10 s minimum window, pass the quota
        # by 20 %: a throttle of about 2 s
        opened.client_quotas.alter(
            (("client-id", CLIENT_ID),), {"producer_byte_rate": 100_000 // 12}
        )
        with Wire(server.bootstrap) as wire:
            wire.send(
                build(
                    load_request_schema(ApiKey.PRODUCE, 9),
                    acks=0,
                    timeout=datetime.timedelta(seconds=30),
                    topic_data=[{"name": "t", "partition_data": [{"index": 0, "records": batch}]}],
                )
            )
            # requests are read while others are served: wait until the
            # Produce is counted (and its connection muted, in the same step)
            server.until_on_loop(
                lambda: server.server.quotas.rate("producer_byte_rate", "", CLIENT_ID) > 0
            )
            stats = server.server.stats
            wire.send(build(load_request_schema(ApiKey.API_VERSIONS, 3)))
            wire.sock.settimeout(1.0)
            with pytest.raises(TimeoutError):
                wire.sock.recv(1, socket.MSG_PEEK)
            assert stats.requests == 1  # the Produce only
            wire.sock.settimeout(15)
            wire.read_frame()  # read, and answered, once the throttle has passed
            assert stats.requests == 2
            assert opened.offsets("t", 0)[1] == 1  # the record was written
    finally:
        server.stop()
        opened.close()


def test_quotas_need_the_cluster_configs_operations(tmp_path: Path) -> None:
    """As in Kafka: ALTER_CONFIGS on the cluster to alter, DESCRIBE_CONFIGS
    to describe; refused, nothing is stored."""
    config = ServerConfig(authorizer="acl", super_users=("User:admin",))
    with engine.open(tmp_path / "node") as opened:
        server = InProcessServer(opened, config=config, principal="User:mallory")
        try:
            with Wire(server.bootstrap) as wire:
                [(code, _)] = alter(wire, [({"user": "mallory"}, {"producer_byte_rate": 1e9})])
                assert code == KafkaCode.CLUSTER_AUTHORIZATION_FAILED
                # Kafka's KafkaApis refuses it before its controller counts
                # records: past that bound too, the refusal is the cluster's
                too_many = {f"key-{i}": 1.0 for i in range(MAX_RECORDS_PER_REQUEST + 1)}
                [(code, _)] = alter(wire, [({"user": "mallory"}, too_many)])
                assert code == KafkaCode.CLUSTER_AUTHORIZATION_FAILED
                refused = describe(wire, [])
                assert refused.error_code == KafkaCode.CLUSTER_AUTHORIZATION_FAILED
                assert refused.entries is None
            assert opened.client_quotas.entities() == {}
        finally:
            server.stop()


def test_an_entity_named_twice_is_answered_once_and_altered_by_neither(
    kafka_server: ServerProcess,
) -> None:
    """Kafka's ClientQuotaControlManager answers by entity, one result
    each, and an entity named again INVALID_REQUEST "Ignoring duplicate
    entity"; here neither naming is applied (Kafka applies the first,
    which its answer calls refused). The request's other entities are."""
    entries: list[tuple[dict[str, str | None], dict[str, float | None]]] = [
        ({"user": "twice"}, {"producer_byte_rate": 1024.0}),
        ({"user": "once"}, {"consumer_byte_rate": 2048.0}),
        ({"user": "twice"}, {"producer_byte_rate": 4096.0}),
    ]
    with Wire(kafka_server.bootstrap) as wire:
        answers = alter(wire, entries)
        assert answers == [
            (
                KafkaCode.INVALID_REQUEST,
                "Ignoring duplicate entity ClientQuotaEntity(entries={user=twice})",
            ),
            (KafkaCode.NONE, None),
        ]
        assert described(wire, [("user", EXACT, "twice")]) == {}
        assert described(wire, [("user", EXACT, "once")]) == {
            (("user", "once"),): {"consumer_byte_rate": 2048.0}
        }
