"""The topics a consumer subscribes to, read from its JoinGroup metadata.

Members of a "consumer" group send a ConsumerProtocolSubscription
(kio.schema.consumer_protocol_subscription) as their protocol metadata:
an int16 version, then, in every version, the topic names first (an int32
count and int16-length strings). Only those are read, so later versions
read the same; anything that does not parse is None, "not known", and the
coordinator then assumes every topic may be consumed (as Kafka does).

Read by hand, with bounds checked, rather than with kio's native reader:
the metadata is whatever a client sent, and that reader trusts a count
before checking the bytes are there.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

CONSUMER_PROTOCOL_TYPE = "consumer"

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")


def subscribed_topics(metadata: bytes) -> set[str] | None:
    """The topics of one member's subscription, or None if it does not parse."""
    data = memoryview(metadata)
    if len(data) < 6:
        return None
    version = _INT16.unpack_from(data, 0)[0]
    count = _INT32.unpack_from(data, 2)[0]
    position = 6
    if version < 0 or count < 0 or count > (len(data) - position) // 2:
        return None
    topics = set()
    for _ in range(count):
        if position + 2 > len(data):
            return None
        length = _INT16.unpack_from(data, position)[0]
        position += 2
        if length < 0 or position + length > len(data):
            return None
        try:
            topics.add(str(data[position : position + length], "utf-8"))
        except UnicodeDecodeError:
            return None
        position += length
    return topics


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
