"""Delegation token requests at the edges of what their schemas hold,
over real sockets: a v3 Create naming an owner without a type, the int64
periods and lifetimes a Kafka client may send however large (Kafka's
DelegationTokenControlManager caps them; they must not cost the client
its connection), and a configured max lifetime past the int64 timestamps."""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Any

import pytest
from kio.index import load_request_schema

import engine
from engine.acl_bindings import AclBinding
from engine.authorization import AclOperation, ResourceType
from engine.clock import ManualClock
from engine.delegation_tokens import DelegationTokenConfig
from engine.engine import EngineConfig
from engine.protocol.kafka_code import KafkaCode
from engine.server.config import ServerConfig
from engine.server.handlers.delegation_tokens import MANY_RENEWERS
from engine.server.listeners import parse_listeners
from tests.server.in_process import InProcessServer
from tests.server.scram_client import scram_login
from tests.server.test_delegation_tokens import (
    CREATE,
    DAY_MS,
    DESCRIBE,
    EXPIRE,
    LITERAL,
    PASSWORD,
    RENEW,
    SECRET,
    WEEK_MS,
    Node,
    acl_node,
    create,
    describe,
    described_ids,
    described_off_the_loop,
    ms,
    timestamped_answer,
    tokens_node,
)
from tests.server.wire import Wire, build, encode_request

__all__ = ["acl_node", "tokens_node"]  # the fixtures, used by name

LONG_MAX, LONG_MIN = 2**63 - 1, -(2**63)
MARKER_MS = 123_456_789_012_345
"""A period no test sends for real, replaced in the frame by the int64 under test."""


class PatchedWire:
    """Sends a request whose MARKER_MS period is replaced, in its bytes, by
    an int64 no kio entity can hold; reads as the Wire it wraps."""

    def __init__(self, wire: Wire, value: int) -> None:
        self.wire, self.value = wire, value

    def send(self, request: Any) -> int:
        correlation_id = self.wire.next_correlation_id()
        data = encode_request(request, correlation_id)
        marker = struct.pack(">q", MARKER_MS)
        assert data.count(marker) == 1
        self.wire.send_raw(data.replace(marker, struct.pack(">q", self.value)))
        return correlation_id

    def read_frame(self) -> bytes:
        return self.wire.read_frame()


def patched(wire: Wire, value: int, api_key: int, version: int, **fields: Any) -> Any:
    request = build(load_request_schema(api_key, version), **fields)
    return timestamped_answer(PatchedWire(wire, value), request)  # type: ignore[arg-type]


def still_serves(wire: Wire) -> None:
    assert wire.request(build(load_request_schema(DESCRIBE, 3), owners=[])).error_code == 0


def test_a_v3_create_naming_an_owner_without_a_type_is_unknown_server_error(
    tokens_node: Node,
) -> None:
    """Kafka's ControllerApis makes a KafkaPrincipal of a null type and the
    name, which throws: the request is answered UNKNOWN_SERVER_ERROR with
    ANONYMOUS as owner and requester (CreateDelegationTokenRequest's error
    response), and no token is made."""
    with tokens_node.connect("alice") as wire:
        answer = timestamped_answer(wire, null_typed_owner("bob"))
        assert answer.error_code == KafkaCode.UNKNOWN_SERVER_ERROR
        assert (answer.principal_type, answer.principal_name) == ("User", "ANONYMOUS")
        requester = (answer.token_requester_principal_type, answer.token_requester_principal_name)
        assert requester == ("User", "ANONYMOUS")
        timestamps = (answer.issue_timestamp, answer.expiry_timestamp, answer.max_timestamp)
        assert timestamps == (-1, -1, -1)
        assert (answer.token_id, bytes(answer.hmac)) == ("", b"")
        assert tokens_node.engine.delegation_tokens.stored() == []
        still_serves(wire)


def null_typed_owner(name: str) -> Any:
    return build(
        load_request_schema(CREATE, 3),
        owner_principal_type=None,
        owner_principal_name=name,
        renewers=[],
        max_lifetime=ms(-1),
    )


def test_an_owner_without_a_type_passes_no_acl_that_denies_the_user(acl_node: Node) -> None:
    """Allowed CREATE_TOKENS on every user but denied it on User:bob, alice
    may not make a token that logs in as bob by leaving out the owner's type."""
    deny = 2
    acl_node.engine.catalog.add_acls(
        [
            AclBinding(
                ResourceType.USER, "*", LITERAL, "User:alice", "*", AclOperation.CREATE_TOKENS, 3
            ),
            AclBinding(
                ResourceType.USER,
                "User:bob",
                LITERAL,
                "User:alice",
                "*",
                AclOperation.CREATE_TOKENS,
                deny,
            ),
        ]
    )
    with acl_node.connect("alice") as wire:
        refused = create(wire, owner="User:bob")
        assert refused.error_code == KafkaCode.DELEGATION_TOKEN_AUTHORIZATION_FAILED
        answer = timestamped_answer(wire, null_typed_owner("bob"))
        assert answer.error_code == KafkaCode.UNKNOWN_SERVER_ERROR
        assert (answer.token_id, bytes(answer.hmac)) == ("", b"")
    assert acl_node.engine.delegation_tokens.stored() == []


def test_a_huge_max_lifetime_is_capped_by_the_configured_one(tokens_node: Node) -> None:
    now = tokens_node.clock.time_ms()
    with tokens_node.connect("alice") as wire:
        answer = patched(wire, LONG_MAX, CREATE, 3, renewers=[], max_lifetime=ms(MARKER_MS))
        assert answer.error_code == KafkaCode.NONE
        assert (answer.expiry_timestamp, answer.max_timestamp) == (now + DAY_MS, now + WEEK_MS)
        made = patched(wire, LONG_MIN, CREATE, 3, renewers=[], max_lifetime=ms(MARKER_MS))
        assert made.error_code == KafkaCode.NONE  # not above 0: the configured one
        assert made.max_timestamp == now + WEEK_MS
        still_serves(wire)


def test_a_huge_renew_period_renews_for_the_configured_expiry_time(tokens_node: Node) -> None:
    with tokens_node.connect("alice") as wire:
        digest = bytes(create(wire).hmac)
        tokens_node.clock.advance(5_000)
        now = tokens_node.clock.time_ms()
        answer = patched(wire, LONG_MAX, RENEW, 2, hmac=digest, renew_period=ms(MARKER_MS))
        assert answer.error_code == KafkaCode.NONE
        assert answer.expiry_timestamp == now + DAY_MS
        still_serves(wire)


def test_a_huge_expiry_period_stops_at_the_max_timestamp_a_huge_negative_one_removes(
    tokens_node: Node,
) -> None:
    with tokens_node.connect("alice") as wire:
        made = create(wire)
        digest = bytes(made.hmac)
        answer = patched(wire, LONG_MAX, EXPIRE, 2, hmac=digest, expiry_time_period=ms(MARKER_MS))
        assert answer.error_code == KafkaCode.NONE
        assert answer.expiry_timestamp == made.max_timestamp
        removed = patched(wire, LONG_MIN, EXPIRE, 2, hmac=digest, expiry_time_period=ms(MARKER_MS))
        assert removed.error_code == KafkaCode.NONE
        assert removed.expiry_timestamp < 0
        assert described_ids(describe(wire)) == set()
        assert tokens_node.engine.delegation_tokens.stored() == []


def test_a_max_lifetime_configured_past_the_int64_timestamps_caps_at_their_end(
    tmp_path: Path,
) -> None:
    """Kafka's delegation.token.max.lifetime.ms takes any long: a token's
    max timestamp, now plus that, is an int64 on the wire."""
    clock = ManualClock(time_ms=int(time.time() * 1000))
    config = EngineConfig(delegation_tokens=DelegationTokenConfig(SECRET, max_lifetime_ms=LONG_MAX))
    with engine.open(tmp_path / "node", config=config, clock=clock) as opened:
        opened.credentials.add("alice", "SCRAM-SHA-512", PASSWORD)
        server = InProcessServer(
            opened, config=ServerConfig(listeners=parse_listeners("SASL_PLAINTEXT://127.0.0.1:0"))
        )
        try:
            with Wire(f"127.0.0.1:{server.server.ports['SASL_PLAINTEXT']}") as wire:
                _, final = scram_login(wire, "SCRAM-SHA-512", "alice", PASSWORD)
                assert final.error_code == KafkaCode.NONE
                made = create(wire)
                assert made.error_code == KafkaCode.NONE
                assert made.max_timestamp == LONG_MAX
                assert made.expiry_timestamp == clock.time_ms() + DAY_MS
                assert [t.token_id for t in opened.delegation_tokens.tokens()] == [made.token_id]
                still_serves(wire)
        finally:
            server.stop()


def test_a_describe_naming_many_owners_of_a_token_of_many_renewers_costs_their_sum(
    tokens_node: Node,
) -> None:
    """Each token is matched against the owners asked for as a set, not
    each owner against each renewer: with 50,000 of each that product
    held the event loop, which answers every connection, for a minute."""
    many = 50_000
    renewers = [{"principal_type": "User", "principal_name": f"r{i}"} for i in range(many)]
    asked = [{"principal_type": "User", "principal_name": f"o{i}"} for i in range(many - 1)]
    asked.append({"principal_type": "User", "principal_name": f"r{many - 1}"})
    with tokens_node.connect("alice") as wire:
        request = build(
            load_request_schema(CREATE, 3),
            owner_principal_type=None,
            owner_principal_name=None,
            renewers=renewers,
            max_lifetime=ms(-1),
        )
        made = timestamped_answer(wire, request)
        assert made.error_code == KafkaCode.NONE
        answer = wire.request(build(load_request_schema(DESCRIBE, 3), owners=asked))
        assert described_ids(answer) == {made.token_id}
        assert len(answer.tokens[0].renewers) == many
        answer = wire.request(build(load_request_schema(DESCRIBE, 3), owners=asked[:-1]))
        assert described_ids(answer) == set()


def test_a_describe_of_few_tokens_with_many_renewers_is_answered_off_the_event_loop(
    tokens_node: Node,
) -> None:
    """What a Describe costs (each renewer matched, answered and encoded)
    grows with the renewers kept as with the tokens: past MANY_RENEWERS it
    is answered on the admin thread, while the loop serves the others."""
    opened = tokens_node.engine
    renewers = [f"User:r{i}" for i in range(MANY_RENEWERS + 1)]
    made, _ = opened.delegation_tokens.create("User:alice", "User:alice", renewers)
    answer = described_off_the_loop(tokens_node)
    assert described_ids(answer) == {made.token_id}
    assert len(answer.tokens[0].renewers) == MANY_RENEWERS + 1


@pytest.mark.parametrize("owner_type", ["Group", "user", ""])
def test_an_owner_of_another_type_passes_no_acl_that_denies_the_user_it_logs_in_as(
    acl_node: Node, owner_type: str
) -> None:
    """A token's session is User:<owner's name> whatever the owner's type
    (Kafka's token cache names the owner, its principal builder makes a
    User of it): making one for <type>:bob needs CREATE_TOKENS on User:bob
    too, or an ALLOW on every user with a DENY on User:bob would not hold."""
    allow, deny = 3, 2
    create_tokens = AclOperation.CREATE_TOKENS
    acl_node.engine.catalog.add_acls(
        [
            AclBinding(ResourceType.USER, "*", LITERAL, "User:alice", "*", create_tokens, allow),
            AclBinding(
                ResourceType.USER, "User:bob", LITERAL, "User:alice", "*", create_tokens, deny
            ),
        ]
    )
    with acl_node.connect("alice") as wire:
        request = build(
            load_request_schema(CREATE, 3),
            owner_principal_type=owner_type,
            owner_principal_name="bob",
            renewers=[],
            max_lifetime=ms(-1),
        )
        answer = timestamped_answer(wire, request)
        assert answer.error_code == KafkaCode.DELEGATION_TOKEN_AUTHORIZATION_FAILED
        assert (answer.principal_type, answer.principal_name) == (owner_type, "bob")
        made = create(wire, owner="Group:carol")  # no DENY on User:carol: the ALLOW holds
        assert made.error_code == KafkaCode.NONE
    assert [t.owner for t in acl_node.engine.delegation_tokens.stored()] == ["Group:carol"]
