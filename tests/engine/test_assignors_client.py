"""The client-side assignors: Kafka's examples, and properties every assignment
must have (each partition at most once, only to a member subscribed to its
topic; balance; the cooperative protocol's rule that nothing changes hands
in one rebalance, and that it settles)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.client.assignors import (
    CooperativeStickyAssignor,
    MemberSubscription,
    RangeAssignor,
    RebalanceProtocol,
    RoundRobinAssignor,
    assignor,
    member_generation,
    rebalance_protocol,
)
from engine.protocol.consumer_protocol import Subscription
from engine.types import TopicPartition

GROUP_EXAMPLES = settings(max_examples=max(50, settings().max_examples // 4))
"""Whole groups are costly to draw: a quarter of the profile's examples."""

# -- Kafka's examples -------------------------------------------------------------------


def members(
    *specs: tuple[str, list[str]], instance: dict[str, str] | None = None
) -> list[MemberSubscription]:
    instance = instance or {}
    return [
        MemberSubscription(member_id, instance.get(member_id), Subscription(topics))
        for member_id, topics in specs
    ]


def tps(*specs: str) -> list[TopicPartition]:
    """ "t0p1" -> TopicPartition("t0", 1)."""
    out = []
    for spec in specs:
        topic, partition = spec.rsplit("p", 1)
        out.append(TopicPartition(topic, int(partition)))
    return out


def test_range_as_kafka_documents_it() -> None:
    # RangeAssignor's javadoc: C0, C1; t0 and t1 with 3 partitions each.
    got = RangeAssignor().assign(
        {"t0": 3, "t1": 3}, members(("C0", ["t0", "t1"]), ("C1", ["t0", "t1"]))
    )
    assert got == {"C0": tps("t0p0", "t0p1", "t1p0", "t1p1"), "C1": tps("t0p2", "t1p2")}


def test_roundrobin_as_kafka_documents_it() -> None:
    # RoundRobinAssignor's javadoc, both examples.
    two = members(("C0", ["t0", "t1"]), ("C1", ["t0", "t1"]))
    assert RoundRobinAssignor().assign({"t0": 3, "t1": 3}, two) == {
        "C0": tps("t0p0", "t0p2", "t1p1"),
        "C1": tps("t0p1", "t1p0", "t1p2"),
    }
    three = members(("C0", ["t0"]), ("C1", ["t0", "t1"]), ("C2", ["t0", "t1", "t2"]))
    assert RoundRobinAssignor().assign({"t0": 1, "t1": 2, "t2": 3}, three) == {
        "C0": tps("t0p0"),
        "C1": tps("t1p0"),
        "C2": tps("t1p1", "t2p0", "t2p1", "t2p2"),
    }


def test_static_members_come_first_in_instance_id_order() -> None:
    group = members(
        ("a-member", ["t"]),
        ("b-member", ["t"]),
        ("c-member", ["t"]),
        instance={"c-member": "i1", "b-member": "i2"},
    )
    got = RangeAssignor().assign({"t": 3}, group)
    assert got == {"c-member": tps("tp0"), "b-member": tps("tp1"), "a-member": tps("tp2")}


def test_topics_that_do_not_exist_are_not_assigned() -> None:
    group = members(("a", ["t", "missing"]), ("b", ["missing"]))
    for each in (RangeAssignor(), RoundRobinAssignor(), CooperativeStickyAssignor()):
        assert each.assign({"t": 2}, group) == {"a": tps("tp0", "tp1"), "b": []}


def test_the_rebalance_protocol_is_the_latest_every_assignor_supports() -> None:
    assert rebalance_protocol([assignor("range"), assignor("cooperative-sticky")]) == (
        RebalanceProtocol.EAGER
    )
    assert rebalance_protocol([assignor("cooperative-sticky")]) == RebalanceProtocol.COOPERATIVE
    with pytest.raises(ValueError, match="sticky"):
        assignor("sticky")


def test_the_generation_of_owned_partitions() -> None:
    assert member_generation(Subscription([], None, [], 7)) == 7
    java = CooperativeStickyAssignor().user_data(5)
    assert member_generation(Subscription([], java, [], -1)) == 5
    assert member_generation(Subscription([], b"\x01\x02", [], -1)) == -1


# -- properties -------------------------------------------------------------------------


@st.composite
def groups(
    draw: st.DrawFn, same_topics: bool = False
) -> tuple[dict[str, int], list[MemberSubscription]]:
    """Topics with partition counts and members subscribed to some of them."""
    counts = draw(st.dictionaries(st.sampled_from("abcde"), st.integers(1, 12), min_size=1))
    topics = sorted(counts)
    count = draw(st.integers(1, 7))
    shared = draw(st.lists(st.sampled_from(topics), min_size=1, unique=True))
    group = []
    for index in range(count):
        subscribed = (
            shared
            if same_topics
            else draw(st.lists(st.sampled_from([*topics, "gone"]), min_size=1, unique=True))
        )
        instance = draw(st.none() | st.sampled_from(["i1", "i2", "i3"]))
        if instance in {m.group_instance_id for m in group}:
            instance = None
        group.append(MemberSubscription(f"m{index}", instance, Subscription(sorted(subscribed))))
    return counts, group


def check_valid(
    counts: dict[str, int],
    group: list[MemberSubscription],
    assignment: dict[str, list[TopicPartition]],
) -> list[TopicPartition]:
    assert set(assignment) == {m.member_id for m in group}
    topics = {m.member_id: set(m.subscription.topics) for m in group}
    flat = [tp for partitions in assignment.values() for tp in partitions]
    assert len(flat) == len(set(flat)), "a partition went to two members"
    for member_id, partitions in assignment.items():
        for tp in partitions:
            assert tp.topic in topics[member_id]
            assert 0 <= tp.partition < counts[tp.topic]
    return flat


def every_partition(counts: dict[str, int], group: list[MemberSubscription]) -> set[TopicPartition]:
    topics = {t for m in group for t in m.subscription.topics if t in counts}
    return {TopicPartition(t, p) for t in topics for p in range(counts[t])}


@pytest.mark.parametrize("cls", [RangeAssignor, RoundRobinAssignor, CooperativeStickyAssignor])
@GROUP_EXAMPLES
@given(data=groups())
def test_eager_assignments_give_every_partition_to_one_subscriber(
    cls: type[Any], data: tuple[dict[str, int], list[MemberSubscription]]
) -> None:
    counts, group = data
    flat = check_valid(counts, group, cls().assign(counts, group))
    assert set(flat) == every_partition(counts, group)


@pytest.mark.parametrize("cls", [RoundRobinAssignor, CooperativeStickyAssignor])
@GROUP_EXAMPLES
@given(data=groups(same_topics=True))
def test_with_the_same_subscriptions_shares_differ_by_at_most_one(
    cls: type[Any], data: tuple[dict[str, int], list[MemberSubscription]]
) -> None:
    counts, group = data
    loads = [len(p) for p in cls().assign(counts, group).values()]
    assert max(loads) - min(loads) <= 1


@GROUP_EXAMPLES
@given(data=groups())
def test_range_gives_each_subscriber_a_consecutive_range_per_topic(
    data: tuple[dict[str, int], list[MemberSubscription]],
) -> None:
    counts, group = data
    got = RangeAssignor().assign(counts, group)
    for topic in counts:
        shares = [
            sorted(tp.partition for tp in got[m.member_id] if tp.topic == topic)
            for m in group
            if topic in m.subscription.topics
        ]
        for share in shares:
            if share:
                assert share == list(range(share[0], share[0] + len(share)))
        if shares:
            assert max(map(len, shares)) - min(map(len, shares)) <= 1


def with_owned(
    group: list[MemberSubscription], assignment: dict[str, list[TopicPartition]], generation: int
) -> list[MemberSubscription]:
    return [
        m._replace(
            subscription=m.subscription._replace(
                owned_partitions=assignment.get(m.member_id, []), generation_id=generation
            )
        )
        for m in group
    ]


@st.composite
def owned_groups(
    draw: st.DrawFn, same_topics: bool
) -> tuple[dict[str, int], list[MemberSubscription]]:
    """A group whose members own some of their topics' partitions (no
    partition twice), as after an earlier generation."""
    counts, group = draw(groups(same_topics=same_topics))
    owned: dict[str, list[TopicPartition]] = {m.member_id: [] for m in group}
    for tp in sorted(every_partition(counts, group)):
        candidates = [m.member_id for m in group if tp.topic in m.subscription.topics]
        holder = draw(st.none() | st.sampled_from(candidates))
        if holder is not None:
            owned[holder].append(tp)
    return counts, with_owned(group, owned, 3)


def settle(
    counts: dict[str, int], group: list[MemberSubscription], rounds: int
) -> list[dict[str, list[TopicPartition]]]:
    """Runs cooperative rebalances as members do: each keeps what it is
    assigned (revoking the rest), and the next rebalance follows."""
    results = []
    for generation in range(4, 4 + rounds):
        got = CooperativeStickyAssignor().assign(counts, group)
        owners = {tp: m.member_id for m in group for tp in m.subscription.owned_partitions}
        for member_id, partitions in got.items():
            for tp in partitions:
                assert owners.get(tp, member_id) == member_id, (
                    f"{tp} changed hands in one rebalance"
                )
        check_valid(counts, group, got)
        results.append(got)
        group = with_owned(group, got, generation)
    return results


@GROUP_EXAMPLES
@given(data=owned_groups(same_topics=True))
def test_cooperative_sticky_settles_balanced_in_the_rebalance_after_the_revocations(
    data: tuple[dict[str, int], list[MemberSubscription]],
) -> None:
    counts, group = data
    _, second, third = settle(counts, group, 3)
    assert second == third, "the second rebalance is not the last"
    assert set(tp for p in second.values() for tp in p) == every_partition(counts, group)
    loads = [len(p) for p in second.values()]
    assert max(loads) - min(loads) <= 1


@GROUP_EXAMPLES
@given(data=owned_groups(same_topics=False))
def test_cooperative_sticky_settles_with_any_subscriptions(
    data: tuple[dict[str, int], list[MemberSubscription]],
) -> None:
    counts, group = data
    results = settle(counts, group, 8)
    assert results[-1] == results[-2], "eight rebalances did not settle"
    assert set(tp for p in results[-1].values() for tp in p) == every_partition(counts, group)


@GROUP_EXAMPLES
@given(data=owned_groups(same_topics=True))
def test_cooperative_sticky_keeps_what_members_own_up_to_their_share(
    data: tuple[dict[str, int], list[MemberSubscription]],
) -> None:
    counts, group = data
    got = CooperativeStickyAssignor().assign(counts, group)
    floor = len(every_partition(counts, group)) // len(group)
    for m in group:
        kept = set(got[m.member_id]) & set(m.subscription.owned_partitions)
        assert len(kept) >= min(len(m.subscription.owned_partitions), floor)


def test_a_partition_claimed_twice_stays_with_the_latest_generation() -> None:
    group = [
        MemberSubscription("old", None, Subscription(["t"], None, tps("tp0", "tp1"), 3)),
        MemberSubscription("new", None, Subscription(["t"], None, tps("tp1"), 4)),
    ]
    got = CooperativeStickyAssignor().assign({"t": 2}, group)
    assert got == {"new": tps("tp1"), "old": tps("tp0")}


def test_a_new_member_gets_moved_partitions_only_after_their_owner_revoked_them() -> None:
    owner = MemberSubscription(
        "a", None, Subscription(["t"], None, tps("tp0", "tp1", "tp2", "tp3"), 1)
    )
    joining = MemberSubscription("b", None, Subscription(["t"]))
    first = CooperativeStickyAssignor().assign({"t": 4}, [owner, joining])
    assert len(first["a"]) == 2 and first["b"] == []
    owner = owner._replace(
        subscription=owner.subscription._replace(owned_partitions=first["a"], generation_id=2)
    )
    second = CooperativeStickyAssignor().assign({"t": 4}, [owner, joining])
    assert second["a"] == first["a"]
    assert Counter(second["a"] + second["b"]) == Counter(tps("tp0", "tp1", "tp2", "tp3"))
