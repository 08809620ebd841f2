"""AlterUserScramCredentials over the wire with the errors Kafka's
ScramControlManager answers: iterations from 4096 to 16384, an empty name,
an unknown mechanism, a credential altered twice, a deletion of nothing,
and the bound of one request."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.protocol.apis import ApiKey, request_schema
from engine.protocol.kafka_code import KafkaCode
from tests.server.catalog_faults import fail_next_catalog_write
from tests.server.in_process import InProcessServer, served
from tests.server.wire import Wire, build

SHA_256, SHA_512 = 1, 2


@pytest.fixture
def server(tmp_path: Path) -> Iterator[InProcessServer]:
    with served(tmp_path / "node") as running:
        yield running


def _upsert(name: str, mechanism: int = SHA_256, iterations: int = 4096) -> dict[str, Any]:
    return {
        "name": name,
        "mechanism": mechanism,
        "iterations": iterations,
        "salt": os.urandom(16),
        "salted_password": os.urandom(32),
    }


def _alter(
    wire: Wire, upsertions: list[dict[str, Any]], deletions: tuple[tuple[str, int], ...] = ()
) -> dict[str, int]:
    answer = wire.request(
        build(
            request_schema(ApiKey.ALTER_USER_SCRAM_CREDENTIALS, 0),
            deletions=[{"name": name, "mechanism": mechanism} for name, mechanism in deletions],
            upsertions=upsertions,
        )
    )
    return {result.user: result.error_code for result in answer.results}


def test_each_user_gets_the_error_kafka_answers(server: InProcessServer) -> None:
    with Wire(server.bootstrap) as wire:
        assert _alter(
            wire,
            [
                _upsert("few", iterations=4095),
                _upsert("least", iterations=4096),
                _upsert("most", SHA_512, iterations=16384),
                _upsert("many", iterations=16385),
                _upsert(""),
                _upsert("odd", mechanism=3),
                _upsert("twice"),
                _upsert("twice"),
                _upsert("both", SHA_256),
                _upsert("both", SHA_512),  # another mechanism: no duplicate here
            ],
            deletions=(("ghost", SHA_256),),
        ) == {
            "few": KafkaCode.UNACCEPTABLE_CREDENTIAL,
            "least": KafkaCode.NONE,
            "most": KafkaCode.NONE,
            "many": KafkaCode.UNACCEPTABLE_CREDENTIAL,
            "": KafkaCode.UNACCEPTABLE_CREDENTIAL,
            "odd": KafkaCode.UNSUPPORTED_SASL_MECHANISM,
            "twice": KafkaCode.DUPLICATE_RESOURCE,
            "both": KafkaCode.NONE,
            "ghost": KafkaCode.RESOURCE_NOT_FOUND,
        }
    assert server.server.engine.credentials.users() == ["both", "least", "most"]


def test_more_alterations_than_kafkas_bound_are_refused_whole(server: InProcessServer) -> None:
    """Kafka's controller commits at most 10,000 records at once; each
    credential here is also a catalog write of its own."""
    with Wire(server.bootstrap) as wire:
        answers = _alter(wire, [_upsert(f"bulk-{i}") for i in range(10_001)])
    assert set(answers.values()) == {KafkaCode.POLICY_VIOLATION}
    assert len(answers) == 10_001
    assert server.server.engine.credentials.users() == []


def test_a_request_altering_several_users_is_written_all_or_nothing(
    server: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kafka's controller commits one AlterUserScramCredentials' records as
    one atomic batch: a store failure while they are written leaves none of
    them in force (every valid user answered with it), and a user Kafka
    refuses is refused on its own."""
    opened = server.server.engine
    catalog = opened.catalog
    fail_next_catalog_write(monkeypatch, catalog)
    upsertions = [_upsert("first"), _upsert("bad", iterations=1), _upsert("second", SHA_512)]
    storage = KafkaCode.KAFKA_STORAGE_ERROR
    with Wire(server.bootstrap) as wire:
        assert _alter(wire, upsertions) == {
            "first": storage,
            "bad": KafkaCode.UNACCEPTABLE_CREDENTIAL,
            "second": storage,
        }
        assert opened.credentials.users() == []
        assert _alter(wire, upsertions)["second"] == KafkaCode.NONE
    assert opened.credentials.users() == ["first", "second"]
