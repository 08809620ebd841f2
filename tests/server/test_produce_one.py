"""The one-partition Produce path (handlers/produce.py's _produce_one)
answers every request exactly as the general path does, byte for byte:
two engines get the same requests in the same order, one through
handle_produce, the other through _produce alone answering through the
schema's walk (as it did before answers were templated), and their
answers are compared; and the common request (one partition's batch to a topic that
exists) does take the one-partition path."""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
import native
from engine.acl_authorizer import AclAuthorizer
from engine.acl_bindings import AclBinding, PatternType
from engine.authorization import CLUSTER_NAME, AclOperation, ResourceType
from engine.catalog import CatalogState
from engine.clock import ManualClock
from engine.protocol.apis import ApiKey
from engine.protocol.codec import encode_response
from engine.protocol.frames import RequestHeader
from engine.protocol.produce import PartitionData, ProduceRequest, TopicData
from engine.server.config import ServerConfig
from engine.server.context import Broker, RequestContext, ServerState
from engine.server.handlers import produce
from engine.server.handlers.produce import _produce, _produce_one, handle_produce
from native import RecordSpec

TOPICS: dict[str, dict[str, str]] = {
    "plain": {},
    "compacted": {"cleanup.policy": "compact"},
    # each of these is one check a Produce must make on either path
    "denied": {},  # the principal may not WRITE it (ACLS below)
    "governed": {"tidelog.value.schema.validation": "id"},  # its records are checked
    "stamped": {"tidelog.provenance": "stamp"},
    "append-time": {"message.timestamp.type": "LogAppendTime"},
    "recent-only": {"message.timestamp.before.max.ms": "60000"},
    "small-records": {"max.message.bytes": "80"},
}
CODEC_TOPICS: dict[str, dict[str, str]] = {
    # a topic naming a codec rewrites a batch in another (``uncompressed`` too)
    "gzip-topic": {"compression.type": "gzip"},
    "uncompressed-topic": {"compression.type": "uncompressed"},
    "append-time-gzip": {"message.timestamp.type": "LogAppendTime", "compression.type": "gzip"},
}
DENY, ALLOW = 2, 3
ACLS = (
    AclBinding(
        ResourceType.TOPIC, "denied", PatternType.LITERAL, "User:*", "*", AclOperation.WRITE, DENY
    ),
    # Creating a topic needs CREATE on the cluster or the topic: "missing"
    # may be written but not created (a topic with ACLs allows only what
    # they allow), "created" has none and is created by its first Produce.
    AclBinding(
        ResourceType.CLUSTER,
        CLUSTER_NAME,
        PatternType.LITERAL,
        "User:*",
        "*",
        AclOperation.CREATE,
        DENY,
    ),
    AclBinding(
        ResourceType.TOPIC, "missing", PatternType.LITERAL, "User:*", "*", AclOperation.WRITE, ALLOW
    ),
)


def _batch(key: bytes | None = None, value: bytes = b"v", **options: Any) -> bytes:
    # the time of the engines' clocks (ManualClock's), so that both engines
    # stamp and bound timestamps alike
    return bytes(native.encode_batch([RecordSpec(1_700_000_000_000, key, value, ())], **options))


_GOOD = _batch()
_CORRUPT = bytearray(_GOOD)
_CORRUPT[-1] ^= 0xFF  # the CRC no longer matches
RECORDS = {
    "plain batch": _GOOD,
    "keyed batch": _batch(b"k"),
    "old batch": bytes(native.encode_batch([RecordSpec(1_000, None, b"v", ())])),
    "large batch": _batch(value=b"v" * 200),
    "idempotent batch": _batch(producer_id=7, producer_epoch=0, base_sequence=0),
    "transactional batch": _batch(
        producer_id=8, producer_epoch=0, base_sequence=0, is_transactional=True
    ),
    "zstd batch": _batch(compression=4),
    "corrupt batch": bytes(_CORRUPT),
    "two batches": _GOOD + _GOOD,
    "cut short": _GOOD[:30],
    "empty": b"",
    "null": None,
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerState, ServerState]]:
    states = []
    acls = CatalogState()
    acls.apply(["acls_add", [acl.to_wire() for acl in ACLS]])
    authorizer = AclAuthorizer(acls, allow_everyone_if_no_acl_found=True)
    for name in ("fast", "general"):
        opened = engine.open(
            Path(tmp_path_factory.mktemp(name)),
            config=engine.EngineConfig(auto_create_topics=True),
            clock=ManualClock(),
        )
        for topic, configs in (TOPICS | CODEC_TOPICS).items():
            opened.create_topic(topic, 3, configs)
        state = ServerState(opened, ServerConfig(), "cluster", Broker(0, "127.0.0.1", 9092))
        state.authorizer = authorizer
        states.append(state)
    yield states[0], states[1]
    for state in states:
        state.engine.close()


def _request(topic: str, index: int, records: bytes | None, acks: int) -> ProduceRequest:
    data = None if records is None else memoryview(bytearray(records))
    return ProduceRequest(None, acks, 30_000, [TopicData(topic, [PartitionData(index, data)])])


async def _answer(handler: Any, state: ServerState, header: RequestHeader, request: Any) -> Any:
    response = handler(RequestContext(state, header), request)
    if inspect.isawaitable(response):
        try:
            response = await response
        except Exception as error:  # acks=0 refused: its connection closes
            return (type(error).__name__, str(error))
    return None if response is None else b"".join(encode_response(header, response))


async def _general(state: ServerState, header: RequestHeader, request: Any) -> Any:
    """_produce's answer written through the schema's walk, not from a
    template: the fast path's template is held to the schema's bytes, and
    so is the way the handler fills it in (which offset goes where)."""

    def through_the_schema(header: RequestHeader, results: Any) -> Any:
        return produce._response(header.api_version, results)

    with mock.patch.object(produce, "_answer", through_the_schema):
        return await _answer(_produce, state, header, request)


VERSIONS = (3, 6, 7, 9, 11)
NAMES = (*TOPICS, "missing", "created", "__consumer_offsets")
"""``missing`` may not be created (ACLS), ``created`` is, by its first Produce."""
INDEXES = (-1, 0, 3)
ACKS = (-1, 0, 1, 2)


def test_every_request_of_the_sweep_is_answered_as_the_general_path_answers_it(
    servers: tuple[ServerState, ServerState],
) -> None:
    """Each check is a rule about one or two of a request's parts: every
    combination of them, once (a random draw of 150 leaves most out)."""
    fast, general = servers
    differ = []

    async def sweep() -> None:
        for version, topic, index, records, acks in itertools.product(
            VERSIONS, NAMES, INDEXES, RECORDS, ACKS
        ):
            header = RequestHeader(ApiKey.PRODUCE, version, 17, "client", 0)
            data = RECORDS[records]
            one = await _answer(handle_produce, fast, header, _request(topic, index, data, acks))
            other = await _general(general, header, _request(topic, index, data, acks))
            if one != other:
                differ.append((version, topic, index, records, acks, one, other))

    asyncio.run(sweep())
    assert differ == []


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    version=st.sampled_from(VERSIONS),
    topic=st.sampled_from(NAMES),
    index=st.sampled_from((*INDEXES, 2)),
    records=st.sampled_from(list(RECORDS)),
    acks=st.sampled_from([-1, 0, 1, 2]),
)
def test_the_one_partition_path_answers_as_the_general_path(
    servers: tuple[ServerState, ServerState],
    version: int,
    topic: str,
    index: int,
    records: str,
    acks: int,
) -> None:
    fast, general = servers
    header = RequestHeader(ApiKey.PRODUCE, version, 17, "client", 0)
    data = RECORDS[records]

    async def both() -> tuple[Any, Any]:
        one = await _answer(handle_produce, fast, header, _request(topic, index, data, acks))
        other = await _general(general, header, _request(topic, index, data, acks))
        return one, other

    one, other = asyncio.run(both())
    assert one == other


ATTRIBUTE_RECORDS = {
    "control batch": _batch(
        producer_id=9, producer_epoch=0, is_transactional=True, is_control=True
    ),
    "transactional without a producer": _batch(is_transactional=True),
    "stamped by the producer": _batch(timestamp_type=1),
    "stamped gzip": _batch(timestamp_type=1, compression=1),
    "gzip batch": _batch(compression=1),
    "zstd batch": _batch(compression=4),
    "plain batch": _GOOD,
}


def test_each_attribute_is_answered_as_the_general_path_answers_it(
    servers: tuple[ServerState, ServerState],
) -> None:
    """The rules a batch's attributes and its topic's codec and timestamp
    type make (validation reads them only when a bit is set): each
    combination answered alike by both paths, and the stored batch alike."""
    fast, general = servers
    differ = []

    async def sweep() -> None:
        for version, topic, records, acks in itertools.product(
            (7, 9, 11), (*CODEC_TOPICS, "append-time", "plain"), ATTRIBUTE_RECORDS, (-1, 1)
        ):
            header = RequestHeader(ApiKey.PRODUCE, version, 17, "client", 0)
            data = ATTRIBUTE_RECORDS[records]
            one = await _answer(handle_produce, fast, header, _request(topic, 2, data, acks))
            other = await _general(general, header, _request(topic, 2, data, acks))
            if one != other:
                differ.append((version, topic, records, acks, one, other))

    asyncio.run(sweep())
    assert differ == []
    for topic in (*CODEC_TOPICS, "append-time", "plain"):
        stored = [
            [bytes(b) for b in state.engine.fetch(topic, 2, 0, 1 << 20).records]
            for state in (fast, general)
        ]
        assert stored[0] == stored[1]


def test_the_common_request_takes_the_one_partition_path(
    servers: tuple[ServerState, ServerState],
) -> None:
    fast, _ = servers
    header = RequestHeader(ApiKey.PRODUCE, 9, 1, "client", 0)

    async def produce() -> Any:
        context = RequestContext(fast, header)
        answer = _produce_one(context, _request("plain", 1, _GOOD, -1))
        assert answer is not None
        assert inspect.isawaitable(answer)
        return await answer

    asyncio.run(produce())


@pytest.mark.parametrize(
    ("topic", "acks"), [("plain", 0), ("denied", -1), ("governed", 1), ("missing", -1)]
)
def test_a_request_the_one_partition_path_declines_is_offered_to_it_once(
    servers: tuple[ServerState, ServerState], topic: str, acks: int
) -> None:
    """acks=0, a refused WRITE, a topic that checks records, a topic that
    does not exist: declined by _produce_one in handle_produce, and
    answered by the general path without a second look."""
    fast, _ = servers
    header = RequestHeader(ApiKey.PRODUCE, 9, 1, "client", 0)
    with mock.patch.object(produce, "_produce_one", wraps=_produce_one) as offered:
        asyncio.run(_answer(handle_produce, fast, header, _request(topic, 1, _GOOD, acks)))
    assert offered.call_count == 1


def test_the_one_partition_path_looks_its_partition_up_once(
    servers: tuple[ServerState, ServerState],
) -> None:
    """The leader the path looked at for its checks is the one it appends
    to (Engine.submit_then_to), not looked up again by the append."""
    fast, _ = servers
    header = RequestHeader(ApiKey.PRODUCE, 9, 1, "client", 0)
    opened = fast.engine
    with mock.patch.object(opened, "partition", wraps=opened.partition) as looked_up:
        answer = asyncio.run(_answer(handle_produce, fast, header, _request("plain", 2, _GOOD, -1)))
    assert answer is not None
    assert looked_up.call_count == 1
