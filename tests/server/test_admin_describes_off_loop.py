"""DescribeClientQuotas, DescribeUserScramCredentials, ListTransactions and
ListGroups over many entities are answered on the admin thread, not the event loop:
100,000 quota entities took the loop about a second. With the admin thread
held busy, such a request waits while other connections are served."""

from __future__ import annotations

import datetime
import os
import select
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.protocol.apis import ApiKey, request_schema
from engine.protocol.kafka_code import KafkaCode
from engine.server.handlers.client_quotas import MANY_ENTITIES
from engine.server.handlers.groups import MANY_GROUPS
from engine.server.handlers.transactions import MANY_TRANSACTIONS
from engine.server.handlers.users import MANY_USERS
from engine.types import OffsetAndMetadata, TopicPartition
from tests.server.in_process import InProcessServer, served
from tests.server.test_client_quotas import alter
from tests.server.wire import Wire, build, response_schema_for

SHA_256 = 1


@pytest.fixture
def server(tmp_path: Path) -> Iterator[InProcessServer]:
    with served(tmp_path / "node") as running:
        yield running


def _answered_only_once_the_admin_thread_is_free(server: InProcessServer, request: Any) -> Any:
    release = threading.Event()
    busy = server.server.state.admin.submit(release.wait, 30)
    try:
        with Wire(server.bootstrap) as wire:
            wire.send(request)
            readable, _, _ = select.select([wire.sock], [], [], 0.5)
            assert not readable, "answered on the event loop"
            with Wire(server.bootstrap) as other:  # the loop serves everyone else
                versions = other.request(build(request_schema(ApiKey.API_VERSIONS, 3)))
                assert versions.error_code == KafkaCode.NONE
            release.set()
            _, answer = wire.receive(response_schema_for(request))
    finally:
        release.set()
        busy.result(30)
    return answer


def test_a_describe_of_many_quota_entities_is_answered_off_the_event_loop(
    server: InProcessServer,
) -> None:
    entries: list[tuple[dict[str, str | None], dict[str, float | None]]] = [
        ({"user": f"u{i}"}, {"producer_byte_rate": 1024.0}) for i in range(MANY_ENTITIES + 1)
    ]
    with Wire(server.bootstrap) as wire:
        assert {code for code, _ in alter(wire, entries)} == {KafkaCode.NONE}
    describe = build(request_schema(ApiKey.DESCRIBE_CLIENT_QUOTAS, 1), components=[])
    answer = _answered_only_once_the_admin_thread_is_free(server, describe)
    assert len(answer.entries) == MANY_ENTITIES + 1


def test_a_describe_of_many_scram_users_is_answered_off_the_event_loop(
    server: InProcessServer,
) -> None:
    upsertions = [
        {
            "name": f"u{i}",
            "mechanism": SHA_256,
            "iterations": 4096,
            "salt": os.urandom(16),
            "salted_password": os.urandom(32),
        }
        for i in range(MANY_USERS + 1)
    ]
    alter_users = build(
        request_schema(ApiKey.ALTER_USER_SCRAM_CREDENTIALS, 0), deletions=[], upsertions=upsertions
    )
    with Wire(server.bootstrap) as wire:
        assert {r.error_code for r in wire.request(alter_users).results} == {KafkaCode.NONE}
    describe = build(request_schema(ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS, 0), users=None)
    answer = _answered_only_once_the_admin_thread_is_free(server, describe)
    assert len(answer.results) == MANY_USERS + 1


def test_a_listing_of_many_transactions_is_answered_off_the_event_loop(
    server: InProcessServer,
) -> None:
    ids = [f"txn-{i}" for i in range(MANY_TRANSACTIONS + 1)]
    init = request_schema(ApiKey.INIT_PRODUCER_ID, 4)
    with Wire(server.bootstrap) as wire:
        for start in range(0, len(ids), 100):  # pipelined, a hundred at a time
            batch = ids[start : start + 100]
            for transactional_id in batch:
                wire.send(
                    build(
                        init,
                        transactional_id=transactional_id,
                        transaction_timeout=datetime.timedelta(seconds=60),
                        producer_id=-1,
                        producer_epoch=-1,
                    )
                )
            for _ in batch:
                _, answer = wire.receive(response_schema_for(build(init)))
                assert answer.error_code == KafkaCode.NONE
    listing = build(
        request_schema(ApiKey.LIST_TRANSACTIONS, 1),
        state_filters=[],
        producer_id_filters=[],
        duration_filter=-1,
    )
    answer = _answered_only_once_the_admin_thread_is_free(server, listing)
    assert len(answer.transaction_states) == len(ids)


def test_a_listing_of_many_groups_is_answered_off_the_event_loop(
    server: InProcessServer,
) -> None:
    opened = server.server.engine
    groups = opened.groups
    opened.create_topic("t", 1)
    committed = {TopicPartition("t", 0): OffsetAndMetadata(0)}
    commits = [
        groups.commit_offsets(f"g{i}", -1, "", None, committed) for i in range(MANY_GROUPS + 1)
    ]
    assert all(c.result(30) == {TopicPartition("t", 0): KafkaCode.NONE} for c in commits)
    listing = build(request_schema(ApiKey.LIST_GROUPS, 5), states_filter=[], types_filter=[])
    answer = _answered_only_once_the_admin_thread_is_free(server, listing)
    assert answer.error_code == KafkaCode.NONE
    assert len(answer.groups) == MANY_GROUPS + 1
