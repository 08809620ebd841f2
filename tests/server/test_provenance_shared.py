"""A connection's Provenance (who its produce requests come from) is made
once and shared by its requests while its identity and client id stay as
they are, and made again when either moves: Kafka's request header
carries the client id with every request, so one connection's requests
may name several, and each record is stamped with its own request's."""

from __future__ import annotations

import datetime
from dataclasses import replace
from pathlib import Path

from kio.index import load_request_schema

import engine
import native
from engine.protocol.apis import ApiKey
from engine.provenance import CLIENT_ID, PRINCIPAL
from engine.server.context import Identity
from native import RecordSpec
from tests.engine.helpers_records import read_partition
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire, build, encode_request, response_schema_for

BATCH = native.encode_batch([RecordSpec(1_700_000_000_000, None, b"v", ())])


def test_one_value_while_nothing_moves_and_a_new_one_when_anything_does() -> None:
    identity = Identity("User:alice", "SASL_PLAINTEXT", "127.0.0.1", "127.0.0.1:5000")
    first = identity.provenance("app")
    assert identity.provenance("app") is first
    assert identity.provenance("other") == replace(first, client_id="other")
    assert identity.provenance(None).client_id is None
    assert identity.provenance("app") == first
    # A SASL re-authentication replaces the connection's identity.
    reauthenticated = replace(identity, principal="User:bob")
    assert reauthenticated.provenance("app").principal == "User:bob"
    # A principal builder may change one in place.
    identity.principal = "User:carol"
    assert identity.provenance("app").principal == "User:carol"
    identity.address = "127.0.0.1:5001"
    assert identity.provenance("app").address == "127.0.0.1:5001"


def test_each_record_carries_its_own_requests_client_id(tmp_path: Path) -> None:
    """One connection whose requests name a client id, another, the first
    again and none: the stamp follows each request's header."""
    client_ids = ["first", "second", "first", None, "second"]
    with engine.open(tmp_path / "node") as opened:
        opened.create_topic("stamped", 1, configs={"tidelog.provenance": "stamp"})
        with (
            InProcessServer(opened, principal="User:alice") as server,
            Wire(server.bootstrap) as wire,
        ):
            produce = build(
                load_request_schema(ApiKey.PRODUCE, 9),
                acks=-1,
                timeout=datetime.timedelta(seconds=30),
                topic_data=[
                    {"name": "stamped", "partition_data": [{"index": 0, "records": BATCH}]}
                ],
            )
            for correlation_id, client_id in enumerate(client_ids, 1):
                wire.send_raw(encode_request(produce, correlation_id, client_id=client_id))
            for correlation_id in range(1, len(client_ids) + 1):
                answered, body = wire.receive(response_schema_for(produce))
                assert answered == correlation_id
                assert body.responses[0].partition_responses[0].error_code == 0
        stamps = [dict(r.headers) for r in read_partition(opened, "stamped", 0)]
    assert [s.get(CLIENT_ID) for s in stamps] == [
        None if c is None else c.encode() for c in client_ids
    ]
    assert {s[PRINCIPAL] for s in stamps} == {b"User:alice"}
