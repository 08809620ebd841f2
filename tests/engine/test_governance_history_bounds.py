"""The governance history is bounded: a loop of creations and deletions of
governed topics (which any principal that may create topics can run when
the broker's defaults govern) or of changes of one topic's governance keeps
only the recent past, and what is dropped never widens a stamped range."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from engine.catalog import CatalogState, TopicMeta
from engine.governance_log import (
    ALTERED,
    CREATED,
    DELETED,
    KEPT_OF_DELETED,
    KEPT_PER_TOPIC,
    GovernanceChange,
    bounded,
    stamped_ranges,
)
from tests.engine.conftest import EngineFactory

STAMP = {"tidelog.provenance": "stamp"}
NONE = {"tidelog.provenance": "none"}


def _change(action: str, name: str, topic_id: bytes, after: dict[str, str]) -> list[Any]:
    return GovernanceChange(
        1, action, name, topic_id, "User:team", "PLAINTEXT", {}, after, [0]
    ).to_wire()


def test_creating_and_deleting_governed_topics_in_a_loop_keeps_a_bounded_history() -> None:
    state = CatalogState()
    for _ in range(KEPT_OF_DELETED + 50):
        topic_id = uuid.uuid4().bytes
        meta = TopicMeta("chats", topic_id, {}, [(1, 2)], 0)
        state.apply(["create_topic", meta.to_wire(), [_change(CREATED, "chats", topic_id, STAMP)]])
        state.apply(["delete_topic", "chats", [_change(DELETED, "chats", topic_id, {})]])
    live_id = uuid.uuid4().bytes
    meta = TopicMeta("kept", live_id, {}, [(3, 4)], 0)
    state.apply(["create_topic", meta.to_wire(), [_change(CREATED, "kept", live_id, STAMP)]])
    assert len(state.governance) == KEPT_OF_DELETED + 1
    assert state.governance[-1].topic_id == live_id  # a live topic's entry is never crowded out
    assert stamped_ranges(state.governance, live_id, 0) == [(0, None)]
    restored = CatalogState.from_wire(state.to_wire())
    assert restored.governance == state.governance


def test_changing_one_topics_governance_in_a_loop_keeps_its_recent_changes(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("t", 1, STAMP)
    for step in range(KEPT_PER_TOPIC + 10):
        e.alter_configs("t", NONE if step % 2 == 0 else STAMP)
    history = e.governance_history("t")
    assert len(history) == KEPT_PER_TOPIC
    assert history[-1].after["tidelog.provenance"] == "stamp"
    e.close()
    assert engine_factory().governance_history("t") == history


@st.composite
def _histories(draw: st.DrawFn) -> tuple[list[GovernanceChange], bytes]:
    """One topic's changes (provenance on or off) at rising offsets, among
    changes of other, deleted topics."""
    topic_id = b"\x01" * 16
    history = []
    offset = 0
    for stamping, other in draw(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=200)):
        offset += draw(st.integers(0, 3))
        if other:
            history.append(
                GovernanceChange(0, DELETED, "gone", uuid.uuid4().bytes, "U", "L", {}, {}, [0])
            )
        after = STAMP if stamping else NONE
        history.append(GovernanceChange(0, ALTERED, "t", topic_id, "U", "L", {}, after, [offset]))
    return history, topic_id


def _offsets(ranges: list[tuple[int, int | None]], end: int) -> set[int]:
    return {o for start, stop in ranges for o in range(start, end if stop is None else stop)}


@given(_histories())
def test_bounding_never_claims_a_stamp_the_whole_history_does_not(
    drawn: tuple[list[GovernanceChange], bytes],
) -> None:
    history, topic_id = drawn
    kept = bounded(history, {topic_id})
    assert sum(c.topic_id == topic_id for c in kept) <= KEPT_PER_TOPIC
    assert sum(c.topic_id != topic_id for c in kept) <= KEPT_OF_DELETED
    end = 1000
    whole = _offsets(stamped_ranges(history, topic_id, 0), end)
    assert _offsets(stamped_ranges(kept, topic_id, 0), end) <= whole
    assert [c for c in kept if c.topic_id == topic_id] == [
        c for c in history if c.topic_id == topic_id
    ][-KEPT_PER_TOPIC:]


@given(st.lists(st.tuples(st.sampled_from(["create", "alter", "delete"]), st.integers(0, 3))))
def test_the_counts_kept_as_records_apply_are_the_historys(ops: list[tuple[str, int]]) -> None:
    # The counts decide when the history is bounded: were they off, a
    # restarted catalog (which counts afresh) would bound it elsewhere.
    state = CatalogState()
    for op, n in ops:
        name = f"t{n}"
        meta = state.topics.get(name)
        if op == "create" and meta is None:
            topic_id = uuid.uuid4().bytes
            wire = TopicMeta(name, topic_id, {}, [(1, 2)], 0).to_wire()
            state.apply(["create_topic", wire, [_change(CREATED, name, topic_id, STAMP)]])
        elif op == "alter" and meta is not None:
            change = _change(ALTERED, name, meta.topic_id, NONE)
            state.apply(["alter_configs", name, {}, [change]])
        elif op == "delete" and meta is not None:
            state.apply(["delete_topic", name, [_change(DELETED, name, meta.topic_id, {})]])
        fresh = CatalogState.from_wire(state.to_wire())
        fresh.apply(["snapshot", state.to_wire()])  # counts as a restart does
        assert (state._counts.of_topic, state._counts.of_deleted) == (
            fresh._counts.of_topic,
            fresh._counts.of_deleted,
        )
