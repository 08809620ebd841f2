"""The topics a consumer subscribes to, read from its JoinGroup metadata.

Members of a "consumer" group send a ConsumerProtocolSubscription as their
protocol metadata (engine/protocol/consumer_protocol.py); the coordinator
reads only its topic names, which every version puts first. Anything that
does not parse is None, "not known", and the coordinator then assumes
every topic may be consumed (as Kafka does).
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.protocol.consumer_protocol import (
    CONSUMER_PROTOCOL_TYPE,
    ConsumerProtocolError,
    decode_subscribed_topics,
)

__all__ = ["CONSUMER_PROTOCOL_TYPE", "group_subscription", "subscribed_topics"]


def subscribed_topics(metadata: bytes) -> set[str] | None:
    """The topics of one member's subscription, or None if it does not parse."""
    try:
        return decode_subscribed_topics(metadata)
    except ConsumerProtocolError:
        return None


def group_subscription(protocol_type: str | None, metadata: Iterable[bytes]) -> set[str] | None:
    """The union of the members' subscriptions for a consumer group; None
    if the group is not one or a member's metadata does not parse."""
    if protocol_type != CONSUMER_PROTOCOL_TYPE:
        return None
    topics: set[str] = set()
    for member in metadata:
        found = subscribed_topics(member)
        if found is None:
            return None
        topics |= found
    return topics
