"""Which topics a KIP-848 group's members subscribe to: by name, or by a
regular expression matched against the whole topic name (as Kafka does),
and the subscribed topics' metadata the target assignment is computed from."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from engine.groups.assignors import TopicId
from engine.groups.consumer_member import ConsumerMember


class TopicInfo(NamedTuple):
    topic_id: TopicId
    partitions: int


@functools.lru_cache(maxsize=256)
def compile_regex(regex: str) -> re.Pattern[str]:
    return re.compile(regex)


@functools.lru_cache(maxsize=65536)
def matches(regex: str, topic: str) -> bool:
    """Kafka matches a subscription's regex against the whole topic name.
    Remembered: a group's regexes are matched against every topic each time
    the topics or the subscriptions change."""
    try:
        return compile_regex(regex).fullmatch(topic) is not None
    except (re.error, RecursionError, OverflowError):
        return False


def subscription_metadata(
    members: Iterable[ConsumerMember], existing: Mapping[str, TopicInfo]
) -> dict[str, TopicInfo]:
    """The topics that exist among those the members subscribe to."""
    names: set[str] = set()
    regexes: set[str] = set()
    for member in members:
        names.update(member.subscribed_topic_names)
        if member.subscribed_topic_regex is not None:
            regexes.add(member.subscribed_topic_regex)
    found = {n: existing[n] for n in names if n in existing}
    for regex in regexes:
        found.update((n, info) for n, info in existing.items() if matches(regex, n))
    return dict(sorted(found.items()))


def member_topic_ids(member: ConsumerMember, topics: Mapping[str, TopicInfo]) -> frozenset[TopicId]:
    """The ids of the topics among ``topics`` the member subscribes to."""
    ids = {topics[n].topic_id for n in member.subscribed_topic_names if n in topics}
    regex = member.subscribed_topic_regex
    if regex is not None:
        ids.update(info.topic_id for n, info in topics.items() if matches(regex, n))
    return frozenset(ids)


def regex_topic_names(member: ConsumerMember, topics: Iterable[str]) -> list[str]:
    """The topics among ``topics`` the member's regex matches."""
    regex = member.subscribed_topic_regex
    if regex is None:
        return []
    return [n for n in topics if matches(regex, n)]
