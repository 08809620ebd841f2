"""A fork started through an object-store outage never holds the engine's
lock while it waits on the store: the server's event loop takes that lock
(AddPartitionsToTxn, implicit adds, auto-creation), and a wait under it
froze every connection for as long as the fork waited."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kio.index import load_request_schema as request_schema

from engine.engine import Engine
from engine.errors import AdminTimedOut
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from tests.faults.outages import engine_through_an_outage
from tests.faults.test_unpaced_writes_bounded import BOUND, CONFIG
from tests.s3stream.faults import FaultyStore
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire, build

TIMEOUT = 30.0


@pytest.fixture
def down(tmp_path: Path) -> Iterator[tuple[Engine, FaultyStore]]:
    with engine_through_an_outage(tmp_path, CONFIG, {"t": 1, "other": 1}, BOUND, TIMEOUT) as down:
        yield down


def test_add_partitions_is_answered_while_a_fork_waits_on_the_store(
    down: tuple[Engine, FaultyStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    e, faulty = down
    # The fork's wait on the store that takes nothing lasts until the
    # request is answered, not the engine's 30 s: a fork waiting under the
    # engine's lock leaves the request unanswered until the wait's own
    # bound, and the test fails on the fork having given up first.
    waiting, answered = threading.Event(), threading.Event()
    flush = e.store.flush

    def flush_until_answered(timeout: float | None = None) -> bool:
        waiting.set()
        answered.wait(timeout)
        return flush(0.0)

    monkeypatch.setattr(e.store, "flush", flush_until_answered)
    server = InProcessServer(e)
    try:
        producer_id, epoch = e.transactions.init_producer_id("tx", 60_000).result(TIMEOUT)
        outcome: list[BaseException | None] = []

        def forking() -> None:
            try:
                e.fork("t", name="t-eval")
                outcome.append(None)
            except BaseException as error:
                outcome.append(error)

        fork = threading.Thread(target=forking, daemon=True)
        fork.start()
        assert waiting.wait(TIMEOUT), outcome
        assert fork.is_alive(), outcome
        request = build(
            request_schema(ApiKey.ADD_PARTITIONS_TO_TXN, 3),
            v3_and_below_transactional_id="tx",
            v3_and_below_producer_id=producer_id,
            v3_and_below_producer_epoch=epoch,
            v3_and_below_topics=[{"name": "other", "partitions": [0]}],
        )
        with Wire(server.bootstrap, timeout=TIMEOUT) as wire:
            answer = wire.request(request)
        # Answered while the fork still waits on the store, not once
        # it gave up on it and let go of the engine's lock.
        assert not outcome and fork.is_alive(), outcome
        answered.set()
        (topic,) = answer.results_by_topic_v3_and_below
        (result,) = topic.results_by_partition
        # Taken, or refused for room as Kafka's coordinator refuses a write
        # its log cannot take.
        assert result.partition_error_code in (
            KafkaCode.NONE,
            KafkaCode.COORDINATOR_NOT_AVAILABLE,
        )
        fork.join(2 * TIMEOUT)
        # The fork could not upload the parent's records: refused with a
        # typed, retriable error, and no fork left behind.
        (error,) = outcome
        assert isinstance(error, AdminTimedOut) and error.error_code.retriable, error
        assert "nothing was changed" in str(error)
        assert "t-eval" not in e.list_topics()
    finally:
        faulty.heal()
        server.stop()
