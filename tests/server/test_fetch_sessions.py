"""Incremental fetch sessions (KIP-227) on the wire, as Kafka answers them:
a full fetch with epoch 0 opens a session; incremental fetches name only
what changed and are answered only with partitions that have something
new; forgotten partitions leave the session; each session error gets
Kafka's code; epoch -1 closes a session; the cache's slots and the
per-session partition cap hold; and a long poll of an incremental fetch
wakes for data on any partition of the session."""

from __future__ import annotations

import datetime
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from engine.protocol.apis import request_schema
from engine.protocol.kafka_code import KafkaCode
from tests.server.conftest import ServerProcess
from tests.server.test_bad_input import batch
from tests.server.wire import Wire, build

MiB = 1024 * 1024
PARTITIONS = 3
NAMES, IDS = 12, 13
"""A Fetch version that names topics, and one that uses topic ids."""


class Topic:
    """A topic made for one test, and how each Fetch version names it."""

    def __init__(self, wire: Wire, name: str, partitions: int = PARTITIONS) -> None:
        response = wire.request(
            build(
                request_schema(19, 7),
                timeout=datetime.timedelta(seconds=10),
                topics=[{"name": name, "num_partitions": partitions, "replication_factor": 1}],
            )
        )
        [created] = response.topics
        assert created.error_code == 0, created
        self.name = name
        self.id: uuid.UUID = created.topic_id

    def key(self, version: int) -> Any:
        return self.id if version >= IDS else self.name


def produce(wire: Wire, topic: Topic, partition: int, value: bytes = b"v" * 50) -> None:
    response = wire.request(
        build(
            request_schema(0, 9),
            acks=-1,
            timeout=datetime.timedelta(seconds=10),
            topic_data=[
                {
                    "name": topic.name,
                    "partition_data": [{"index": partition, "records": batch(value)}],
                }
            ],
        )
    )
    assert response.responses[0].partition_responses[0].error_code == 0


def fetch(
    version: int,
    *,
    session_id: int,
    epoch: int,
    topics: dict[Any, dict[int, int]] | None = None,
    forgotten: dict[Any, list[int]] | None = None,
    max_wait_ms: int = 0,
    min_bytes: int = 0,
    leader_epoch: int = -1,
) -> Any:
    """A Fetch of ``topics`` (topic key -> partition -> fetch offset)."""
    key = "topic_id" if version >= IDS else "topic"
    return build(
        request_schema(1, version),
        replica_id=-1,
        max_wait=datetime.timedelta(milliseconds=max_wait_ms),
        min_bytes=min_bytes,
        max_bytes=64 * MiB,
        session_id=session_id,
        session_epoch=epoch,
        topics=[
            {
                key: topic,
                "partitions": [
                    {
                        "partition": partition,
                        "current_leader_epoch": leader_epoch,
                        "fetch_offset": offset,
                        "last_fetched_epoch": -1,
                        "log_start_offset": -1,
                        "partition_max_bytes": MiB,
                    }
                    for partition, offset in partitions.items()
                ],
            }
            for topic, partitions in (topics or {}).items()
        ],
        forgotten_topics_data=[
            {key: topic, "partitions": partitions}
            for topic, partitions in (forgotten or {}).items()
        ],
    )


def answered(response: Any) -> dict[tuple[Any, int], Any]:
    """The partitions a Fetch response carries, by (topic key, partition)."""
    return {
        (t.topic_id if hasattr(t, "topic_id") else t.topic, p.partition_index): p
        for t in response.responses
        for p in t.partitions
    }


def open_session(wire: Wire, version: int, topic: Topic, partitions: int = PARTITIONS) -> int:
    """A new session over the topic's partitions, from offset 0."""
    key = topic.key(version)
    response = wire.request(
        fetch(version, session_id=0, epoch=0, topics={key: dict.fromkeys(range(partitions), 0)})
    )
    assert response.error_code == 0
    assert set(answered(response)) == {(key, p) for p in range(partitions)}
    assert response.session_id != 0
    return int(response.session_id)


@pytest.fixture
def wire(kafka_server: ServerProcess) -> Iterator[Wire]:
    with Wire(kafka_server.bootstrap, timeout=30) as connection:
        yield connection


@pytest.mark.parametrize("version", [NAMES, IDS])
def test_incremental_fetches_carry_only_partitions_with_something_new(
    wire: Wire, topic: str, version: int
) -> None:
    t = Topic(wire, topic)
    key = t.key(version)
    produce(wire, t, 0)
    produce(wire, t, 1)
    session = open_session(wire, version, t)

    # The client moves past what it got; nothing else changed: nothing is sent.
    moved = wire.request(fetch(version, session_id=session, epoch=1, topics={key: {0: 1, 1: 1}}))
    assert (moved.error_code, moved.session_id) == (0, session)
    assert answered(moved) == {}

    # New data on a partition the request does not name: that partition alone.
    produce(wire, t, 2, b"new")
    fresh = wire.request(fetch(version, session_id=session, epoch=2))
    assert list(answered(fresh)) == [(key, 2)]
    assert answered(fresh)[key, 2].high_watermark == 1
    assert answered(fresh)[key, 2].records

    # Once read, it is quiet again, and so is everything else.
    quiet = wire.request(fetch(version, session_id=session, epoch=3, topics={key: {2: 1}}))
    assert answered(quiet) == {}


def test_a_partition_in_error_is_sent_every_time_and_once_more_when_it_clears(
    wire: Wire, topic: str
) -> None:
    """Kafka's rule: an error always goes out, and forgets the high watermark
    last sent, so the partition is sent again when the error is gone."""
    t = Topic(wire, topic, partitions=1)
    session = wire.request(fetch(NAMES, session_id=0, epoch=0, topics={t.name: {0: 0}})).session_id
    future_epoch = {t.name: {0: 0}}
    for epoch in (1, 2):
        response = wire.request(
            fetch(NAMES, session_id=session, epoch=epoch, topics=future_epoch, leader_epoch=1000)
            if epoch == 1
            else fetch(NAMES, session_id=session, epoch=epoch)
        )
        [partition] = answered(response).values()
        assert partition.error_code == KafkaCode.UNKNOWN_LEADER_EPOCH
    cleared = wire.request(fetch(NAMES, session_id=session, epoch=3, topics={t.name: {0: 0}}))
    [partition] = answered(cleared).values()
    assert (partition.error_code, partition.high_watermark) == (0, 0)
    assert answered(wire.request(fetch(NAMES, session_id=session, epoch=4))) == {}


@pytest.mark.parametrize("version", [NAMES, IDS])
def test_forgotten_partitions_leave_the_session_and_the_last_one_closes_it(
    wire: Wire, topic: str, version: int
) -> None:
    t = Topic(wire, topic)
    key = t.key(version)
    session = open_session(wire, version, t)
    forget_one = fetch(version, session_id=session, epoch=1, forgotten={key: [1]})
    assert answered(wire.request(forget_one)) == {}
    produce(wire, t, 1)
    assert answered(wire.request(fetch(version, session_id=session, epoch=2))) == {}
    produce(wire, t, 0)
    assert list(answered(wire.request(fetch(version, session_id=session, epoch=3)))) == [(key, 0)]

    closing = wire.request(fetch(version, session_id=session, epoch=4, forgotten={key: [0, 2]}))
    assert (closing.error_code, closing.session_id) == (0, 0)
    gone = wire.request(fetch(version, session_id=session, epoch=5))
    assert gone.error_code == KafkaCode.FETCH_SESSION_ID_NOT_FOUND


def test_session_errors_get_kafkas_codes(wire: Wire, topic: str) -> None:
    t = Topic(wire, topic)
    session = open_session(wire, IDS, t)

    unknown = wire.request(fetch(IDS, session_id=session ^ 0x5A5A5A, epoch=1))
    assert (unknown.error_code, unknown.session_id) == (KafkaCode.FETCH_SESSION_ID_NOT_FOUND, 0)
    assert unknown.responses == ()

    ahead = wire.request(fetch(IDS, session_id=session, epoch=2))
    assert ahead.error_code == KafkaCode.INVALID_FETCH_SESSION_EPOCH
    assert wire.request(fetch(IDS, session_id=session, epoch=1)).error_code == 0
    replayed = wire.request(fetch(IDS, session_id=session, epoch=1))
    assert replayed.error_code == KafkaCode.INVALID_FETCH_SESSION_EPOCH

    by_name = wire.request(fetch(NAMES, session_id=session, epoch=2))
    assert by_name.error_code == KafkaCode.FETCH_SESSION_TOPIC_ID_ERROR
    named_session = open_session(wire, NAMES, t)
    by_id = wire.request(fetch(IDS, session_id=named_session, epoch=1))
    assert by_id.error_code == KafkaCode.FETCH_SESSION_TOPIC_ID_ERROR
    assert wire.request(fetch(IDS, session_id=session, epoch=2)).error_code == 0


def test_epoch_minus_one_closes_a_session_and_epoch_zero_replaces_it(
    wire: Wire, topic: str
) -> None:
    t = Topic(wire, topic)
    everything = {t.id: dict.fromkeys(range(PARTITIONS), 0)}
    first = open_session(wire, IDS, t)
    replaced = wire.request(fetch(IDS, session_id=first, epoch=0, topics=everything))
    assert replaced.session_id not in {0, first}
    assert len(answered(replaced)) == PARTITIONS
    stale = wire.request(fetch(IDS, session_id=first, epoch=1))
    assert stale.error_code == KafkaCode.FETCH_SESSION_ID_NOT_FOUND

    closed = wire.request(fetch(IDS, session_id=replaced.session_id, epoch=-1, topics=everything))
    assert (closed.error_code, closed.session_id) == (0, 0)
    assert len(answered(closed)) == PARTITIONS
    after = wire.request(fetch(IDS, session_id=replaced.session_id, epoch=1))
    assert after.error_code == KafkaCode.FETCH_SESSION_ID_NOT_FOUND


def test_a_session_outlives_its_connection(kafka_server: ServerProcess, topic: str) -> None:
    with Wire(kafka_server.bootstrap) as first:
        t = Topic(first, topic)
        session = open_session(first, IDS, t)
    with Wire(kafka_server.bootstrap) as second:
        produce(second, t, 1)
        response = second.request(fetch(IDS, session_id=session, epoch=1))
    assert (response.error_code, list(answered(response))) == (0, [(t.id, 1)])


def test_partitions_that_do_not_exist_are_answered_but_not_kept(wire: Wire, topic: str) -> None:
    t = Topic(wire, topic, partitions=1)
    nowhere = uuid.uuid4()
    session = open_session(wire, IDS, t, partitions=1)
    named = {nowhere: {0: 0}, t.id: {7: 0}}
    response = wire.request(fetch(IDS, session_id=session, epoch=1, topics=named))
    errors = {k: p.error_code for k, p in answered(response).items()}
    assert errors == {
        (nowhere, 0): KafkaCode.UNKNOWN_TOPIC_ID,
        (t.id, 7): KafkaCode.UNKNOWN_TOPIC_OR_PARTITION,
    }
    assert answered(wire.request(fetch(IDS, session_id=session, epoch=2))) == {}


def test_an_incremental_long_poll_wakes_for_data_on_any_session_partition(
    kafka_server: ServerProcess, wire: Wire, topic: str
) -> None:
    t = Topic(wire, topic)
    session = open_session(wire, IDS, t)

    def produce_later() -> None:
        with Wire(kafka_server.bootstrap) as writer:
            produce(writer, t, 2, b"wake")

    writer = threading.Timer(0.3, produce_later)
    writer.start()
    try:
        # The wire's own timeout (30 s) is far below max_wait: only the
        # produce can end this wait in time.
        response = wire.request(
            fetch(IDS, session_id=session, epoch=1, max_wait_ms=120_000, min_bytes=1)
        )
    finally:
        writer.join(10)
    assert list(answered(response)) == [(t.id, 2)]
    assert answered(response)[t.id, 2].records


SMALL_CACHE = """
[server]
"max.incremental.fetch.session.cache.slots" = 1
max_incremental_fetch_session_partitions = 2
"""


@pytest.fixture(scope="module")
def small_cache_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("small-cache")
    config = root / "tidelog.toml"
    config.write_text(SMALL_CACHE)
    server = ServerProcess(root / "data", args=["--config", str(config)]).start()
    yield server
    server.end_at_teardown(graceful=True)


def test_the_cache_holds_its_slots_and_each_session_its_partition_cap(
    small_cache_server: ServerProcess, topic: str
) -> None:
    with Wire(small_cache_server.bootstrap) as wire:
        t = Topic(wire, topic)
        # Over the cap of two partitions: no session, every partition answered.
        too_big = wire.request(fetch(IDS, session_id=0, epoch=0, topics={t.id: {0: 0, 1: 0, 2: 0}}))
        assert (too_big.session_id, len(answered(too_big))) == (0, 3)

        session = open_session(wire, IDS, t, partitions=2)
        # The one slot is taken by a session as large and newer than the
        # eviction time: no second session.
        other = wire.request(fetch(IDS, session_id=0, epoch=0, topics={t.id: {0: 0, 1: 0}}))
        assert (other.error_code, other.session_id, len(answered(other))) == (0, 0, 2)

        # Growing past the cap closes the session; this fetch is answered whole.
        grown = wire.request(fetch(IDS, session_id=session, epoch=1, topics={t.id: {2: 0}}))
        assert (grown.error_code, grown.session_id, len(answered(grown))) == (0, 0, 3)
        gone = wire.request(fetch(IDS, session_id=session, epoch=2))
        assert gone.error_code == KafkaCode.FETCH_SESSION_ID_NOT_FOUND


def test_a_long_poll_answered_after_a_later_epoch_gets_the_epoch_error_and_no_partitions(
    kafka_server: ServerProcess, wire: Wire, topic: str
) -> None:
    # A client (or a peer) that sends the session's next epoch before the
    # long poll of the one before is answered moves the session on: the
    # poll is answered as Kafka's IncrementalFetchContext answers it then,
    # INVALID_FETCH_SESSION_EPOCH with no partitions, and the server serves on.
    t = Topic(wire, topic)
    session = open_session(wire, IDS, t)
    polled: list[Any] = []

    def long_poll() -> None:
        with Wire(kafka_server.bootstrap, timeout=30) as poller:
            polled.append(
                poller.request(
                    fetch(IDS, session_id=session, epoch=1, max_wait_ms=120_000, min_bytes=1)
                )
            )

    poller = threading.Thread(target=long_poll)
    poller.start()
    try:
        # The poll's context is made (the session at epoch 2) before the next
        # epoch is sent: retried until the session takes epoch 2.
        deadline = time.monotonic() + 20
        while True:
            response = wire.request(fetch(IDS, session_id=session, epoch=2))
            if response.error_code == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert response.error_code == 0
        produce(wire, t, 1, b"wake")
    finally:
        poller.join(30)
    [late] = polled
    assert late.error_code == KafkaCode.INVALID_FETCH_SESSION_EPOCH
    assert late.session_id == session
    assert answered(late) == {}
    # The session went on from epoch 2 and the server still serves it.
    response = wire.request(fetch(IDS, session_id=session, epoch=3))
    assert response.error_code == 0
    assert list(answered(response)) == [(t.id, 1)]
