"""kafka-python, aiokafka and kafkajs transactional producers through
transaction state writes the store refuses: for room (past its
unuploaded headroom), answered COORDINATOR_NOT_AVAILABLE, or for good (a
failed store), answered NOT_COORDINATOR, on which each client looks the
coordinator up again and retries. A CompleteCommit refused for room is
written again while its EndTxn is answered done, so the next
transaction's AddPartitionsToTxn meets CONCURRENT_TRANSACTIONS, which
each client retries. Every transaction commits once.

kafkajs never retries an EndTxn (any error ends its transaction for the
application), so its PrepareCommit is not refused here; librdkafka's
run is tests/faults/test_transactions_through_refused_writes.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

import engine
from engine.transactions.metadata import TxnState
from tests.engine.conftest import FAST_STORE
from tests.engine.test_transactions import control_batches, values
from tests.engine.txn_state_faults import RefusedStateWrites, no_room, store_failed
from tests.faults.transactional_clients import kafka_python_commits
from tests.server.in_process import InProcessServer
from tests.server.test_kafkajs import Message, kafkajs

TIMEOUT = 30.0
VALUES = [b"one", b"two"]
"""One transaction each, committed one after the other."""


def _kafka_python(bootstrap: str) -> None:
    kafka_python_commits(bootstrap, "out", VALUES, (0,), TIMEOUT)


def _aiokafka(bootstrap: str) -> None:
    async def commit() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            transactional_id="tx",
            request_timeout_ms=int(TIMEOUT * 1000),
        )
        await producer.start()
        try:
            for value in VALUES:
                async with producer.transaction():
                    await producer.send_and_wait("out", value, partition=0)
        finally:
            await producer.stop()

    asyncio.run(asyncio.wait_for(commit(), 4 * TIMEOUT))


def _kafkajs(bootstrap: str) -> None:
    steps = [{"messages": [Message(0, b"k", v).to_driver()], "commit": True} for v in VALUES]
    kafkajs("transactions", bootstrap, topic="out", transactionalId="tx", groupId="g", steps=steps)


CLIENTS: dict[str, tuple[Callable[[str], None], bool]] = {
    "kafka-python": (_kafka_python, True),
    "aiokafka": (_aiokafka, True),
    "kafkajs": (_kafkajs, False),
}
"""Each client's run, and whether it retries a refused EndTxn."""


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(
    ("make", "complete_refused"),
    [(no_room, 2), (store_failed, 0)],
    ids=["no room", "store failed"],
)
def test_a_client_commits_each_transaction_once_through_refused_state_writes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    client: str,
    make: Callable[[int], BaseException],
    complete_refused: int,
) -> None:
    # A failed store refusing the Complete record leaves PrepareCommit for
    # the next open: not a refusal a client gets past.
    run, retries_end = CLIENTS[client]
    refusals = {"Ongoing": 2, "PrepareCommit": 2 if retries_end else 0}
    refusals["CompleteCommit"] = complete_refused
    config = engine.EngineConfig(store=FAST_STORE, cleaner_interval_s=3600)
    e = engine.open(tmp_path / "node", f"file://{tmp_path / 'objects'}", config)
    server = InProcessServer(e)
    try:
        e.create_topic("out", 1)
        refused = RefusedStateWrites(monkeypatch, e, refusals, make)
        run(server.bootstrap)
        deadline = time.monotonic() + TIMEOUT
        while e.transactions.describe("tx").state is not TxnState.COMPLETE_COMMIT:
            assert time.monotonic() < deadline, "the last transaction never completed"
            time.sleep(0.01)
        assert sorted(refused.refused) == sorted(
            state for state, times in refusals.items() for _ in range(times)
        )
        assert values(e, "out", "read_committed") == VALUES
        assert [marker.commit for _, _, _, marker in control_batches(e, "out", 0)] == [True, True]
    finally:
        server.stop()
        e.close()
