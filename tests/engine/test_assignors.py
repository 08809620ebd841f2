"""The server-side assignors of KIP-848 consumer groups (engine/groups/assignors.py).

Properties over random groups: every subscribed partition goes to exactly
one of its subscribers; "uniform" balances equal subscriptions within one
partition, keeps previous partitions where balance allows and leaves no
partition that could move to a subscriber two or more partitions lighter;
"range" gives contiguous, co-partitioned shares; both are deterministic
whatever the order of their input.
"""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.groups.assignors import ASSIGNORS, MemberSpec
from engine.groups.assignors import ServerRangeAssignor as RangeAssignor
from engine.groups.assignors import ServerUniformAssignor as UniformAssignor

Result = dict[str, dict[bytes, frozenset[int]]]

TOPICS = [b"topic-a", b"topic-b", b"topic-c", b"topic-d"]


@st.composite
def topic_counts(draw: st.DrawFn) -> dict[bytes, int]:
    chosen = draw(st.lists(st.sampled_from(TOPICS), min_size=1, max_size=4, unique=True))
    return {t: draw(st.integers(1, 12)) for t in chosen}


@st.composite
def previous_assignment(
    draw: st.DrawFn, member_ids: list[str], partitions: Mapping[bytes, int]
) -> dict[str, dict[bytes, set[int]]]:
    """A disjoint previous assignment of some partitions (some of which may
    be of partitions that no longer exist)."""
    previous: dict[str, dict[bytes, set[int]]] = {m: {} for m in member_ids}
    for topic, count in partitions.items():
        for partition in range(count + 2):
            owner = draw(st.sampled_from([None, *member_ids]))
            if owner is not None:
                previous[owner].setdefault(topic, set()).add(partition)
    return previous


@st.composite
def groups(draw: st.DrawFn, homogeneous: bool) -> tuple[dict[str, MemberSpec], dict[bytes, int]]:
    partitions = draw(topic_counts())
    count = draw(st.integers(1, 7))
    member_ids = [f"member-{i:02d}" for i in draw(st.permutations(range(count)))]
    previous = draw(previous_assignment(member_ids, partitions))
    if homogeneous:
        shared = frozenset(draw(st.sets(st.sampled_from(list(partitions)), min_size=1)))
    members = {}
    for member_id in member_ids:
        topics = (
            shared
            if homogeneous
            else frozenset(draw(st.sets(st.sampled_from([*partitions, b"missing"]))))
        )
        instance = draw(st.one_of(st.none(), st.sampled_from(["i1", "i2", "i3"])))
        members[member_id] = MemberSpec(
            instance, None, topics, {t: frozenset(ps) for t, ps in previous[member_id].items()}
        )
    return members, partitions


def flat(assignment: Mapping[bytes, frozenset[int]]) -> set[tuple[bytes, int]]:
    return {(t, p) for t, ps in assignment.items() for p in ps}


def check_complete(
    members: Mapping[str, MemberSpec], partitions: Mapping[bytes, int], result: Result
) -> None:
    """Each partition of a subscribed topic is assigned exactly once, to a
    subscriber; nothing else is assigned."""
    assert set(result) == set(members)
    seen: dict[tuple[bytes, int], str] = {}
    for member_id, assignment in result.items():
        for tp in flat(assignment):
            assert tp not in seen, f"{tp} given to {seen[tp]} and {member_id}"
            seen[tp] = member_id
            assert tp[0] in members[member_id].topics
    expected = {
        (t, p)
        for t, count in partitions.items()
        if any(t in m.topics for m in members.values())
        for p in range(count)
    }
    assert set(seen) == expected


@settings(max_examples=120, deadline=None)
@given(group=groups(homogeneous=False), name=st.sampled_from(sorted(ASSIGNORS)))
def test_every_subscribed_partition_is_assigned_exactly_once(
    group: tuple[dict[str, MemberSpec], dict[bytes, int]], name: str
) -> None:
    members, partitions = group
    check_complete(members, partitions, ASSIGNORS[name].assign(members, partitions))


@settings(max_examples=80, deadline=None)
@given(group=groups(homogeneous=False), name=st.sampled_from(sorted(ASSIGNORS)), data=st.data())
def test_assignors_are_deterministic_whatever_the_input_order(
    group: tuple[dict[str, MemberSpec], dict[bytes, int]], name: str, data: st.DataObject
) -> None:
    members, partitions = group
    shuffled_members = dict(data.draw(st.permutations(list(members.items()))))
    shuffled_partitions = dict(data.draw(st.permutations(list(partitions.items()))))
    assignor = ASSIGNORS[name]
    assert assignor.assign(members, partitions) == assignor.assign(
        shuffled_members, shuffled_partitions
    )


@settings(max_examples=120, deadline=None)
@given(group=groups(homogeneous=True))
def test_uniform_balances_equal_subscriptions_within_one(
    group: tuple[dict[str, MemberSpec], dict[bytes, int]],
) -> None:
    members, partitions = group
    result = UniformAssignor().assign(members, partitions)
    check_complete(members, partitions, result)
    counts = [len(flat(a)) for a in result.values()]
    assert max(counts) - min(counts) <= 1


@settings(max_examples=120, deadline=None)
@given(group=groups(homogeneous=True))
def test_uniform_keeps_previous_partitions_as_far_as_balance_allows(
    group: tuple[dict[str, MemberSpec], dict[bytes, int]],
) -> None:
    """A member keeps at least min(what it had and may keep, the smaller
    share) of its previous partitions."""
    members, partitions = group
    result = UniformAssignor().assign(members, partitions)
    total = sum(len(flat(a)) for a in result.values())
    quota = total // len(members)
    for member_id, spec in members.items():
        keepable = {
            (t, p)
            for t, p in flat(spec.assignment)
            if t in spec.topics and t in partitions and p < partitions[t]
        }
        kept = keepable & flat(result[member_id])
        assert len(kept) >= min(len(keepable), quota)


def test_uniform_moves_only_what_a_new_member_needs() -> None:
    """Two members with 3 partitions each; a third joins: it takes one from
    each, the others keep the rest."""
    topic = b"t"
    first = MemberSpec(None, None, frozenset([topic]), {topic: frozenset({0, 1, 2})})
    second = MemberSpec(None, None, frozenset([topic]), {topic: frozenset({3, 4, 5})})
    third = MemberSpec(None, None, frozenset([topic]), {})
    result = UniformAssignor().assign({"a": first, "b": second, "c": third}, {topic: 6})
    assert len(result["a"][topic]) == len(result["b"][topic]) == len(result["c"][topic]) == 2
    assert result["a"][topic] < {0, 1, 2}
    assert result["b"][topic] < {3, 4, 5}


@settings(max_examples=120, deadline=None)
@given(group=groups(homogeneous=False))
def test_uniform_leaves_no_partition_a_lighter_subscriber_could_take(
    group: tuple[dict[str, MemberSpec], dict[bytes, int]],
) -> None:
    members, partitions = group
    result = UniformAssignor().assign(members, partitions)
    load = {m: len(flat(a)) for m, a in result.items()}
    for member_id, assignment in result.items():
        for topic in assignment:
            lightest = min(load[m] for m, spec in members.items() if topic in spec.topics)
            assert load[member_id] - lightest <= 1


@settings(max_examples=120, deadline=None)
@given(group=groups(homogeneous=False))
def test_range_shares_are_contiguous_and_balanced_per_topic_when_fresh(
    group: tuple[dict[str, MemberSpec], dict[bytes, int]],
) -> None:
    members, partitions = group
    fresh = {m: spec._replace(assignment={}) for m, spec in members.items()}
    result = RangeAssignor().assign(fresh, partitions)
    check_complete(fresh, partitions, result)
    order = sorted(fresh, key=lambda m: (fresh[m].instance_id or m, m))
    for topic, count in partitions.items():
        subscribers = [m for m in order if topic in fresh[m].topics]
        shares = [sorted(result[m].get(topic, ())) for m in subscribers]
        # In subscriber order, consecutive ranges that cover 0..count-1.
        assert [p for share in shares for p in share] == (list(range(count)) if shares else [])
        if shares:
            sizes = [len(s) for s in shares]
            assert max(sizes) - min(sizes) <= 1
            assert sizes == sorted(sizes, reverse=True)


@settings(max_examples=80, deadline=None)
@given(
    count=st.integers(1, 12),
    before=st.integers(1, 6),
    after=st.integers(1, 6),
)
def test_range_co_partitions_topics_through_membership_changes(
    count: int, before: int, after: int
) -> None:
    """Two topics with the same partition count and the same subscribers:
    each member gets the same partition numbers of both, first with a fresh
    group and again after members join or leave."""
    topics = frozenset([b"orders", b"payments"])
    partitions = dict.fromkeys(topics, count)
    assignor = RangeAssignor()
    members = {f"m{i}": MemberSpec(None, None, topics, {}) for i in range(before)}
    result = assignor.assign(members, partitions)
    for assignment in result.values():
        assert assignment.get(b"orders") == assignment.get(b"payments")
    members = {
        f"m{i}": MemberSpec(None, None, topics, result.get(f"m{i}", {})) for i in range(after)
    }
    result = assignor.assign(members, partitions)
    check_complete(members, partitions, result)
    for assignment in result.values():
        assert assignment.get(b"orders") == assignment.get(b"payments")


@settings(max_examples=80, deadline=None)
@given(group=groups(homogeneous=False))
def test_range_keeps_previous_partitions_up_to_the_members_share(
    group: tuple[dict[str, MemberSpec], dict[bytes, int]],
) -> None:
    members, partitions = group
    result = RangeAssignor().assign(members, partitions)
    order = sorted(members, key=lambda m: (members[m].instance_id or m, m))
    for topic, count in partitions.items():
        subscribers = [m for m in order if topic in members[m].topics]
        if not subscribers:
            continue
        quota, extra = divmod(count, len(subscribers))
        claimed: set[int] = set()
        for index, member_id in enumerate(subscribers):
            share = quota + (1 if index < extra else 0)
            previous = sorted(p for p in members[member_id].assignment.get(topic, ()) if p < count)
            keepable = [p for p in previous if p not in claimed][:share]
            claimed.update(keepable)
            assert set(keepable) <= result[member_id].get(topic, frozenset())
