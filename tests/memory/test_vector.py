"""Offset vectors and record references: one value, one text, and back;
malformed text is refused with a typed error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.memory.vector import CONTEXT_HEADER, InvalidVector, OffsetVector, Position, RecordRef
from engine.types import TopicPartition

topics = st.text(alphabet="abcdefghij._-0123456789", min_size=1, max_size=20)
positions = st.builds(Position, st.integers(0, 2**63 - 1), st.integers(-1, 2**31 - 1))
vectors = st.dictionaries(
    st.builds(TopicPartition, topics, st.integers(0, 1000)), positions, max_size=20
).map(OffsetVector)


@given(vectors)
def test_a_vector_has_one_text_and_parses_back_to_itself(vector: OffsetVector) -> None:
    text = vector.to_text()
    assert OffsetVector.from_text(text) == vector
    assert OffsetVector.from_text(text.encode()).to_text() == text
    reordered = OffsetVector(dict(reversed(list(vector.items()))))
    assert reordered.to_text() == text
    assert vector.to_header() == (CONTEXT_HEADER, text.encode())


@given(vectors, st.builds(TopicPartition, topics, st.integers(0, 1000)), st.integers(0, 2**63))
def test_includes_is_below_the_position(
    vector: OffsetVector, tp: TopicPartition, offset: int
) -> None:
    expected = tp in vector and offset < vector[tp].offset
    assert vector.includes(tp, offset) == expected


def test_the_text_is_the_agent_action_schemas_context_offsets() -> None:
    vector = OffsetVector({TopicPartition("orders", 2): Position(120, 3)})
    assert vector.to_json() == {"orders": {"2": {"offset": 120, "leader_epoch": 3}}}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        '{"t": []}',
        '{"t": {"x": {"offset": 1}}}',
        '{"t": {"0": {"offset": "1"}}}',
        '{"t": {"0": {"offset": -1}}}',
        '{"t": {"0": {"offset": 1, "leader_epoch": 1.5}}}',
        '{"t": {"0": 7}}',
        "{" * 10,
        "[" * 200_000 + "]" * 200_000,
        "x" * (2 << 20),
    ],
)
def test_malformed_vector_text_is_refused(text: str) -> None:
    with pytest.raises(InvalidVector):
        OffsetVector.from_text(text)


@given(topics, st.integers(0, 10**6), st.integers(0, 2**63 - 1), st.integers(-1, 2**31 - 1))
def test_a_record_reference_round_trips_its_text(
    topic: str, partition: int, offset: int, epoch: int
) -> None:
    ref = RecordRef(topic, partition, offset, epoch)
    assert RecordRef.parse(str(ref)) == ref


@pytest.mark.parametrize("text", ["", "t:0:1", "t:a:1:0", ":0:1:0", "t:0:-1:0", "t:0:1:-2"])
def test_malformed_record_references_are_refused(text: str) -> None:
    with pytest.raises(InvalidVector):
        RecordRef.parse(text)
