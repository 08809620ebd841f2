"""Manifest versions share what a commit does not touch.

``ManifestState.copy`` is what every commit starts from; it must cost what
the commit's operations touch, not what the manifest holds (creating
thousands of topics one request at a time was quadratic when it copied
every stream), and an older version must never change under the readers
holding it.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from s3stream.manifest_state import InvalidOperation, ManifestState, Op
from s3stream.objects import ObjectKind


def _with_streams(count: int) -> ManifestState:
    state = ManifestState()
    for stream_id in range(1, count + 1):
        state.apply(["create_stream", stream_id, 0])
    return state


def _object(object_id: int, *ranges: tuple[int, int, int]) -> Op:
    wire_ranges = [[stream, start, end, end - start] for stream, start, end in ranges]
    return [
        "add_object",
        [object_id, f"o/{object_id}", int(ObjectKind.STREAM_SET), 1, 0, wire_ranges],
    ]


def test_a_commit_copies_only_the_streams_it_touches() -> None:
    old = _with_streams(1000)
    new = old.copy()
    for op in (
        ["create_stream", 1001, 0],
        _object(1, (3, 0, 10)),
        ["trim", 4, 0],
        ["open_stream", 5, 1],
    ):
        new.apply(op)
    changed = {
        stream_id
        for stream_id in old.streams
        if new.streams[stream_id] is not old.streams[stream_id]
    }
    assert changed == {3, 5}  # trimming stream 4 to where it starts changes nothing
    assert all(new.ranges[s] is old.ranges[s] for s in old.ranges if s not in changed)
    assert old.streams[3].end_offset == 0 and old.ranges[3].entries == []
    assert old.streams[5].epoch == 0
    assert 1001 not in old.streams
    assert new.streams[3].end_offset == 10 and new.streams[5].epoch == 1


def test_a_copy_of_a_copy_shares_with_both() -> None:
    first = _with_streams(10)
    second = first.copy()
    second.apply(_object(1, (1, 0, 5)))
    third = second.copy()
    third.apply(_object(2, (1, 5, 9), (2, 0, 3)))
    assert [e[:2] for e in first.ranges[1].entries] == []
    assert [e[:2] for e in second.ranges[1].entries] == [(0, 5)]
    assert [e[:2] for e in third.ranges[1].entries] == [(0, 5), (5, 9)]
    assert third.streams[7] is first.streams[7]


# -- property: versions made by copy-and-apply are isolated and replay alike ---------


@st.composite
def histories(draw: st.DrawFn) -> list[list[Op]]:
    """Commits of random operations over a few streams, created first (an
    object never holds a stream not created yet). Some commits are invalid:
    an invalid commit is refused whole and leaves no trace."""
    commits: list[list[Op]] = [[["create_stream", stream, 0] for stream in range(1, 7)]]
    next_object = 1
    for _ in range(draw(st.integers(1, 12))):
        ops: list[Op] = []
        for _ in range(draw(st.integers(1, 4))):
            stream = draw(st.integers(1, 6))
            kind = draw(st.sampled_from(["object", "trim", "open", "delete", "remove", "drop"]))
            if kind == "object":
                start = draw(st.integers(0, 50))
                end = start + draw(st.integers(1, 20))
                ops.append(_object(next_object, (stream, start, end)))
                next_object += 1
            elif kind == "trim":
                ops.append(["trim", stream, draw(st.integers(0, 60))])
            elif kind == "open":
                ops.append(["open_stream", stream, draw(st.integers(0, 3))])
            elif kind == "delete":
                ops.append(["delete_stream", stream])
            elif kind == "remove":
                ops.append(["remove_object", draw(st.integers(1, next_object)), 0])
            else:
                start = draw(st.integers(0, 50))
                ops.append(["drop_range", stream, start, draw(st.integers(1, next_object))])
        commits.append(ops)
    return commits


def _commit(state: ManifestState, ops: list[Op]) -> ManifestState | None:
    """What Manifest._write does: a copy with the operations applied, or
    None if one of them does not apply."""
    new = state.copy()
    try:
        for op in ops:
            new.apply(op)
    except InvalidOperation:
        return None
    new.seq = state.seq + 1
    return new


def _snapshot(state: ManifestState) -> tuple[Any, ...]:
    return (
        state.to_wire(),
        {s: list(r.entries) for s, r in state.ranges.items()},
    )


@settings(max_examples=150, deadline=None)
@given(histories())
def test_versions_never_change_and_replay_to_the_same_state(history: list[list[Op]]) -> None:
    versions = [ManifestState()]
    seen = [_snapshot(versions[0])]
    applied: list[Op] = []
    for ops in history:
        new = _commit(versions[-1], ops)
        if new is None:
            continue
        versions.append(new)
        seen.append(_snapshot(new))
        applied.extend(ops)
    # No later commit changed an earlier version that readers may hold.
    assert [_snapshot(v) for v in versions] == seen
    # Replaying the log on a fresh state (as opening does) gives the same
    # state, and so does a checkpoint of it.
    replayed = ManifestState()
    for op in applied:
        replayed.apply(op)
    replayed.seq = versions[-1].seq
    assert _snapshot(replayed) == seen[-1]
    assert _snapshot(ManifestState.from_wire(versions[-1].to_wire())) == seen[-1]
