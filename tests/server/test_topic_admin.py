"""Topic administration at scale, over real sockets.

A CreateTopics of thousands of topics is one manifest commit, runs off the
event loop (produce on other connections keeps being answered meanwhile),
and a SIGTERM in the middle of one shuts the server down with every topic
of the request there after a restart, or none. Auto-creation through
Metadata and Produce keeps Kafka's bound of 10,000 metadata records per
request: beyond it nothing is created and every unknown topic is answered
UNKNOWN_TOPIC_OR_PARTITION (Kafka 4's broker asks its controller for all
of them in one request, which the controller refuses whole).
"""

from __future__ import annotations

import contextlib
import datetime
import select
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.protocol.apis import request_schema
from tests.engine.recording_store import NO_UPLOADS, RecordingStore
from tests.server.conftest import ServerProcess
from tests.server.in_process import InProcessServer
from tests.server.test_bad_input import (
    INVALID_REQUEST,
    NONE,
    POLICY_VIOLATION,
    UNKNOWN_TOPIC_OR_PARTITION,
    all_metadata,
    batch,
    metadata,
    partition_error,
    produce,
)
from tests.server.wire import ConnectionClosed, Wire, build, response_schema_for

BIG = 5000
"""Topics of one partition in a request: the most Kafka's bound allows
(10,000 records, a topic and its partition being two)."""
SLOW = 120.0
"""How long a connection waits for a large request's answer."""


def create_topics(names: list[str], partitions: int = 1) -> Any:
    return build(
        request_schema(19, 7),
        topics=[
            {"name": name, "num_partitions": partitions, "replication_factor": -1} for name in names
        ],
        timeout=datetime.timedelta(seconds=60),
        validate_only=False,
    )


def delete_topics(names: list[str]) -> Any:
    return build(
        request_schema(20, 6),
        topics=[{"name": name, "topic_id": None} for name in names],
        timeout=datetime.timedelta(seconds=60),
    )


def listed(wire: Wire, prefix: str) -> dict[str, int]:
    """Topics whose name starts with ``prefix``: their partition counts
    (internal topics left out, as Kafka clients leave them out)."""
    return {
        t.name: len(t.partitions)
        for t in wire.request(all_metadata()).topics
        if t.name.startswith(prefix) and not t.is_internal
    }


def answered(wire: Wire) -> bool:
    return bool(select.select([wire.sock], [], [], 0)[0])


def produce_until_answered(admin: Wire, producer: Wire, topic: str, at_least: int = 0) -> int:
    """Produces to ``topic`` one request at a time until ``admin`` has its
    answer (and at least ``at_least`` times); returns how many were answered."""
    count = 0
    while count < at_least or not answered(admin):
        assert partition_error(producer.request(produce({topic: batch()}))) == NONE
        count += 1
    return count


def test_produce_is_served_while_a_large_create_topics_runs(
    kafka_server: ServerProcess, topic: str
) -> None:
    with Wire(kafka_server.bootstrap, SLOW) as admin, Wire(kafka_server.bootstrap) as producer:
        assert producer.request(metadata(topic)).topics[0].error_code == NONE  # created
        request = create_topics([f"{topic}-{i}" for i in range(BIG)])
        admin.send(request)
        produced = produce_until_answered(admin, producer, topic)
        _, created = admin.receive(response_schema_for(request))
        assert [t.error_code for t in created.topics] == [NONE] * BIG
        # Served meanwhile, not after: a handler on the event loop held
        # every other connection until it finished.
        assert produced >= 3
        assert len(listed(producer, f"{topic}-")) == BIG


def test_sigterm_during_a_large_create_topics_exits_and_keeps_all_or_nothing(
    own_server: ServerProcess, topic: str
) -> None:
    prefix = f"{topic}-"
    with Wire(own_server.bootstrap, SLOW) as admin, Wire(own_server.bootstrap) as producer:
        producer.request(metadata(topic))
        admin.send(create_topics([f"{prefix}{i}" for i in range(BIG)]))
        produce_until_answered(admin, producer, topic, at_least=3)  # the request is read
        assert own_server.process is not None
        own_server.process.send_signal(signal.SIGTERM)
        # The wait is a guard against a hang, not a measurement: a server
        # stuck in the request (minutes, before) never gets here.
        assert own_server.process.wait(SLOW) == 0, own_server.log()
        own_server.process = None
        with contextlib.suppress(ConnectionClosed, OSError):
            admin.read_frame()  # answered before the shutdown, or closed by it
    own_server.start()
    with Wire(own_server.bootstrap) as wire:
        found = listed(wire, prefix)
        assert len(found) in (0, BIG)
        assert set(found.values()) <= {1}


def test_metadata_beyond_kafkas_bound_auto_creates_nothing(
    kafka_server: ServerProcess, topic: str
) -> None:
    with Wire(kafka_server.bootstrap, SLOW) as wire:
        many = [f"{topic}-many-{i}" for i in range(50_000)]
        response = wire.request(metadata(*many))
        assert [t.name for t in response.topics] == many
        assert {t.error_code for t in response.topics} == {UNKNOWN_TOPIC_OR_PARTITION}
        assert listed(wire, f"{topic}-many-") == {}
        # Within the bound they are all created, in one step.
        few = [f"{topic}-few-{i}" for i in range(200)]
        response = wire.request(metadata(*few))
        assert {t.error_code for t in response.topics} == {NONE}
        assert {len(t.partitions) for t in response.topics} == {1}
        assert listed(wire, f"{topic}-few-") == dict.fromkeys(few, 1)


def test_produce_beyond_kafkas_bound_auto_creates_nothing(
    kafka_server: ServerProcess, topic: str
) -> None:
    with Wire(kafka_server.bootstrap, SLOW) as wire:
        names = [f"{topic}-p-{i}" for i in range(6000)]
        response = wire.request(produce(dict.fromkeys(names, batch())))
        assert {partition_error(response, i) for i in range(len(names))} == {
            UNKNOWN_TOPIC_OR_PARTITION
        }
        assert listed(wire, f"{topic}-p-") == {}
        response = wire.request(produce(dict.fromkeys(names[:10], batch())))
        assert {partition_error(response, i) for i in range(10)} == {NONE}


# -- one commit per request: the server on an engine of this process ---------------------


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[tuple[RecordingStore, InProcessServer]]:
    store = RecordingStore(tmp_path / "bucket")
    config = engine.EngineConfig(store=NO_UPLOADS, auto_create_topics=True)
    opened = engine.open(tmp_path / "node", store, config)
    server = InProcessServer(opened, timeout=SLOW)
    try:
        yield store, server
    finally:
        server.stop()
        opened.close()


def test_a_topic_admin_request_is_one_manifest_commit(
    recorded: tuple[RecordingStore, InProcessServer],
) -> None:
    store, server = recorded
    with Wire(server.bootstrap, SLOW) as wire:
        for request in range(3):
            mark = len(store.manifest_puts)
            names = [f"r{request}-{i}" for i in range(1000)]
            response = wire.request(create_topics(names))
            assert {t.error_code for t in response.topics} == {NONE}
            (ops,) = store.deltas_since(mark)
            assert len(ops) == 2000  # a data and a state stream per topic
        mark = len(store.manifest_puts)
        response = wire.request(delete_topics([f"r1-{i}" for i in range(1000)]))
        assert {r.error_code for r in response.responses} == {NONE}
        (ops,) = store.deltas_since(mark)
        assert {op[0] for op in ops} == {"delete_stream"}
        assert len(listed(wire, "r")) == 2000
        mark = len(store.manifest_puts)
        grow = build(
            request_schema(37, 3),
            topics=[{"name": f"r0-{i}", "count": 2, "assignments": None} for i in range(1000)],
            timeout=datetime.timedelta(seconds=60),
        )
        response = wire.request(grow)
        assert {r.error_code for r in response.results} == {NONE}
        (ops,) = store.deltas_since(mark)
        assert len(ops) == 2000
        assert set(listed(wire, "r0-").values()) == {2}


def test_create_topics_answers_each_topic(recorded: tuple[RecordingStore, InProcessServer]) -> None:
    _, server = recorded
    with Wire(server.bootstrap) as wire:
        wire.request(create_topics(["exists"]))
        response = wire.request(create_topics(["new", "exists", "twice", "twice", "bad name!"]))
        codes = {t.name: t.error_code for t in response.topics}
        assert codes == {
            "new": NONE,
            "exists": 36,  # TOPIC_ALREADY_EXISTS
            "twice": INVALID_REQUEST,  # answered once, as Kafka's ControllerApis does
            "bad name!": 17,  # INVALID_TOPIC_EXCEPTION
        }
        assert len(response.topics) == 4
        assert sorted(listed(wire, "")) == ["exists", "new"]
        oversized = wire.request(create_topics(["a", "b"], partitions=6000))
        assert {t.error_code for t in oversized.topics} == {POLICY_VIOLATION}
