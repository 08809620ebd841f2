"""Fuzzing the wire server over real sockets: random bytes, random bodies
behind real headers, valid requests (built with kio's writers, for many
APIs and versions) mutated by byte flips, truncations, insertions and size
corruption, and random but valid requests. After each example the server
must still answer ApiVersions on a fresh connection, and its log must show
no handler failure (a traceback); valid requests must get a response that
kio decodes as their API's response."""

from __future__ import annotations

import dataclasses
import datetime
import socket
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kio.index import load_response_schema
from kio.schema.api_versions.v0.request import ApiVersionsRequest as ApiVersionsRequestV0
from kio.schema.api_versions.v0.response import ApiVersionsResponse as ApiVersionsResponseV0

import native
from engine.protocol.apis import ApiKey, is_flexible, request_schema
from engine.protocol.kafka_code import KafkaCode
from engine.server.handlers.registry import SUPPORTED_VERSIONS
from native.records import RecordSpec
from tests.server.conftest import ServerProcess
from tests.server.wire import (
    ConnectionClosed,
    Wire,
    build,
    decode_response,
    encode_request,
    entities,
    header_bytes,
)

MAX_REQUEST_BYTES = 100 * 1024 * 1024
SENTINEL = -424242
"""The correlation id of the ApiVersions request sent after the fuzzed bytes."""

TIMEOUT = 2.0
LONGEST_POLL = datetime.timedelta(milliseconds=200)

FUZZED_APIS = list(SUPPORTED_VERSIONS)
# Random valid CreateTopics and CreatePartitions requests are left out: a
# valid count (up to Kafka's bound of 10,000 partitions a request) takes
# seconds to create, too slow for hundreds of examples. So are JoinGroup
# requests: a valid one waits for its group's rebalance, seconds later; and
# AlterClientQuotas requests (see below).
RANDOM_VALID_APIS = [
    key
    for key in FUZZED_APIS
    if key
    not in (
        ApiKey.CREATE_TOPICS,
        ApiKey.CREATE_PARTITIONS,
        ApiKey.JOIN_GROUP,
        # a random quota (1 byte a second for every user) would throttle
        # every later request of the module for seconds
        ApiKey.ALTER_CLIENT_QUOTAS,
    )
]
# Base requests that name a member no group has: their errors are expected.
UNKNOWN_MEMBER_APIS = (ApiKey.JOIN_GROUP, ApiKey.SYNC_GROUP, ApiKey.HEARTBEAT, ApiKey.LEAVE_GROUP)


class Target:
    """The module's server, a topic with data, and the log read so far."""

    def __init__(self, server: ServerProcess, topic: str, topic_id: uuid.UUID) -> None:
        self.server = server
        self.topic = topic
        self.topic_id = topic_id
        self.log_path = Path(server.log_path)
        self.log_offset = self.log_path.stat().st_size
        self.payloads = base_payloads(topic, topic_id)

    def exchange(self, data: bytes) -> list[bytes]:
        """Sends ``data`` on a new connection and reads what comes back: the
        responses before the sentinel's if ``data`` ends between requests,
        else until the server closes the connection once this side has."""
        responses: list[bytes] = []
        with Wire(self.server.bootstrap, timeout=TIMEOUT) as wire:
            try:
                wire.send_raw(data)
                if not ends_between_requests(data):
                    wire.sock.shutdown(socket.SHUT_WR)
                    wire.closed_by_server()
                    return responses
                wire.send(ApiVersionsRequestV0(), correlation_id=SENTINEL)
                while True:
                    payload = wire.read_frame()
                    if struct.unpack_from(">i", payload)[0] == SENTINEL:
                        decode_response(ApiVersionsResponseV0, payload)
                        return responses
                    responses.append(payload)
            except (ConnectionClosed, OSError):
                # Closed by the server, or a request still waiting (a Fetch
                # long-poll the fuzzing made long): both allowed.
                return responses

    def check(self) -> None:
        """The server answers a new connection and has logged no traceback."""
        assert self.server.running, self.server.log()
        with Wire(self.server.bootstrap, timeout=10) as fresh:
            response = fresh.request(ApiVersionsRequestV0())
            assert response.error_code == 0
        with self.log_path.open("rb") as log:
            log.seek(self.log_offset)
            new = log.read()
        self.log_offset += len(new)
        assert b"Traceback" not in new, new.decode(errors="replace")


def ends_between_requests(data: bytes) -> bool:
    """Whether a server reading ``data`` is left between two requests (or
    closes the connection on an impossible size), rather than waiting for
    the rest of one."""
    position = 0
    while len(data) - position >= 4:
        size = struct.unpack_from(">i", data, position)[0]
        if size < 0 or size > MAX_REQUEST_BYTES:
            return True
        position += 4 + size
    return position == len(data)


def batch(value: bytes = b"fuzz") -> bytes:
    return native.encode_batch([RecordSpec(1_700_000_000_000, b"k", value, ())])


def request_values(key: ApiKey, topic: str, topic_id: uuid.UUID) -> dict[str, Any]:
    """A valid request of API ``key`` about ``topic``, for any version
    (build() drops what a version lacks)."""
    zero = datetime.timedelta(0)
    partition = {
        "partition": 0,
        "partition_index": 0,
        "index": 0,
        "current_leader_epoch": -1,
        "last_fetched_epoch": -1,
        "log_start_offset": -1,
        "fetch_offset": 0,
        "partition_max_bytes": 1 << 20,
        "leader_epoch": 0,
        "timestamp": -1,
        "max_num_offsets": 1,
        "offset": 0,
        "records": batch(),
    }
    named = {"name": topic, "topic": topic, "topic_id": topic_id, "partitions": [partition]}
    txn = {"transactional_id": "fuzz-txn", "producer_id": 0, "producer_epoch": 0}
    resource = {
        "resource_type": 2,
        "resource_name": topic,
        "configuration_keys": None,
        "configs": [{"name": "retention.ms", "value": "86400000", "config_operation": 0}],
    }
    acl = {
        "resource_type": 2,
        "resource_name": topic,
        "principal": "User:fuzz",
        "host": "*",
        "operation": 3,
        "permission_type": 3,
    }
    acl_filter = {
        "resource_type_filter": 2,
        "resource_name_filter": topic,
        "pattern_type_filter": 3,
        "principal_filter": "User:fuzz",
        "host_filter": None,
        "operation": 1,
        "permission_type": 1,
    }
    values: dict[ApiKey, dict[str, Any]] = {
        ApiKey.API_VERSIONS: {"client_software_name": "fuzz", "client_software_version": "1"},
        ApiKey.METADATA: {"topics": [{"name": topic}], "allow_auto_topic_creation": False},
        ApiKey.PRODUCE: {
            "acks": 1,
            "timeout": datetime.timedelta(seconds=5),
            "topic_data": [{"name": topic, "partition_data": [partition]}],
        },
        ApiKey.FETCH: {
            "replica_id": -1,
            "max_wait": zero,
            "min_bytes": 0,
            "max_bytes": 1 << 20,
            "session_epoch": -1,
            "topics": [named],
        },
        ApiKey.LIST_OFFSETS: {"replica_id": -1, "topics": [named]},
        ApiKey.OFFSET_FOR_LEADER_EPOCH: {"replica_id": -1, "topics": [named]},
        ApiKey.DELETE_RECORDS: {"topics": [named], "timeout": datetime.timedelta(seconds=5)},
        ApiKey.DELETE_TOPICS: {"topic_names": ["no-such-topic"], "timeout": zero},
        ApiKey.FIND_COORDINATOR: {"key": "group", "coordinator_keys": ["group"]},
        ApiKey.INIT_PRODUCER_ID: {"transaction_timeout": datetime.timedelta(seconds=60)},
        ApiKey.DESCRIBE_CONFIGS: {"resources": [resource]},
        ApiKey.ALTER_CONFIGS: {"resources": [resource], "validate_only": True},
        ApiKey.INCREMENTAL_ALTER_CONFIGS: {"resources": [resource], "validate_only": True},
        ApiKey.DESCRIBE_CLUSTER: {"include_cluster_authorized_operations": False},
        ApiKey.DESCRIBE_TOPIC_PARTITIONS: {
            "topics": [{"name": topic}],
            "response_partition_limit": 10,
            "cursor": {"topic_name": topic, "partition_index": 0},
        },
        ApiKey.CREATE_TOPICS: {
            "topics": [{"name": f"{topic}-created", "num_partitions": 1, "replication_factor": 1}],
            "timeout": datetime.timedelta(seconds=5),
        },
        ApiKey.CREATE_PARTITIONS: {
            "topics": [{"name": topic, "count": 2, "assignments": None}],
            "timeout": datetime.timedelta(seconds=5),
            "validate_only": True,
        },
        ApiKey.ADD_PARTITIONS_TO_TXN: {
            "v3_and_below_transactional_id": "fuzz-txn",
            "v3_and_below_producer_id": 0,
            "v3_and_below_producer_epoch": 0,
            "v3_and_below_topics": [{"name": topic, "partitions": [0]}],
        },
        ApiKey.ADD_OFFSETS_TO_TXN: txn | {"group_id": "fuzz-group"},
        ApiKey.END_TXN: txn | {"committed": True},
        ApiKey.TXN_OFFSET_COMMIT: txn
        | {
            "group_id": "fuzz-group",
            "topics": [
                {
                    "name": topic,
                    "partitions": [
                        {"partition_index": 0, "committed_offset": 0, "committed_metadata": None}
                    ],
                }
            ],
        },
        ApiKey.DESCRIBE_LOG_DIRS: {"topics": [{"topic": topic, "partitions": [0]}]},
        ApiKey.DESCRIBE_PRODUCERS: {"topics": [{"name": topic, "partition_indexes": [0]}]},
        ApiKey.DESCRIBE_TRANSACTIONS: {"transactional_ids": ["fuzz-txn"]},
        ApiKey.LIST_TRANSACTIONS: {"duration_filter": -1},
        ApiKey.CREATE_ACLS: {"creations": [acl | {"resource_pattern_type": 3}]},
        ApiKey.DESCRIBE_ACLS: acl_filter,
        ApiKey.DELETE_ACLS: {"filters": [acl_filter]},
        # On a PLAINTEXT listener: answered as a Kafka broker answers them there.
        ApiKey.SASL_HANDSHAKE: {"mechanism": "PLAIN"},
        ApiKey.SASL_AUTHENTICATE: {"auth_bytes": b"\x00fuzz\x00pencil"},
        ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS: {"users": [{"name": "fuzz-user"}]},
        ApiKey.ALTER_USER_SCRAM_CREDENTIALS: {
            "deletions": [{"name": "fuzz-user", "mechanism": 1}],
            "upsertions": [],
        },
        # On a PLAINTEXT listener: DELEGATION_TOKEN_REQUEST_NOT_ALLOWED, as Kafka.
        ApiKey.CREATE_DELEGATION_TOKEN: {
            "owner_principal_type": None,
            "owner_principal_name": None,
            "renewers": [{"principal_type": "User", "principal_name": "fuzz"}],
            "max_lifetime": datetime.timedelta(milliseconds=-1),
        },
        ApiKey.RENEW_DELEGATION_TOKEN: {
            "hmac": b"fuzz",
            "renew_period": datetime.timedelta(milliseconds=-1),
        },
        ApiKey.EXPIRE_DELEGATION_TOKEN: {
            "hmac": b"fuzz",
            "expiry_time_period": datetime.timedelta(milliseconds=-1),
        },
        ApiKey.DESCRIBE_DELEGATION_TOKEN: {"owners": None},
        ApiKey.DESCRIBE_CLIENT_QUOTAS: {"components": [], "strict": False},
        ApiKey.ALTER_CLIENT_QUOTAS: {
            "entries": [
                {
                    "entity": [{"entity_type": "client-id", "entity_name": "fuzz"}],
                    "ops": [{"key": "producer_byte_rate", "value": 1e9, "remove": False}],
                }
            ],
            "validate_only": True,
        },
        **group_request_values(topic),
    }
    return values[key]


def group_request_values(topic: str) -> dict[ApiKey, dict[str, Any]]:
    """Valid consumer group requests, each answered at once: the members
    they name are not in any group."""
    group = "fuzz-group"
    member = {"group_id": group, "generation_id": 1, "member_id": "fuzz-member"}
    fetch_topics = [{"name": topic, "partition_indexes": [0]}]
    return {
        ApiKey.JOIN_GROUP: {
            "group_id": "fuzz-join",
            "session_timeout": datetime.timedelta(seconds=10),
            "rebalance_timeout": datetime.timedelta(seconds=10),
            "member_id": "fuzz-member",
            "protocol_type": "consumer",
            "protocols": [{"name": "range", "metadata": b""}],
        },
        ApiKey.SYNC_GROUP: member | {"assignments": []},
        ApiKey.HEARTBEAT: member,
        ApiKey.LEAVE_GROUP: member | {"members": [{"member_id": "fuzz-member"}]},
        ApiKey.OFFSET_COMMIT: {
            "group_id": group,
            "generation_id_or_member_epoch": -1,
            "member_id": "",
            "retention_time": datetime.timedelta(milliseconds=-1),
            "topics": [
                {
                    "name": topic,
                    "partitions": [
                        {"partition_index": 0, "committed_offset": 1, "committed_metadata": None}
                    ],
                }
            ],
        },
        ApiKey.OFFSET_FETCH: {
            "group_id": group,
            "topics": fetch_topics,
            "groups": [{"group_id": group, "topics": fetch_topics}],
        },
        ApiKey.OFFSET_DELETE: {
            "group_id": group,
            "topics": [{"name": topic, "partitions": [{"partition_index": 0}]}],
        },
        ApiKey.DESCRIBE_GROUPS: {"groups": [group], "include_authorized_operations": True},
        ApiKey.LIST_GROUPS: {"states_filter": [], "types_filter": []},
        ApiKey.DELETE_GROUPS: {"groups_names": ["fuzz-no-such-group"]},
        # A member joining a KIP-848 group is answered at once too.
        ApiKey.CONSUMER_GROUP_HEARTBEAT: {
            "group_id": "fuzz-consumer-group",
            "member_id": "fuzz-member",
            "member_epoch": 0,
            "rebalance_timeout": datetime.timedelta(seconds=10),
            "subscribed_topic_names": [topic],
            "topic_partitions": [],
        },
        ApiKey.CONSUMER_GROUP_DESCRIBE: {
            "group_ids": [group, "fuzz-consumer-group"],
            "include_authorized_operations": True,
        },
    }


def base_payloads(topic: str, topic_id: uuid.UUID) -> list[bytes]:
    """Every fuzzed API at every supported version: header and body, no size."""
    payloads = []
    for key in FUZZED_APIS:
        low, high = SUPPORTED_VERSIONS[key]
        for version in range(low, high + 1):
            request = build(request_schema(key, version), **request_values(key, topic, topic_id))
            payloads.append(encode_request(request, 1000 + version)[4:])
    return payloads


@pytest.fixture(scope="module")
def target(kafka_server: ServerProcess) -> Iterator[Target]:
    topic = f"fuzz-{uuid.uuid4().hex[:8]}"
    with Wire(kafka_server.bootstrap) as wire:
        for _ in range(3):
            values = request_values(ApiKey.PRODUCE, topic, uuid.UUID(int=0))
            wire.request(build(request_schema(ApiKey.PRODUCE, 9), **values))
        metadata = build(request_schema(ApiKey.METADATA, 12), topics=[{"name": topic}])
        (described,) = wire.request(metadata).topics
        assert described.error_code == 0
    yield Target(kafka_server, topic, described.topic_id)
    assert "Traceback" not in kafka_server.log()


# -- strategies ------------------------------------------------------------------------------

_INTERESTING_INTS = [0, 1, -1, 0x7F, 0x80, 0xFF, 0x7FFF, -0x8000, 2**31 - 1, -(2**31)]


@st.composite
def mutated(draw: st.DrawFn, payloads: list[bytes]) -> bytes:
    """A valid request, mutated, behind a size prefix that is right, a little
    off, or anything; sometimes cut short; sometimes followed by a valid one."""
    payload = bytearray(draw(st.sampled_from(payloads)))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, max(len(payload) - 1, 0)))
        match draw(st.sampled_from(["flip", "byte", "int", "truncate", "insert", "delete"])):
            case "flip" if payload:
                payload[at] ^= 1 << draw(st.integers(0, 7))
            case "byte" if payload:
                payload[at] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]))
            case "int":
                width = draw(st.sampled_from([1, 2, 4]))
                value = draw(st.sampled_from(_INTERESTING_INTS)) & ((1 << (8 * width)) - 1)
                payload[at : at + width] = value.to_bytes(width, "big")
            case "truncate":
                del payload[at:]
            case "insert":
                payload[at:at] = draw(st.binary(min_size=1, max_size=16))
            case "delete":
                del payload[at : at + draw(st.integers(1, 16))]
            case _:
                pass
    size = len(payload)
    match draw(st.sampled_from(["right", "right", "right", "off", "any"])):
        case "off":
            size += draw(st.integers(-8, 8))
        case "any":
            size = draw(st.integers(-(2**31), 2**31 - 1))
        case _:
            pass
    data = struct.pack(">i", size) + bytes(payload)
    if draw(st.integers(0, 9)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        follower = draw(st.sampled_from(payloads))
        data += struct.pack(">i", len(follower)) + follower
    return data


@st.composite
def random_bodies(draw: st.DrawFn) -> bytes:
    """A real header of a served API and version, then random bytes."""
    key = draw(st.sampled_from(FUZZED_APIS))
    low, high = SUPPORTED_VERSIONS[key]
    version = draw(st.integers(low, high))
    header = header_bytes(
        key, version, draw(st.integers(0, 2**31 - 1)), flexible=is_flexible(key, version)
    )
    payload = header + draw(st.binary(max_size=200))
    return struct.pack(">i", len(payload)) + payload


_RANDOM_REQUESTS = [
    (key, version)
    for key in RANDOM_VALID_APIS
    for version in range(SUPPORTED_VERSIONS[key][0], SUPPORTED_VERSIONS[key][1] + 1)
]


@st.composite
def random_requests(draw: st.DrawFn) -> tuple[int, int, Any]:
    key, version = draw(st.sampled_from(_RANDOM_REQUESTS))
    return key, version, draw(entities(request_schema(key, version)))


# -- properties ------------------------------------------------------------------------------


@given(data=st.binary(max_size=300))
def test_random_bytes(target: Target, data: bytes) -> None:
    target.exchange(data)
    target.check()


@given(data=random_bodies())
def test_random_bodies_behind_real_headers(target: Target, data: bytes) -> None:
    target.exchange(data)
    target.check()


@given(data=st.data())
def test_mutated_requests(target: Target, data: st.DataObject) -> None:
    target.exchange(data.draw(mutated(target.payloads)))
    target.check()


TIMESTAMPED = (
    ApiKey.CREATE_DELEGATION_TOKEN,
    ApiKey.RENEW_DELEGATION_TOKEN,
    ApiKey.EXPIRE_DELEGATION_TOKEN,
)
"""APIs whose error answers carry Kafka's -1 timestamps, which kio refuses
to read as datetimes: only their correlation id is read."""
TOKEN_APIS = (*TIMESTAMPED, ApiKey.DESCRIBE_DELEGATION_TOKEN)


@given(request=random_requests())
def test_random_valid_requests_are_answered(target: Target, request: tuple[int, int, Any]) -> None:
    key, version, entity = request
    if key == ApiKey.FETCH:  # a long-poll is answered, but later than this test waits
        entity = dataclasses.replace(entity, max_wait=min(entity.max_wait, LONGEST_POLL))
    data = encode_request(entity, 77)
    responses = target.exchange(data)
    if key == ApiKey.PRODUCE and entity.acks == 0:
        assert responses == []  # acks=0: no response, as in Kafka
    else:
        assert len(responses) == 1, "a valid request went unanswered"
        if key in TIMESTAMPED:
            correlation_id = struct.unpack_from(">i", responses[0])[0]
        else:
            correlation_id, _ = decode_response(load_response_schema(key, version), responses[0])
        assert correlation_id == 77
    target.check()


def test_unmutated_base_requests_are_answered(target: Target) -> None:
    """The mutation seeds are themselves valid: each is answered."""
    for payload in target.payloads:
        key, version = struct.unpack_from(">hh", payload)
        responses = target.exchange(struct.pack(">i", len(payload)) + payload)
        assert len(responses) == 1, (key, version)
        if key in TOKEN_APIS:  # refused on PLAINTEXT, as Kafka refuses them there
            # the error code first, behind the header (flexible, with its tags, from v2)
            error_code = struct.unpack_from(">h", responses[0], 5 if version >= 2 else 4)[0]
            assert error_code == KafkaCode.DELEGATION_TOKEN_REQUEST_NOT_ALLOWED, (key, version)
            continue
        _, body = decode_response(load_response_schema(key, version), responses[0])
        # No open transaction, members of no group, SASL on a PLAINTEXT
        # listener (ILLEGAL_SASL_STATE, as Kafka): their errors are expected.
        expected = (ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE, *UNKNOWN_MEMBER_APIS)
        if key not in (ApiKey.ADD_OFFSETS_TO_TXN, ApiKey.END_TXN, *expected):
            assert getattr(body, "error_code", 0) == 0, (key, version, body)
    target.check()
