"""The consumer protocol's codec (engine/protocol/consumer_protocol.py)
against Kafka's schemas (kio's ConsumerProtocolSubscription and
ConsumerProtocolAssignment, versions 0-3): every version encodes as the
schema writes it and decodes back; what it cannot read is refused with
ConsumerProtocolError, never with another exception; and the topics-only
reader the group coordinator uses agrees with the whole decoder."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kio.schema.consumer_protocol_assignment.v0 import data as assignment_v0
from kio.schema.consumer_protocol_assignment.v1 import data as assignment_v1
from kio.schema.consumer_protocol_assignment.v2 import data as assignment_v2
from kio.schema.consumer_protocol_assignment.v3 import data as assignment_v3
from kio.schema.consumer_protocol_subscription.v0 import data as subscription_v0
from kio.schema.consumer_protocol_subscription.v1 import data as subscription_v1
from kio.schema.consumer_protocol_subscription.v2 import data as subscription_v2
from kio.schema.consumer_protocol_subscription.v3 import data as subscription_v3
from kio.serial import entity_reader, entity_writer
from kio.static.primitive import i32

from engine.groups.subscription import subscribed_topics
from engine.protocol.consumer_protocol import (
    Assignment,
    ConsumerProtocolError,
    Subscription,
    decode_assignment,
    decode_subscribed_topics,
    decode_subscription,
    encode_assignment,
    encode_subscription,
)
from engine.types import TopicPartition

SUBSCRIPTION_SCHEMAS: dict[int, Any] = {
    0: subscription_v0,
    1: subscription_v1,
    2: subscription_v2,
    3: subscription_v3,
}
ASSIGNMENT_SCHEMAS: dict[int, Any] = {
    0: assignment_v0,
    1: assignment_v1,
    2: assignment_v2,
    3: assignment_v3,
}

topic_names = st.text(alphabet="abtxyz.-_09", min_size=1, max_size=6)
partition_lists = st.lists(
    st.builds(TopicPartition, topic_names, st.integers(0, 2**31 - 1)), max_size=8, unique=True
)
int32s = st.integers(-(2**31), 2**31 - 1)
subscriptions = st.builds(
    Subscription,
    st.lists(topic_names, max_size=5),
    st.none() | st.binary(max_size=12),
    partition_lists,
    int32s,
    st.none() | st.text(max_size=6),
)


def kio_bytes(version: int, entity: Any) -> bytes:
    out = io.BytesIO()
    out.write(version.to_bytes(2, "big"))
    entity_writer(type(entity))(out, entity)
    return out.getvalue()


def kio_partitions(schema: Any, partitions: list[TopicPartition]) -> tuple[Any, ...]:
    by_topic: dict[str, list[int]] = {}
    for tp in sorted(partitions):
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return tuple(
        schema.TopicPartition(topic=t, partitions=tuple(i32(p) for p in ps))
        for t, ps in by_topic.items()
    )


def kio_subscription(version: int, sub: Subscription) -> Any:
    schema = SUBSCRIPTION_SCHEMAS[version]
    fields: dict[str, Any] = {"topics": tuple(sub.topics), "user_data": sub.user_data}
    if version >= 1:
        fields["owned_partitions"] = kio_partitions(schema, sub.owned_partitions)
    if version >= 2:
        fields["generation_id"] = i32(sub.generation_id)
    if version >= 3:
        fields["rack_id"] = sub.rack_id
    return schema.ConsumerProtocolSubscription(**fields)


# -- subscriptions --------------------------------------------------------------------------


@given(subscriptions, st.integers(0, 3))
def test_a_subscription_is_encoded_as_kafkas_schema_writes_it(
    sub: Subscription, version: int
) -> None:
    encoded = encode_subscription(sub, version)
    assert encoded == kio_bytes(version, kio_subscription(version, sub))
    decoded = decode_subscription(encoded)
    assert decoded.topics == sub.topics
    assert decoded.user_data == sub.user_data
    assert decoded.owned_partitions == (sorted(sub.owned_partitions) if version >= 1 else [])
    assert decoded.generation_id == (sub.generation_id if version >= 2 else -1)
    assert decoded.rack_id == (sub.rack_id if version >= 3 else None)


@given(subscriptions)
def test_kio_reads_a_subscription_as_written(sub: Subscription) -> None:
    encoded = encode_subscription(sub)
    read, size = entity_reader(subscription_v3.ConsumerProtocolSubscription)(encoded[2:], 0)
    assert size == len(encoded) - 2
    assert read == kio_subscription(3, sub)


@given(partition_lists, st.none() | st.binary(max_size=12), st.integers(0, 3))
def test_an_assignment_is_encoded_as_kafkas_schema_writes_it(
    partitions: list[TopicPartition], user_data: bytes | None, version: int
) -> None:
    schema = ASSIGNMENT_SCHEMAS[version]
    encoded = encode_assignment(Assignment(partitions, user_data), version)
    entity = schema.ConsumerProtocolAssignment(
        assigned_partitions=kio_partitions(schema, partitions), user_data=user_data
    )
    assert encoded == kio_bytes(version, entity)
    assert decode_assignment(encoded) == Assignment(sorted(partitions), user_data)


@given(partition_lists, st.none() | st.binary(max_size=12), st.integers(0, 3))
def test_kio_reads_an_assignment_as_written(
    partitions: list[TopicPartition], user_data: bytes | None, version: int
) -> None:
    schema = ASSIGNMENT_SCHEMAS[version]
    encoded = encode_assignment(Assignment(partitions, user_data), version)
    read, size = entity_reader(schema.ConsumerProtocolAssignment)(encoded[2:], 0)
    assert size == len(encoded) - 2
    assert read == schema.ConsumerProtocolAssignment(
        assigned_partitions=kio_partitions(schema, partitions), user_data=user_data
    )


@given(subscriptions, st.integers(0, 3))
def test_the_topics_reader_agrees_with_the_whole_decoder(sub: Subscription, version: int) -> None:
    encoded = encode_subscription(sub, version)
    assert decode_subscribed_topics(encoded) == set(decode_subscription(encoded).topics)
    assert subscribed_topics(encoded) == set(sub.topics)


@given(st.binary(max_size=64))
def test_garbage_topics_are_refused_or_read(data: bytes) -> None:
    with contextlib.suppress(ConsumerProtocolError):
        assert isinstance(decode_subscribed_topics(data), set)


def test_a_null_topic_array_is_not_known_to_the_coordinator() -> None:
    null_topics = b"\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff"
    assert decode_subscription(null_topics).topics == []
    with pytest.raises(ConsumerProtocolError):
        decode_subscribed_topics(null_topics)
    assert subscribed_topics(null_topics) is None


@given(subscriptions, st.integers(4, 2**15 - 1), st.binary(max_size=10))
def test_a_later_version_reads_as_version_3_and_trailing_bytes_are_ignored(
    sub: Subscription, version: int, trailing: bytes
) -> None:
    encoded = encode_subscription(sub)
    later = version.to_bytes(2, "big") + encoded[2:] + trailing
    assert decode_subscription(later) == decode_subscription(encoded)


@given(st.binary(max_size=64))
def test_garbage_is_a_protocol_error_or_a_value(data: bytes) -> None:
    for decode in (decode_subscription, decode_assignment):
        with contextlib.suppress(ConsumerProtocolError):
            decode(data)


@given(subscriptions)
def test_a_cut_subscription_is_refused_before_its_required_fields_end(sub: Subscription) -> None:
    encoded = encode_subscription(sub, 1)  # v1: every field required
    for end in range(len(encoded)):
        with pytest.raises(ConsumerProtocolError):
            decode_subscription(encoded[:end])


def test_an_empty_assignment_is_no_partitions() -> None:
    assert decode_assignment(b"") == Assignment([])


def test_a_negative_version_is_refused() -> None:
    with pytest.raises(ConsumerProtocolError):
        decode_subscription(b"\xff\xff" + encode_subscription(Subscription(["t"]))[2:])
