"""Answers that follow Apache Kafka 4.x to the error code, over the wire:
an OffsetCommit or TxnOffsetCommit naming a generation of a group that does
not exist, and ListTransactions v2's transactional-id pattern. Raw requests
against ``tidelog serve``."""

from __future__ import annotations

import datetime

import pytest

from engine.protocol.apis import request_schema
from engine.protocol.kafka_code import KafkaCode
from tests.server.conftest import ServerProcess
from tests.server.wire import Wire, build

OFFSET_COMMIT = 8
CREATE_TOPICS = 19


def create_topic(server: ServerProcess, name: str) -> None:
    request = build(
        request_schema(CREATE_TOPICS, 5),
        topics=[{"name": name, "num_partitions": 1, "replication_factor": 1}],
        timeout=datetime.timedelta(seconds=10),
    )
    with Wire(server.bootstrap, timeout=10) as wire:
        [created] = wire.request(request).topics
    assert created.error_code in (KafkaCode.NONE, KafkaCode.TOPIC_ALREADY_EXISTS)


def commit_codes(server: ServerProcess, version: int, group: str, generation: int) -> set[int]:
    """The error codes of an OffsetCommit of partition 0 of topic ``t`` by
    ``group`` at ``generation``."""
    request = build(
        request_schema(OFFSET_COMMIT, version),
        group_id=group,
        generation_id_or_member_epoch=generation,
        member_id="member-1" if generation >= 0 else "",
        retention_time_ms=-1,
        topics=[{"name": "t", "partitions": [{"partition_index": 0, "committed_offset": 5}]}],
    )
    with Wire(server.bootstrap, timeout=10) as wire:
        body = wire.request(request)
    return {int(p.error_code) for t in body.topics for p in t.partitions}


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (9, KafkaCode.GROUP_ID_NOT_FOUND),
        (8, KafkaCode.ILLEGAL_GENERATION),
        (2, KafkaCode.ILLEGAL_GENERATION),
    ],
)
def test_a_generation_of_a_group_that_does_not_exist(
    kafka_server: ServerProcess, version: int, expected: KafkaCode
) -> None:
    """Kafka's OffsetMetadataManager: from v9 (the KIP-848 protocol's
    version) the group is named as missing; older clients are told their
    generation is illegal, which they already handle."""
    create_topic(kafka_server, "t")
    assert commit_codes(kafka_server, version, f"missing-v{version}", 3) == {expected}


INIT_PRODUCER_ID = 22
LIST_TRANSACTIONS = 66


def init_transactional_ids(server: ServerProcess, ids: list[str]) -> dict[str, int]:
    """Each id's producer id after an InitProducerId (the id is then Empty)."""
    producer_ids = {}
    with Wire(server.bootstrap, timeout=10) as wire:
        for transactional_id in ids:
            body = wire.request(
                build(
                    request_schema(INIT_PRODUCER_ID, 4),
                    transactional_id=transactional_id,
                    transaction_timeout=datetime.timedelta(seconds=60),
                    producer_id=-1,
                    producer_epoch=-1,
                )
            )
            assert body.error_code == KafkaCode.NONE
            producer_ids[transactional_id] = int(body.producer_id)
    return producer_ids


def list_transactions(
    server: ServerProcess, version: int, pattern: str | None
) -> tuple[int, set[str]]:
    """(error code, listed transactional ids) of a ListTransactions."""
    request = build(
        request_schema(LIST_TRANSACTIONS, version),
        duration_filter=-1,
        transactional_id_pattern=pattern,
    )
    with Wire(server.bootstrap, timeout=10) as wire:
        body = wire.request(request)
    return int(body.error_code), {s.transactional_id for s in body.transaction_states}


def test_list_transactions_v2_filters_by_a_pattern_of_the_whole_id(
    kafka_server: ServerProcess,
) -> None:
    """KIP-1152: the pattern must match the whole id (Kafka's
    ``matcher().matches()``), an empty or null one is no filter; v1 has no
    such field and lists every id."""
    ids = ["orders-1", "orders-2", "billing-1"]
    init_transactional_ids(kafka_server, ids)
    assert list_transactions(kafka_server, 2, "orders-.*") == (0, {"orders-1", "orders-2"})
    assert list_transactions(kafka_server, 2, "[a-z]+-1") == (0, {"orders-1", "billing-1"})
    # A prefix alone matches nothing: not a search.
    assert list_transactions(kafka_server, 2, "orders") == (0, set())
    for everything in ("", None):
        code, listed = list_transactions(kafka_server, 2, everything)
        assert code == 0 and set(ids) <= listed
    code, listed = list_transactions(kafka_server, 1, None)
    assert code == 0 and set(ids) <= listed


def test_list_transactions_v2_refuses_a_pattern_that_does_not_compile(
    kafka_server: ServerProcess,
) -> None:
    init_transactional_ids(kafka_server, ["refused-1"])
    assert list_transactions(kafka_server, 2, "refused-(") == (
        KafkaCode.INVALID_REGULAR_EXPRESSION,
        set(),
    )
    # The server keeps serving on the same terms.
    assert list_transactions(kafka_server, 2, "refused-.") == (0, {"refused-1"})


ADD_OFFSETS_TO_TXN = 25
TXN_OFFSET_COMMIT = 28


def test_a_transactional_commit_for_a_generation_of_a_group_that_does_not_exist(
    kafka_server: ServerProcess,
) -> None:
    """Kafka's validateTransactionalOffsetCommit: ILLEGAL_GENERATION, in
    every version that carries a generation (v3+)."""
    create_topic(kafka_server, "t")
    transactional_id = "txn-missing-group"
    producer_id = init_transactional_ids(kafka_server, [transactional_id])[transactional_id]
    with Wire(kafka_server.bootstrap, timeout=10) as wire:
        added = wire.request(
            build(
                request_schema(ADD_OFFSETS_TO_TXN, 3),
                transactional_id=transactional_id,
                producer_id=producer_id,
                producer_epoch=0,
                group_id="txn-missing",
            )
        )
        assert added.error_code == KafkaCode.NONE
        body = wire.request(
            build(
                request_schema(TXN_OFFSET_COMMIT, 3),
                transactional_id=transactional_id,
                group_id="txn-missing",
                producer_id=producer_id,
                producer_epoch=0,
                generation_id=3,
                member_id="member-1",
                topics=[
                    {
                        "name": "t",
                        "partitions": [
                            {
                                "partition_index": 0,
                                "committed_offset": 5,
                                "committed_leader_epoch": -1,
                            }
                        ],
                    }
                ],
            )
        )
    codes = {int(p.error_code) for t in body.topics for p in t.partitions}
    assert codes == {KafkaCode.ILLEGAL_GENERATION}
