"""The server-side assignors of KIP-848 consumer groups: "uniform" and "range".

In the consumer group protocol the coordinator computes every member's
target assignment itself, with the assignor the members ask for
(``group.remote.assignor``). An assignor is a pure function: from the
members' subscriptions (topic ids) and their previous target assignments,
and the partition count of each subscribed topic, to the new target
assignment. Both are deterministic: the same input gives the same output,
whatever the order of the mappings.

- **uniform** (the default): spreads the partitions evenly and keeps each
  member's previous partitions where that stays balanced. When every
  member subscribes to the same topics, every member ends with the same
  count, give or take one, and a member keeps at least as many of its
  previous partitions as that count allows (none moves that need not).
  With different subscriptions, each partition goes to one of its
  subscribers and no partition could move to another of its subscribers
  that has two or more fewer partitions than its owner.
- **range**: per topic, the subscribers (ordered by instance id, else
  member id) each get a contiguous share, the first ones one partition
  more when the count does not divide; a member keeps its previous
  partitions of the topic up to its share. Topics with the same partition
  count and the same subscribers are co-partitioned: a member gets the
  same partition numbers of each.

Partitions of topics nobody subscribes to are not assigned; topics that do
not exist are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import NamedTuple, Protocol

TopicId = bytes
Assignment = Mapping[TopicId, Set[int]]
"""Partitions by topic id."""


class MemberSpec(NamedTuple):
    """What an assignor knows of one member."""

    instance_id: str | None
    rack_id: str | None
    topics: Set[TopicId]
    """The topics it subscribes to (by id)."""
    assignment: Assignment
    """Its previous target assignment (empty for a new member)."""


class ServerAssignor(Protocol):
    """An assignor the coordinator runs (the clients' own, for classic
    groups, are in engine/client/assignors.py)."""

    name: str

    def assign(
        self, members: Mapping[str, MemberSpec], partitions: Mapping[TopicId, int]
    ) -> dict[str, dict[TopicId, frozenset[int]]]:
        """Every member's target assignment (members with none get ``{}``)."""
        ...


Partition = tuple[TopicId, int]


def _result(
    members: Mapping[str, MemberSpec], owned: Mapping[str, set[Partition]]
) -> dict[str, dict[TopicId, frozenset[int]]]:
    result: dict[str, dict[TopicId, frozenset[int]]] = {}
    for member_id in members:
        by_topic: dict[TopicId, set[int]] = {}
        for topic_id, partition in owned.get(member_id, ()):
            by_topic.setdefault(topic_id, set()).add(partition)
        result[member_id] = {t: frozenset(p) for t, p in sorted(by_topic.items())}
    return result


def _previous(spec: MemberSpec, partitions: Mapping[TopicId, int]) -> list[Partition]:
    """The member's previous partitions that it may keep: of topics it still
    subscribes to, that still exist, in order."""
    return sorted(
        (topic_id, p)
        for topic_id, ps in spec.assignment.items()
        if topic_id in spec.topics and topic_id in partitions
        for p in ps
        if 0 <= p < partitions[topic_id]
    )


class ServerUniformAssignor:
    """Balanced and sticky (see the module's docstring)."""

    name = "uniform"

    def assign(
        self, members: Mapping[str, MemberSpec], partitions: Mapping[TopicId, int]
    ) -> dict[str, dict[TopicId, frozenset[int]]]:
        order = sorted(members)
        subscribed = {m: frozenset(t for t in members[m].topics if t in partitions) for m in order}
        if len(set(subscribed.values())) <= 1:
            owned = self._homogeneous(order, members, subscribed, partitions)
        else:
            owned = self._heterogeneous(order, members, subscribed, partitions)
        return _result(members, owned)

    @staticmethod
    def _homogeneous(
        order: list[str],
        members: Mapping[str, MemberSpec],
        subscribed: Mapping[str, frozenset[TopicId]],
        partitions: Mapping[TopicId, int],
    ) -> dict[str, set[Partition]]:
        """Every member subscribes to the same topics: each gets ``quota``
        partitions and ``extra`` of them one more, keeping its previous ones
        first."""
        owned: dict[str, set[Partition]] = {m: set() for m in order}
        if not order:
            return owned
        topics = sorted(subscribed[order[0]])
        every = [(t, p) for t in topics for p in range(partitions[t])]
        quota, extra = divmod(len(every), len(order))
        taken: set[Partition] = set()
        kept: dict[str, list[Partition]] = {}
        for member_id in order:
            mine = [tp for tp in _previous(members[member_id], partitions) if tp not in taken]
            kept[member_id] = mine
            for tp in mine[:quota]:
                owned[member_id].add(tp)
                taken.add(tp)
        # Members that had more than their quota keep one more, while the
        # extra places last.
        for member_id in order:
            if extra == 0:
                break
            spare = [tp for tp in kept[member_id][quota:] if tp not in taken]
            if spare:
                owned[member_id].add(spare[0])
                taken.add(spare[0])
                extra -= 1
        free = iter([tp for tp in every if tp not in taken])
        for member_id in order:
            while len(owned[member_id]) < quota:
                owned[member_id].add(next(free))
        for member_id in order:
            if extra == 0:
                break
            if len(owned[member_id]) == quota:
                owned[member_id].add(next(free))
                extra -= 1
        return owned

    @staticmethod
    def _heterogeneous(
        order: list[str],
        members: Mapping[str, MemberSpec],
        subscribed: Mapping[str, frozenset[TopicId]],
        partitions: Mapping[TopicId, int],
    ) -> dict[str, set[Partition]]:
        """Different subscriptions: keep previous partitions, give each free
        one to its least loaded subscriber, then move partitions from a
        subscriber to another with two or more fewer until none can."""
        owned: dict[str, set[Partition]] = {m: set() for m in order}
        owner: dict[Partition, str] = {}
        for member_id in order:
            for tp in _previous(members[member_id], partitions):
                if tp not in owner:
                    owner[tp] = member_id
                    owned[member_id].add(tp)
        subscribers = {t: [m for m in order if t in subscribed[m]] for t in sorted(partitions)}
        # Topics with the fewest subscribers first: they have the least choice.
        free = sorted(
            ((t, p) for t, ms in subscribers.items() if ms for p in range(partitions[t])),
            key=lambda tp: (len(subscribers[tp[0]]), tp),
        )
        rank = {m: i for i, m in enumerate(order)}
        for tp in free:
            if tp in owner:
                continue
            member_id = min(subscribers[tp[0]], key=lambda m: (len(owned[m]), rank[m]))
            owner[tp] = member_id
            owned[member_id].add(tp)
        moved = True
        while moved:
            moved = False
            for tp in sorted(owner):
                current = owner[tp]
                target = min(subscribers[tp[0]], key=lambda m: (len(owned[m]), rank[m]))
                if len(owned[current]) - len(owned[target]) >= 2:
                    owned[current].discard(tp)
                    owned[target].add(tp)
                    owner[tp] = target
                    moved = True
        return owned


class ServerRangeAssignor:
    """Contiguous shares per topic, co-partitioned (see the module's docstring)."""

    name = "range"

    def assign(
        self, members: Mapping[str, MemberSpec], partitions: Mapping[TopicId, int]
    ) -> dict[str, dict[TopicId, frozenset[int]]]:
        order = sorted(members, key=lambda m: (members[m].instance_id or m, m))
        owned: dict[str, set[Partition]] = {m: set() for m in order}
        for topic_id in sorted(partitions):
            subscribers = [m for m in order if topic_id in members[m].topics]
            if not subscribers:
                continue
            count = partitions[topic_id]
            quota, extra = divmod(count, len(subscribers))
            shares = {m: quota + (1 if i < extra else 0) for i, m in enumerate(subscribers)}
            taken: set[int] = set()
            mine: dict[str, list[int]] = {}
            for member_id in subscribers:
                previous = sorted(
                    p for p in members[member_id].assignment.get(topic_id, ()) if 0 <= p < count
                )
                keep = [p for p in previous if p not in taken][: shares[member_id]]
                mine[member_id] = keep
                taken.update(keep)
            free = iter([p for p in range(count) if p not in taken])
            for member_id in subscribers:
                while len(mine[member_id]) < shares[member_id]:
                    mine[member_id].append(next(free))
                owned[member_id].update((topic_id, p) for p in mine[member_id])
        return _result(members, owned)


ASSIGNORS: dict[str, ServerAssignor] = {
    a.name: a for a in (ServerUniformAssignor(), ServerRangeAssignor())
}
"""Every server-side assignor, by name; ``group_consumer_assignors`` says
which of them a broker offers (the first is the default)."""
