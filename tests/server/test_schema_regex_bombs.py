"""A topic holding its records to a JSON Schema with a backtracking
pattern (``^(a+)+$``, the shape of many copied e-mail regexes) is answered
at once when a producer sends a record that makes Python's ``re`` run for
hours: the schema's patterns match with RE2, in time linear in the text,
for ``pattern``, ``patternProperties``, ``additionalProperties`` beside
``patternProperties`` and ``unevaluatedProperties``. A pattern RE2 cannot
match so (a lookahead) is refused at registration with 42201.

A backtracking match holds the interpreter's lock for its whole run, so it
would stop every connection: the server runs in its own process, with its
schema registry, and a second client is served while the record is
checked. A stuck server is killed afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import native
from engine.protocol.apis import ApiKey, request_schema
from engine.protocol.kafka_code import KafkaCode
from native import RecordSpec
from tests.server.conftest import ServerProcess
from tests.server.test_bombs import new_topic, produce
from tests.server.test_schema_registry import http, start, with_registry
from tests.server.wire import Wire, build, response_schema_for

BOMB = "^(a+)+$"
"""Exponential for a backtracking matcher on ``a`` repeated, then a ``b``."""
VICTIM = "a" * 40 + "b"
TIMEOUT = 20.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    started = start(with_registry(ServerProcess(tmp_path / "data")))
    try:
        yield started
    finally:
        started.kill()  # a server stuck in a match takes no SIGTERM


def _register(server: ServerProcess, subject: str, schema: dict[str, Any]) -> tuple[int, Any]:
    body = json.dumps({"schemaType": "JSON", "schema": json.dumps(schema)}).encode()
    return http(server, "POST", f"/subjects/{subject}/versions", body)


def _metadata_answered(server: ServerProcess) -> bool:
    request = build(request_schema(ApiKey.METADATA, 12), topics=None)
    with Wire(server.bootstrap, timeout=TIMEOUT) as wire:
        return bool(wire.request(request).brokers)


CASES = {
    "pattern": (
        {"type": "object", "properties": {"name": {"type": "string", "pattern": BOMB}}},
        {"name": VICTIM},
        False,
    ),
    "patternProperties": (
        {"type": "object", "patternProperties": {BOMB: {"type": "integer"}}},
        {VICTIM: "not an integer"},
        True,  # the key does not match: its value is not checked
    ),
    "additionalProperties": (
        {"type": "object", "patternProperties": {BOMB: {}}, "additionalProperties": False},
        {VICTIM: 1},
        False,
    ),
    "unevaluatedProperties": (
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "allOf": [{"patternProperties": {BOMB: {}}}],
            "unevaluatedProperties": False,
        },
        {VICTIM: 1},
        False,
    ),
}


@pytest.mark.parametrize("keyword", list(CASES))
def test_a_record_against_a_backtracking_pattern_is_answered_and_others_served(
    server: ServerProcess, keyword: str
) -> None:
    schema, value, accepted = CASES[keyword]
    with Wire(server.bootstrap, timeout=TIMEOUT) as producer:
        topic = new_topic(producer, tidelog_value_schema_validation="raw")
        status, registered = _register(server, f"{topic}-value", schema)
        assert status == 200, registered
        records = native.encode_batch([RecordSpec(0, None, json.dumps(value).encode())])
        request = produce(topic, records)
        correlation_id = producer.send(request)
        assert _metadata_answered(server)  # a second client, while the record is checked
        answered, body = producer.receive(response_schema_for(request))
    assert answered == correlation_id
    partition = body.responses[0].partition_responses[0]
    if accepted:
        assert partition.error_code == KafkaCode.NONE
    else:
        assert partition.error_code == KafkaCode.INVALID_RECORD
        assert [e.batch_index for e in partition.record_errors] == [0]
    assert _metadata_answered(server)


@pytest.mark.parametrize("pattern", ["^(?=.*@)[a-z@.]+$", r"^(a)\1$", "^a{2000}$"])
def test_a_pattern_linear_matching_cannot_take_is_refused_at_registration(
    server: ServerProcess, pattern: str
) -> None:
    """ECMA-262 takes lookarounds and backreferences; RE2 does not: the
    registry answers 42201 naming the pattern, as for any invalid schema."""
    status, refused = _register(server, "refused-value", {"type": "string", "pattern": pattern})
    assert status == 422
    assert refused["error_code"] == 42201
    assert repr(pattern) in refused["message"] and "RE2" in refused["message"]
    assert http(server, "GET", "/subjects")[1] == []
    assert _metadata_answered(server)
