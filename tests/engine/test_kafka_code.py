"""The one Kafka error model: ``KafkaCode`` and the errors that carry it."""

from __future__ import annotations

import kafka.errors
import pytest
from hypothesis import given
from hypothesis import strategies as st

import engine
from engine.batch_refusals import batch_error
from engine.client.membership import group_error
from engine.errors import (
    EngineError,
    GroupError,
    NotCoordinator,
    UnknownMemberId,
    UnknownTopic,
    error_class,
    error_code,
)
from engine.protocol.apis import ApiKey
from engine.protocol.codec import encode_response
from engine.protocol.frames import RequestHeader
from engine.protocol.kafka_code import KafkaCode
from native.errors import BatchError, RejectedRecords

KNOWN = {member.value for member in KafkaCode}


def test_the_table_has_every_code_from_unknown_server_error_to_the_newest() -> None:
    assert sorted(KNOWN) == list(range(-1, 134))
    assert KafkaCode.NONE == 0 and KafkaCode.UNKNOWN_SERVER_ERROR == -1
    assert all(member.description for member in KafkaCode)


# kafka-python names these few codes as older Kafka releases did.
OLD_NAMES = {
    "UNKNOWN": KafkaCode.UNKNOWN_SERVER_ERROR,
    "NO_ERROR": KafkaCode.NONE,
    "NOT_LEADER_FOR_PARTITION": KafkaCode.NOT_LEADER_OR_FOLLOWER,
    "MESSAGE_SIZE_TOO_LARGE": KafkaCode.MESSAGE_TOO_LARGE,
    "INVALID_TOPIC": KafkaCode.INVALID_TOPIC_EXCEPTION,
    "INVALID_REPLICATION_ASSIGNMENT": KafkaCode.INVALID_REPLICA_ASSIGNMENT,
}


def test_names_values_and_retriable_agree_with_a_kafka_client() -> None:
    # kafka-python's table is an independent transcription of Kafka's.
    checked = 0
    for cls in kafka.errors.kafka_errors.values():
        if cls.errno is None:  # a client-side error, no code on the wire
            continue
        member = OLD_NAMES[cls.message] if cls.message in OLD_NAMES else KafkaCode[cls.message]
        assert member.value == cls.errno, cls
        # Kafka's CorruptRecordException is a RetriableException; kafka-python
        # marks CORRUPT_MESSAGE as not retriable.
        if member is not KafkaCode.CORRUPT_MESSAGE:
            assert member.retriable == cls.retriable, member
        checked += 1
    assert checked > 100


@given(st.integers(min_value=-(2**15), max_value=2**15 - 1))
def test_for_value_never_raises_on_a_code_a_peer_sends(value: int) -> None:
    member = KafkaCode.for_value(value)
    if value in KNOWN:
        assert member.value == value
    else:
        assert member is KafkaCode.UNKNOWN_SERVER_ERROR


def test_a_code_encodes_as_the_plain_int16_kafka_sends() -> None:
    header = RequestHeader(ApiKey.HEARTBEAT, 0, 7, "c", 0)

    def frame(code: int) -> bytes:
        return b"".join(bytes(part) for part in encode_response(header, {"error_code": code}))

    assert frame(KafkaCode.REBALANCE_IN_PROGRESS) == frame(27)
    assert frame(KafkaCode.REBALANCE_IN_PROGRESS)[-2:] == b"\x00\x1b"


def test_every_engine_error_carries_one_kafka_code() -> None:
    pending: list[type[EngineError]] = [EngineError]
    while pending:
        cls = pending.pop()
        assert isinstance(cls.code, KafkaCode), cls
        pending.extend(cls.__subclasses__())
    assert UnknownTopic("t").error_code is KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
    assert error_code(UnknownTopic("t")) is KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
    assert error_code(ValueError("untyped")) is KafkaCode.UNKNOWN_SERVER_ERROR


def test_the_class_of_a_code_comes_from_the_subclasses() -> None:
    for member in KafkaCode:
        cls = error_class(member)
        if cls is not None:
            assert cls.code is member
            assert isinstance(cls("a message"), EngineError)
    assert error_class(KafkaCode.UNKNOWN_MEMBER_ID) is UnknownMemberId
    assert error_class(KafkaCode.NOT_LEADER_OR_FOLLOWER) is engine.Fenced
    # UnknownTopic needs the topic's name: a code alone cannot build it
    assert error_class(KafkaCode.UNKNOWN_TOPIC_OR_PARTITION) is None


@pytest.mark.parametrize(
    ("code", "kind", "named"),
    [
        (KafkaCode.UNKNOWN_MEMBER_ID, UnknownMemberId, ""),
        (KafkaCode.STALE_MEMBER_EPOCH, engine.errors.StaleMemberEpoch, ""),
        # shared with the transaction coordinator, still what a group answers
        (KafkaCode.NOT_COORDINATOR, NotCoordinator, ""),
        # a group write the store refused for room: retriable, no GroupError
        (
            KafkaCode.COORDINATOR_NOT_AVAILABLE,
            engine.errors.CoordinatorNotAvailable,
            "(COORDINATOR_NOT_AVAILABLE)",
        ),
        (KafkaCode.COORDINATOR_LOAD_IN_PROGRESS, GroupError, "(COORDINATOR_LOAD_IN_PROGRESS)"),
        (9999, GroupError, "(9999)"),
    ],
)
def test_a_group_answer_becomes_its_typed_error(code: int, kind: type, named: str) -> None:
    error = group_error(code, "joining")
    assert type(error) is kind
    assert str(error).startswith("joining") and str(error).endswith(named)


def _native_errors() -> list[type[BatchError]]:
    found: list[type[BatchError]] = []
    pending: list[type[BatchError]] = [BatchError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("cls", _native_errors(), ids=lambda cls: cls.__name__)
def test_a_batch_error_becomes_the_engine_error_of_its_kafka_code(
    cls: type[BatchError],
) -> None:
    # native/ sits below the engine and names its code as a string: the name
    # must be a KafkaCode, and the engine's error for it must carry that code.
    if issubclass(cls, RejectedRecords):
        error: BatchError = cls("refused", position=0, record_errors=((0, "why"),))
    else:
        error = cls("refused", position=0)
    assert batch_error(error, "t", 0).code is KafkaCode[cls.kafka_error]
