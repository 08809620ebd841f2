"""TxnOffsetCommit over the wire while its transaction ends: the check
passes with the transaction open, the transaction times out and its abort
completes before the commit reaches the group coordinator. The answer is
INVALID_TXN_STATE (docs/design/0048) at every version, v4 included: Kafka
4.0 answers TRANSACTION_ABORTABLE only where its verification refuses a
commit, and a commit verified before its transaction ended is refused by
the verification guard at append, INVALID_TXN_STATE; nothing is left
pending for the producer's next transaction to commit."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.clock import ManualClock
from engine.protocol.apis import ApiKey, request_schema
from engine.protocol.kafka_code import KafkaCode
from engine.transactions.metadata import TxnState
from engine.types import TopicPartition
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire, build

TIMEOUT = 30.0


def txn_offset_commit(
    producer_id: int, epoch: int, offsets: dict[int, int], version: int = 3
) -> Any:
    return build(
        request_schema(ApiKey.TXN_OFFSET_COMMIT, version),
        transactional_id="pipeline",
        group_id="readers",
        producer_id=producer_id,
        producer_epoch=epoch,
        generation_id=-1,
        member_id="",
        topics=[
            {
                "name": "in",
                "partitions": [
                    {"partition_index": p, "committed_offset": o, "committed_leader_epoch": -1}
                    for p, o in offsets.items()
                ],
            }
        ],
    )


@pytest.mark.parametrize("version", [3, 4])
def test_a_txn_offset_commit_whose_transaction_times_out_after_its_check_is_void(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    clock = ManualClock()
    with engine.open(tmp_path / "node", clock=clock) as opened:
        opened.create_topic("in", 1)
        transactions = opened.transactions
        producer_id, epoch = transactions.init_producer_id("pipeline", 200).result(TIMEOUT)
        transactions.add_offsets("pipeline", producer_id, epoch, "readers").result(TIMEOUT)
        check = transactions.check_offset_commit

        def check_then_time_out(*args: Any) -> None:
            check(*args)
            clock.advance(1)  # past the transaction's timeout
            assert transactions.abort_timed_out() == 1
            deadline = time.monotonic() + TIMEOUT
            while transactions.describe("pipeline").state is not TxnState.COMPLETE_ABORT:
                assert time.monotonic() < deadline, "the timed-out transaction was not aborted"
                time.sleep(0.01)

        monkeypatch.setattr(transactions, "check_offset_commit", check_then_time_out)
        server = InProcessServer(opened)
        try:
            with Wire(server.bootstrap, timeout=TIMEOUT) as wire:
                answer = wire.request(txn_offset_commit(producer_id, epoch, {0: 7}, version))
        finally:
            server.stop()
        (topic,) = answer.topics
        assert [p.error_code for p in topic.partitions] == [KafkaCode.INVALID_TXN_STATE]
        source = TopicPartition("in", 0)
        stable = opened.groups.fetch_offsets("readers", [source], require_stable=True)
        assert stable[source] == (None, KafkaCode.NONE)
