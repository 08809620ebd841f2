"""Which topics a KIP-848 group's members subscribe to: by name, or by a
regular expression matched against the whole topic name (as Kafka does),
and the subscribed topics' metadata the target assignment is computed from.

A regex counts by its resolution, as in Kafka's GroupMetadataManager: the
topics it matched when the group last resolved its regexes. Resolving is
the group's job off the heartbeat path (a timer of its coordinator), so a
heartbeat that brings a new regex is answered without its topics, and a
later one, after the resolution moved the group epoch on, gets them.
``RegexResolutions`` says when a resolution is due: at once for a regex
no member had, after the batch interval when topics were created or
deleted since the last one, and after the refresh interval in any case."""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Mapping, Set
from typing import NamedTuple

from engine.groups.assignors import TopicId
from engine.groups.config import GroupConfig
from engine.groups.consumer_member import ConsumerMember
from engine.linear_regex import InvalidPattern, LinearPattern, compile_linear


class TopicInfo(NamedTuple):
    topic_id: TopicId
    partitions: int


@functools.lru_cache(maxsize=256)
def compile_regex(regex: str) -> LinearPattern:
    """Compiled as Kafka compiles it, by RE2 (engine/linear_regex.py):
    matched against every topic name, it must not backtrack."""
    return compile_linear(regex)


@functools.lru_cache(maxsize=65536)
def matches(regex: str, topic: str) -> bool:
    """Kafka matches a subscription's regex against the whole topic name.
    Remembered: a group's regexes are matched against every topic each time
    the topics or the subscriptions change."""
    try:
        return compile_regex(regex).fullmatch(topic) is not None
    except InvalidPattern:
        return False


class RegexResolutions:
    """The group's subscribed regexes, each with the topic names it
    matched at the last resolution (Kafka's resolved regular expressions)."""

    def __init__(self) -> None:
        self.topics: dict[str, frozenset[str]] = {}
        self.resolved_ms: int | None = None
        """When the regexes were last resolved; None: not since loading."""
        self.seen: frozenset[str] | None = None
        """Every topic that existed at the last resolution."""

    def refresh_delay_ms(
        self, regexes: Set[str], existing: Collection[str], now_ms: int, config: GroupConfig
    ) -> int | None:
        """In how long the group should resolve ``regexes`` again; None: no need."""
        if not regexes:
            return None
        last = self.resolved_ms
        if last is None or regexes - self.topics.keys():
            return 0
        if now_ms - last >= config.group_consumer_regex_refresh_interval_ms:
            return 0
        if (
            self.seen is None
            or len(self.seen) != len(existing)
            or not self.seen.issuperset(existing)
        ):
            return max(0, last + config.group_consumer_regex_batch_refresh_interval_ms - now_ms)
        return None

    def forget_unused(self, regexes: Set[str]) -> None:
        """Forgets the resolutions of regexes no member has any more, so one
        that comes back is resolved anew (Kafka deletes its resolution)."""
        for regex in self.topics.keys() - regexes:
            del self.topics[regex]

    def resolve(
        self,
        regexes: Set[str],
        existing: Collection[str],
        now_ms: int,
        refused: Callable[[Collection[str]], Set[str]] | None = None,
    ) -> bool:
        """Resolves ``regexes`` against the ``existing`` topics (forgetting
        those no member has any more), leaving out the matching ones that
        ``refused`` names (topics the asking principal may not describe);
        whether any resolves to other topics."""
        topics = {r: frozenset(n for n in existing if matches(r, n)) for r in regexes}
        if refused is not None:
            hidden = refused(frozenset().union(*topics.values()))
            if hidden:
                topics = {r: found - hidden for r, found in topics.items()}
        changed = any(self.topics.get(r) != found for r, found in topics.items())
        self.topics = topics
        self.resolved_ms = now_ms
        self.seen = frozenset(existing)
        return changed

    def restore(self, regexes: Set[str], subscribed: Iterable[str]) -> None:
        """After a restart: each regex's topics among those the group was
        subscribed to when stored (what its last resolution found there);
        the first heartbeat has them resolved again."""
        names = list(subscribed)
        self.topics = {r: frozenset(n for n in names if matches(r, n)) for r in regexes}
        self.resolved_ms = self.seen = None

    def topic_names(self, member: ConsumerMember) -> frozenset[str]:
        """The topics the member's regex resolved to (none without one)."""
        regex = member.subscribed_topic_regex
        return frozenset() if regex is None else self.topics.get(regex, frozenset())


def subscribed_regexes(members: Iterable[ConsumerMember]) -> set[str]:
    return {m.subscribed_topic_regex for m in members if m.subscribed_topic_regex is not None}


def subscription_metadata(
    members: Iterable[ConsumerMember],
    resolutions: RegexResolutions,
    existing: Mapping[str, TopicInfo],
) -> dict[str, TopicInfo]:
    """The topics that exist among those the members subscribe to, by name
    or by their regex's resolution."""
    names: set[str] = set()
    for member in members:
        names.update(member.subscribed_topic_names)
        names.update(resolutions.topic_names(member))
    return {n: existing[n] for n in sorted(names) if n in existing}


def member_topic_ids(
    member: ConsumerMember, topics: Mapping[str, TopicInfo], resolutions: RegexResolutions
) -> frozenset[TopicId]:
    """The ids of the topics among ``topics`` the member subscribes to."""
    names = set(member.subscribed_topic_names) | resolutions.topic_names(member)
    return frozenset(topics[n].topic_id for n in names if n in topics)
