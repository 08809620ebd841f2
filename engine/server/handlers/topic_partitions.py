"""DescribeTopicPartitions (KIP-966): Metadata's topics and partitions,
a page at a time. The Java admin client's describeTopics asks it since
3.7; a client walks a large cluster with the cursor each answer gives.

Followed: Kafka 4.0's DescribeTopicPartitionsRequestHandler and
KRaftMetadataCache.getTopicMetadataForDescribeTopicResponse. Topics are
described in name order from the cursor's topic (from the cursor's
partition in that topic), until the answer holds the request's
response_partition_limit partitions, at most the server's
max.request.partition.size.limit (and at least one); where it stops, the
next cursor says where to go on. Named topics the principal may not
DESCRIBE are answered TOPIC_AUTHORIZATION_FAILED after the others; with
no topic named, every topic the principal may describe, and no other.
A request about more than MANY_TOPICS topics is answered on the admin
thread, as Metadata's is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from engine.errors import EngineError
from engine.internal_topics import (
    INTERNAL_TOPIC_IDS,
    INTERNAL_TOPIC_PARTITIONS,
    INTERNAL_TOPICS,
    is_internal_topic,
)
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server import authorize
from engine.server.authorizer import AUTHORIZED_OPERATIONS_OMITTED, AclOperation, ResourceType
from engine.server.context import Body, RequestContext, Response, off_loop
from engine.server.handlers.common import authorized_operations
from engine.server.handlers.metadata import MANY_TOPICS, partitions_of
from engine.server.handlers.registry import handles
from engine.topic_names import is_legal_topic_name

if TYPE_CHECKING:
    from engine.server.handlers.requests import DescribeTopicPartitionsRequest


class TopicShape(NamedTuple):
    topic_id: bytes
    partitions: int


class PageTopic(NamedTuple):
    """A topic of one answer: its partitions from index ``first`` up to
    ``end``; ``shape`` None for a topic that does not exist (answered with
    its error)."""

    name: str
    shape: TopicShape | None
    first: int
    end: int


class Cursor(NamedTuple):
    topic_name: str
    partition_index: int


@handles(
    ApiKey.DESCRIBE_TOPIC_PARTITIONS,
    0,
    0,
    notes={
        0: "topics by name, or every describable topic, in name order, a page at a time"
        " (KIP-966): response_partition_limit, at most max.request.partition.size.limit"
        " (2000); the eligible leader replicas are empty (one replica)",
    },
)
def handle_describe_topic_partitions(
    context: RequestContext, request: DescribeTopicPartitionsRequest
) -> Response:
    every = not request.topics
    cursor = request.cursor
    after = cursor.topic_name if cursor is not None else ""
    if every:
        names = {n for n in (*context.engine.list_topics(), *INTERNAL_TOPICS) if n >= after}
    else:
        names = {t.name for t in request.topics if t.name >= after}
        if cursor is not None and cursor.topic_name not in names:
            return _refused(request)  # the cursor's topic must be one of those named
    if cursor is not None and cursor.partition_index < 0:
        return _refused(request)  # a cursor's partition index must be 0 or more
    if len(names) > MANY_TOPICS:
        # Every topic of a large engine: sorting them, authorizing them and
        # encoding a page of up to max.request.partition.size.limit topics
        # takes long enough (some 100 ms for 2,000 of 10,000 topics) to
        # stall every other connection's produce and fetch, as Metadata's.
        return off_loop(context, lambda: _page(context, request, names, every))
    return _page(context, request, names, every)


def _page(
    context: RequestContext,
    request: DescribeTopicPartitionsRequest,
    names: set[str],
    every: bool,
) -> Body:
    """The answer about ``names`` (those the request asks for from its
    cursor's topic on): the page the cursor starts, then the named topics
    the principal may not describe."""
    cursor = request.cursor
    after = cursor.topic_name if cursor is not None else ""
    refused = authorize.refused_topics(context, AclOperation.DESCRIBE, names)
    ceiling = context.server.config.max_request_partition_size_limit
    limit = max(min(ceiling, request.response_partition_limit), 1)
    start = {after: cursor.partition_index} if cursor is not None else {}
    shapes = _shapes(context, sorted(names - refused))
    page, next_cursor = plan_page(shapes, start, limit, every)
    topics = [_described(context, topic) for topic in page]
    if not every:  # Kafka does not disclose whether they exist
        denied = KafkaCode.TOPIC_AUTHORIZATION_FAILED
        topics.extend(_topic(name, denied, bytes(16), False, []) for name in sorted(refused))
    return {
        "throttle_time": 0,
        "topics": topics,
        "next_cursor": None if next_cursor is None else next_cursor._asdict(),
    }


def plan_page(
    shapes: Iterable[tuple[str, TopicShape | None]],
    start: Mapping[str, int],
    limit: int,
    every: bool,
) -> tuple[list[PageTopic], Cursor | None]:
    """The topics of one answer, in the order of ``shapes``, and the cursor
    of the next (None: done), as Kafka's
    getTopicMetadataForDescribeTopicResponse builds them: ``start`` is
    where a topic's partitions begin (the cursor's topic), ``limit`` the
    most partitions in all. A topic that does not exist is answered with
    its error when it was named; with every topic asked for, it was deleted
    meanwhile, and is left out."""
    remaining = limit
    page: list[PageTopic] = []
    for name, shape in shapes:
        if remaining == 0:
            # Full on a topic boundary: the next page starts at this topic
            # (which need not exist by then).
            return page, Cursor(name, 0)
        if shape is None:
            if not every:
                page.append(PageTopic(name, None, 0, 0))
            continue
        first = start.get(name, 0)
        end = max(min(shape.partitions, first + remaining), first)
        page.append(PageTopic(name, shape, first, end))
        if end < shape.partitions:
            return page, Cursor(name, end)
        remaining -= end - first
    return page, None


def _described(context: RequestContext, topic: PageTopic) -> dict[str, Any]:
    internal = is_internal_topic(topic.name)
    if topic.shape is None:
        code = (
            KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
            if is_legal_topic_name(topic.name)
            else KafkaCode.INVALID_TOPIC_EXCEPTION
        )
        described = _topic(topic.name, code, bytes(16), internal, [])
    else:
        partitions = partitions_of(
            0,
            context.broker.node_id,
            context.engine.leader_epoch,
            topic.end - topic.first,
            first=topic.first,
            api_key=ApiKey.DESCRIBE_TOPIC_PARTITIONS,
        )
        described = _topic(topic.name, KafkaCode.NONE, topic.shape.topic_id, internal, partitions)
    # Every topic answered but those refused, as Kafka's handler sets them.
    described["topic_authorized_operations"] = authorized_operations(
        context, ResourceType.TOPIC, topic.name, True
    )
    return described


def _shapes(context: RequestContext, names: list[str]) -> Iterator[tuple[str, TopicShape | None]]:
    """Each topic's id and partition count, None for one that does not exist."""
    engine = context.engine
    for name in names:
        if name in INTERNAL_TOPIC_IDS:
            yield name, TopicShape(INTERNAL_TOPIC_IDS[name], INTERNAL_TOPIC_PARTITIONS)
            continue
        try:
            yield name, TopicShape(*engine.topic_shape(name))
        except EngineError:
            yield name, None


def _topic(
    name: str, code: int, topic_id: bytes, internal: bool, partitions: Any
) -> dict[str, Any]:
    return {
        "error_code": code,
        "name": name,
        "topic_id": topic_id,
        "is_internal": internal,
        "partitions": partitions,
        "topic_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
    }


def _refused(request: DescribeTopicPartitionsRequest) -> dict[str, Any]:
    """A request Kafka's handler throws InvalidRequestException for:
    DescribeTopicPartitionsRequest.getErrorResponse answers each topic
    named with INVALID_REQUEST (and no topic when none is named)."""
    code = KafkaCode.INVALID_REQUEST
    return {
        "throttle_time": 0,
        "topics": [_topic(t.name, code, bytes(16), False, []) for t in request.topics],
        "next_cursor": None,
    }
