"""Offset vectors and record references: one value, one text, and back;
a reference's text and JSON forms are docs/memory.md's ("Record
references"), old forms without a topic id still read; malformed text is
refused with a typed error."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import UnknownTopicId
from engine.memory.vector import CONTEXT_HEADER, InvalidVector, OffsetVector, Position, RecordRef
from engine.topic_id import NO_TOPIC_ID
from engine.types import TopicPartition
from tests import docspec

topics = st.text(alphabet="abcdefghij._-0123456789", min_size=1, max_size=20)
topic_ids = st.one_of(st.just(NO_TOPIC_ID), st.binary(min_size=16, max_size=16).filter(any))
places = st.tuples(st.integers(0, 2**63 - 1), st.integers(-1, 2**31 - 1))


_TOPICS_AT_MOST = 5
_named = st.dictionaries(topics, topic_ids, min_size=1, max_size=_TOPICS_AT_MOST)
_placed = st.lists(
    st.tuples(st.integers(0, _TOPICS_AT_MOST - 1), st.integers(0, 1000), places), max_size=20
)


@st.composite
def vectors(draw: st.DrawFn) -> OffsetVector:
    """A vector whose positions of each topic name one topic id (or none).

    Its parts are drawn from strategies built once: a strategy built per
    example (a sampled_from of the topics drawn) is built and validated
    again each time, which was most of an example's cost. A position's
    topic is an index among the names drawn, so any topic drawn can hold
    any partition, as a sampled_from of them gives; a partition drawn
    twice keeps its last position (a vector holds one a partition)."""
    ids = draw(_named)
    names = sorted(ids)
    chosen = {
        TopicPartition(names[index % len(names)], partition): place
        for index, partition, place in draw(_placed)
    }
    return OffsetVector(
        {tp: Position(offset, epoch, ids[tp.topic]) for tp, (offset, epoch) in chosen.items()}
    )


@given(vectors())
def test_a_vector_has_one_text_and_parses_back_to_itself(vector: OffsetVector) -> None:
    text = vector.to_text()
    assert OffsetVector.from_text(text) == vector
    assert OffsetVector.from_text(text.encode()).to_text() == text
    reordered = OffsetVector(dict(reversed(list(vector.items()))))
    assert reordered.to_text() == text
    assert vector.to_header() == (CONTEXT_HEADER, text.encode())


@given(vectors(), st.builds(TopicPartition, topics, st.integers(0, 1000)), st.integers(0, 2**63))
def test_includes_is_below_the_position(
    vector: OffsetVector, tp: TopicPartition, offset: int
) -> None:
    expected = tp in vector and offset < vector[tp].offset
    assert vector.includes(tp, offset) == expected


def test_the_text_is_the_agent_action_schemas_context_offsets() -> None:
    vector = OffsetVector({TopicPartition("orders", 2): Position(120, 3)})
    assert vector.to_json() == {"orders": {"2": {"offset": 120, "leader_epoch": 3}}}
    topic_id = bytes(range(1, 17))
    cut = OffsetVector({TopicPartition("orders", 2): Position(120, 3, topic_id)})
    place = {"offset": 120, "leader_epoch": 3, "topic_id": "AQIDBAUGBwgJCgsMDQ4PEA"}
    assert cut.to_json() == {"orders": {"2": place}}
    assert cut.topic_id("orders") == topic_id and cut.topic_id("other") == NO_TOPIC_ID


@given(vectors())
def test_a_vector_written_before_topic_ids_reads_as_naming_topics_by_name(
    vector: OffsetVector,
) -> None:
    """The old text: positions of offset and leader epoch only."""
    old = {
        topic: {
            p: {k: v for k, v in place.items() if k != "topic_id"} for p, place in parts.items()
        }
        for topic, parts in vector.to_json().items()
    }
    read = OffsetVector.from_json(old)
    assert list(read) == list(vector)
    for tp, position in read.items():
        assert position == Position(vector[tp].offset, vector[tp].leader_epoch, NO_TOPIC_ID)
    for topic in vector.topics:
        read.check_topic_id(topic, b"\x01" * 16)  # a vector without ids names any of the name


def test_a_vector_names_one_topic_id_per_topic() -> None:
    one, other = b"\x01" * 16, b"\x02" * 16
    with pytest.raises(InvalidVector):
        OffsetVector(
            {TopicPartition("t", 0): Position(1, 0, one), TopicPartition("t", 1): Position(1, 0)}
        )
    vector = OffsetVector({TopicPartition("t", 0): Position(1, 0, one)})
    vector.check_topic_id("t", one)
    with pytest.raises(UnknownTopicId):
        vector.check_topic_id("t", other)


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
        '{"t": {"0": {"offset": 1, "topic_id": 5}}}',
        '{"t": {"0": {"offset": 1, "topic_id": "AAAAAAAAAAAAAAAAAAAAAA"}}}',
        '{"t": {"0": {"offset": 1, "topic_id": "AQEBAQEBAQEBAQEBAQEBAQ"}, "1": {"offset": 1}}}',
        "[" * 200_000 + "]" * 200_000,
        "x" * (2 << 20),
        '{"t": {"\u00b2": {"offset": 1}}}',  # a digit to str.isdigit, not to int()
        '{"t": {"\u0661": {"offset": 1}}}',  # another script's 1
        '{"t": {"1": {"offset": 1}, "01": {"offset": 5}}}',  # one partition, two places
        '{"t": {"0": {"offset": 1, "leader_epoch": -2}}}',
        # Past Kafka's ranges (int32 partitions and epochs, int64 offsets):
        # no log has such a place, and a Kafka client cannot carry it.
        '{"t": {"0": {"offset": 9223372036854775808}}}',
        '{"t": {"2147483648": {"offset": 1}}}',
        '{"t": {"0": {"offset": 1, "leader_epoch": 2147483648}}}',
        '{"t": {"' + "9" * 5000 + '": {"offset": 1}}}',  # past int()'s digit limit
        # A key named twice: JSON keeps one of the two, a guess at which was meant.
        '{"t": {"0": {"offset": 1}, "0": {"offset": 5}}}',
        '{"t": {"0": {"offset": 1, "offset": 5}}}',
        '{"t": {"0": {"offset": 1}}, "t": {"1": {"offset": 5}}}',
    ],
)
def test_malformed_vector_text_is_refused(text: str) -> None:
    with pytest.raises(InvalidVector):
        OffsetVector.from_text(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=8,
)
places_json = st.fixed_dictionaries(
    {"offset": st.integers(-1, 2**64)},
    optional={"leader_epoch": st.integers(-3, 2**31), "topic_id": json_values},
)
partition_keys = st.sampled_from(["0", "01", "1", "\u00b2", "\u0661", "-1", " 1", "x"])
vector_json = st.dictionaries(
    st.text(max_size=3),
    st.dictionaries(partition_keys, places_json, max_size=4) | json_values,
    max_size=3,
)


@given(vector_json | json_values)
def test_any_json_is_a_vector_with_one_text_or_invalid_vector(raw: object) -> None:
    try:
        vector = OffsetVector.from_text(json.dumps(raw))
    except InvalidVector:
        return
    assert OffsetVector.from_text(vector.to_text()) == vector
    assert isinstance(raw, dict)
    assert len(vector) == sum(len(partitions) for partitions in raw.values())  # each one place


refs = st.builds(
    RecordRef,
    topics,
    st.integers(0, 10**6),
    st.integers(0, 2**63 - 1),
    st.integers(-1, 2**31 - 1),
    topic_ids,
)


@given(refs)
def test_a_record_reference_round_trips_its_text_and_its_json(ref: RecordRef) -> None:
    assert RecordRef.parse(str(ref)) == ref
    assert RecordRef.from_json(json.loads(json.dumps(ref.to_json()))) == ref
    assert ("@" in str(ref)) == ("topic_id" in ref.to_json()) == (ref.topic_id != NO_TOPIC_ID)


@given(refs, topic_ids)
def test_refs_are_equal_only_with_the_same_topic_id(ref: RecordRef, other: bytes) -> None:
    assert (ref.with_topic_id(other) == ref) == (other == ref.topic_id)
    assert (RecordRef.parse(str(ref.with_topic_id(other))) == ref) == (other == ref.topic_id)


SPEC = docspec.table("memory.md", "part", "before it in the text", "JSON key", "when not known")


def _spec_forms(ref: RecordRef, known: set[str]) -> tuple[str, dict[str, object]]:
    """The text and JSON object of ``ref`` as docs/memory.md's table builds
    them, with the parts not in ``known`` left out where the table says."""
    values: dict[str, object] = {
        "topic": ref.topic,
        "partition": ref.partition,
        "offset": ref.offset,
        "leader_epoch": ref.leader_epoch,
        # Kafka's Uuid.toString, written from its definition.
        "topic_id": base64.urlsafe_b64encode(ref.topic_id).decode().rstrip("="),
    }
    text, obj = "", {}
    for row in SPEC:
        part, key = row["part"].strip("`"), row["JSON key"].strip("`")
        before, absent = row["before it in the text"].strip("`"), row["when not known"]
        if part not in known and "left out of both" in absent:
            continue
        text += before + str(values[part])
        if part in known or "left out of the JSON" not in absent:
            obj[key] = values[part]
    return text, obj


@given(refs.filter(lambda r: r.topic_id != NO_TOPIC_ID and r.leader_epoch != -1))
def test_the_documented_forms_are_what_a_ref_reads_and_writes(ref: RecordRef) -> None:
    text, obj = _spec_forms(ref, {row["part"].strip("`") for row in SPEC})
    assert str(ref) == text and RecordRef.parse(text) == ref
    assert ref.to_json() == obj and RecordRef.from_json(obj) == ref


@given(refs)
def test_the_old_forms_read_back_as_a_ref_without_a_topic_id(ref: RecordRef) -> None:
    """Text and JSON written before topic ids: no ``@topic-id``, and a JSON
    object of topic, partition and offset only."""
    old_text = f"{ref.topic}:{ref.partition}:{ref.offset}:{ref.leader_epoch}"
    old_json = {"topic": ref.topic, "partition": ref.partition, "offset": ref.offset}
    assert RecordRef.parse(old_text) == ref.with_topic_id(NO_TOPIC_ID)
    assert RecordRef.from_json(old_json) == RecordRef(ref.topic, ref.partition, ref.offset)
    text, obj = _spec_forms(ref, {"topic", "partition", "offset", "leader_epoch"})
    assert text == old_text and RecordRef.parse(text).topic_id == NO_TOPIC_ID
    assert RecordRef.from_json(obj) == ref.with_topic_id(NO_TOPIC_ID)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "t:0:1",
        "t:a:1:0",
        ":0:1:0",
        "t:0:-1:0",
        "t:0:1:-2",
        "t:0:1:0@",
        "t:0:1:0@AAAAAAAAAAAAAAAAAAAAAA",  # the zero id is written by leaving it out
        "t:0:1:0@AAAAAAAAAAAAAAAAAAAAAB",  # not canonical: bits past the 16 bytes
        "t:0:1:0@AAAAAAAAAAAAAAAAAAAAAQ==",  # padded
        "t:0:1:0@AAAAAAAAAAAAAAAAAAAA",  # 15 bytes
        "t:0:1:0@AAAAAAAAAAAAAAAAAAAA+Q",  # not URL-safe
        "t:0:1@AAAAAAAAAAAAAAAAAAAAAQ",
        "t:\u00b2:1:0",  # digits int() refuses, or reads as another text's number
        "t:1_0:1:0",
        "t: 1:1:0",
        "t:\uff10:1:0",
        "a:b:0:1:0",  # a topic name never holds ":"
        "t:007:1:0",  # another text of t:7:1:0
        "t:0:-0:0",
        "t:0:1:-01",
        "t:0:1:-0",
        "t:2147483648:1:0",
        "t:0:9223372036854775808:0",
        "t:0:1:2147483648",
        "t:" + "9" * 5000 + ":1:0",  # past int()'s digit limit
        "t:0:" + "9" * 5000 + ":0",
    ],
)
def test_malformed_record_references_are_refused(text: str) -> None:
    with pytest.raises(InvalidVector):
        RecordRef.parse(text)


@given(topics, *[st.from_regex(r"-?[0-9]{1,3}", fullmatch=True)] * 3)
def test_a_ref_read_from_text_has_that_text(
    topic: str, partition: str, offset: str, epoch: str
) -> None:
    # One ref, one text: no other spelling of its numbers reads as it.
    text = f"{topic}:{partition}:{offset}:{epoch}"
    try:
        ref = RecordRef.parse(text)
    except InvalidVector:
        return
    assert str(ref) == text


@pytest.mark.parametrize(
    "raw",
    [
        [],
        {"uri": "blob://x"},
        {"topic": "t", "partition": 0},
        {"topic": "t", "partition": 0, "offset": "1"},
        {"topic": "t", "partition": 0, "offset": 1, "leader_epoch": -2},
        {"topic": "t", "partition": 0, "offset": 1, "topic_id": 7},
        {"topic": "t", "partition": 0, "offset": 1, "topic_id": "AAAAAAAAAAAAAAAAAAAAAA"},
        {"topic": "t:0", "partition": 0, "offset": 1},
        {"topic": "", "partition": 0, "offset": 1},
        {"topic": "t", "partition": 2**31, "offset": 1},
        {"topic": "t", "partition": 0, "offset": 2**63},
        {"topic": "t", "partition": 0, "offset": 1, "leader_epoch": 2**31},
    ],
)
def test_malformed_reference_objects_are_refused(raw: object) -> None:
    with pytest.raises(InvalidVector):
        RecordRef.from_json(raw)


def test_the_ends_of_kafkas_ranges_are_places() -> None:
    top = {"leader_epoch": 2**31 - 1, "offset": 2**63 - 1}
    text = json.dumps({"t": {str(2**31 - 1): top}}, separators=(",", ":"))
    vector = OffsetVector.from_text(text)
    assert vector[TopicPartition("t", 2**31 - 1)] == Position(2**63 - 1, 2**31 - 1)
    assert vector.to_text() == text
    ref = RecordRef("t", 2**31 - 1, 2**63 - 1, 2**31 - 1)
    assert RecordRef.parse(str(ref)) == ref
