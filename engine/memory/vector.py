"""Offset vectors and record references: the values an agent's records use
to name what they were based on.

An :class:`OffsetVector` names, for a set of topic partitions, the position
a reader had reached: the offset of the first record *not* included (as a
high watermark is), with the leader epoch of the last included record (-1
when unknown). It is the "context version" a decision references: the
records below the vector are exactly what the decision could have seen.

Its text form is JSON in the agent-action schema's ``context_offsets``
shape — topic -> partition (as a decimal string) -> ``{"offset": n,
"leader_epoch": e, "topic_id": id}`` (``topic_id`` left out when not known,
as in vectors written before topic ids) — written compactly, with topics
and partitions sorted, so one vector has one text (usable as a record
header value).

A :class:`RecordRef` names one stored record: topic, partition, offset,
the leader epoch it was written in, and the topic's id. A topic deleted and
created again under the same name starts again at offset 0 in the same
leader epoch, so only the id tells its records from the old topic's. Its
text form is ``topic:partition:offset:epoch@topic-id``, the id in Kafka's
text form of a UUID (URL-safe base64, unpadded: 22 characters); Kafka topic
names never hold ``:`` or ``@``. The old form, without ``@topic-id``, is
still read: a ref with no id (:data:`NO_TOPIC_ID`) names the topic by name
only (docs/memory.md, "Record references").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from engine.errors import EngineError, UnknownTopicId
from engine.protocol.kafka_code import KafkaCode
from engine.topic_id import NO_TOPIC_ID, parse_topic_id, uuid_text
from engine.types import TopicPartition

CONTEXT_HEADER = "tidelog.context"
"""The record header an offset vector travels in, by convention."""

_DECIMAL = re.compile(r"[0-9]+")
"""A partition in a vector's text: ASCII digits (str.isdigit also takes
other scripts' digits, some of which int() refuses)."""
_INTEGER = re.compile(r"-1|0|[1-9][0-9]*")
"""A number in a ref's text, as ``str(int)`` writes it: no leading zero, no
``-0``; ``-1`` (an unknown epoch) the one negative."""

_MAX_PARTITION = 2**31 - 1
_MAX_OFFSET = 2**63 - 1
_MAX_EPOCH = 2**31 - 1
"""Kafka's ranges (int32 partitions and leader epochs, int64 offsets): a
place past them is in no log, and no Kafka client can carry it."""
_MAX_DIGITS = 19
"""The most digits a number in a vector's or ref's text has (2**63 - 1 has
19): a longer one is out of range before int() reads it, and int() refuses
strings past its own digit limit with a bare ValueError."""

_MAX_TEXT = 1 << 20
"""The longest vector text parsed (a vector names a position per partition;
a megabyte is tens of thousands of them)."""


class InvalidVector(EngineError):
    """A vector's or reference's text form did not parse."""

    code = KafkaCode.INVALID_REQUEST


@dataclass(frozen=True, slots=True)
class Position:
    """A partition's place in a vector: the first offset not included, the
    leader epoch of the last included record (-1: unknown) and the id of
    the topic it is a place in (NO_TOPIC_ID: not known, the topic named by
    its name only)."""

    offset: int
    leader_epoch: int = -1
    topic_id: bytes = NO_TOPIC_ID


class OffsetVector(Mapping[TopicPartition, Position]):
    """An immutable mapping from topic partitions to positions."""

    __slots__ = ("_positions", "_topic_ids")

    def __init__(self, positions: Mapping[TopicPartition, Position] | None = None) -> None:
        checked: dict[TopicPartition, Position] = {}
        ids: dict[str, bytes] = {}
        for tp, position in (positions or {}).items():
            if not tp.topic or not _in_range(tp.partition, position.offset, 0):
                raise InvalidVector(f"{tp.topic}-{tp.partition}: offset {position.offset}")
            # -1 is "not known"; no epoch is below it
            if not _in_range(0, 0, position.leader_epoch):
                raise InvalidVector(f"{tp.topic}-{tp.partition}: epoch {position.leader_epoch}")
            if ids.setdefault(tp.topic, position.topic_id) != position.topic_id:
                raise InvalidVector(f"{tp.topic}: its positions name two topic ids")
            checked[tp] = position
        self._positions = MappingProxyType(dict(sorted(checked.items())))
        self._topic_ids = ids

    def __getitem__(self, tp: TopicPartition) -> Position:
        return self._positions[tp]

    def __iter__(self) -> Iterator[TopicPartition]:
        return iter(self._positions)

    def __len__(self) -> int:
        return len(self._positions)

    def __repr__(self) -> str:
        return f"OffsetVector({self.to_text()})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, OffsetVector):
            return dict(self._positions) == dict(other._positions)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._positions.items()))

    @property
    def topics(self) -> list[str]:
        """The topics the vector names, sorted."""
        return sorted({tp.topic for tp in self._positions})

    def topic_id(self, topic: str) -> bytes:
        """The id of the topic the vector's positions of ``topic`` are
        places in (one for them all); NO_TOPIC_ID if not known."""
        return self._topic_ids.get(topic, NO_TOPIC_ID)

    def check_topic_id(self, topic: str, topic_id: bytes) -> None:
        """UnknownTopicId if the vector's positions of ``topic`` are places
        in another topic of that name than ``topic_id``'s (one deleted since)."""
        named = self.topic_id(topic)
        if named not in (NO_TOPIC_ID, topic_id):
            raise UnknownTopicId(topic, named)

    def includes(self, tp: TopicPartition, offset: int) -> bool:
        """Whether the record at ``offset`` of ``tp`` is below the vector."""
        position = self._positions.get(tp)
        return position is not None and offset < position.offset

    def to_json(self) -> dict[str, dict[str, dict[str, int | str]]]:
        """The agent-action schema's ``context_offsets`` value."""
        out: dict[str, dict[str, dict[str, int | str]]] = {}
        for tp, position in self._positions.items():
            place: dict[str, int | str] = {
                "offset": position.offset,
                "leader_epoch": position.leader_epoch,
            }
            if position.topic_id != NO_TOPIC_ID:
                place["topic_id"] = uuid_text(position.topic_id)
            out.setdefault(tp.topic, {})[str(tp.partition)] = place
        return out

    def to_text(self) -> str:
        """The compact, canonical JSON text (one vector, one text)."""
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True)

    def to_header(self) -> tuple[str, bytes]:
        """The vector as a record header: (CONTEXT_HEADER, its text)."""
        return CONTEXT_HEADER, self.to_text().encode()

    @classmethod
    def from_json(cls, raw: Any) -> OffsetVector:
        """Parses the ``context_offsets`` value; InvalidVector if malformed."""
        if not isinstance(raw, dict):
            raise InvalidVector("an offset vector is a JSON object of topics")
        positions: dict[TopicPartition, Position] = {}
        for topic, partitions in raw.items():
            if not isinstance(topic, str) or not isinstance(partitions, dict):
                raise InvalidVector(f"topic {topic!r}: expected an object of partitions")
            for partition, position in partitions.items():
                if not (isinstance(partition, str) and _DECIMAL.fullmatch(partition)):
                    raise InvalidVector(f"{topic}: partition {partition!r} is not a number")
                if len(partition) > _MAX_DIGITS:
                    raise InvalidVector(f"{topic}: partition {partition[:40]}... is out of range")
                tp = TopicPartition(topic, int(partition))
                if tp in positions:  # "1" and "01": which position is meant?
                    raise InvalidVector(f"{topic}: partition {int(partition)} is named twice")
                if not isinstance(position, dict):
                    raise InvalidVector(f"{topic}-{partition}: expected an object")
                offset, epoch = position.get("offset"), position.get("leader_epoch", -1)
                if type(offset) is not int or type(epoch) is not int:
                    raise InvalidVector(f"{topic}-{partition}: expected integer offset/epoch")
                id_text = position.get("topic_id")
                if id_text is not None and not isinstance(id_text, str):
                    raise InvalidVector(f"{topic}-{partition}: topic_id is not text")
                topic_id = NO_TOPIC_ID if id_text is None else _topic_id(id_text)
                positions[tp] = Position(offset, epoch, topic_id)
        return cls(positions)

    @classmethod
    def from_text(cls, text: str | bytes) -> OffsetVector:
        """Parses :meth:`to_text`'s form (or any JSON of the same shape)."""
        if len(text) > _MAX_TEXT:
            raise InvalidVector(f"an offset vector's text is at most {_MAX_TEXT} bytes")
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as error:  # RecursionError: nested too deep
            raise InvalidVector(f"not JSON: {error}") from error
        return cls.from_json(raw)


@dataclass(frozen=True, slots=True, order=True)
class RecordRef:
    """One stored record: where it is, the leader epoch it was written in,
    and the id of the topic it is in (:data:`NO_TOPIC_ID`: not known).

    Two refs are equal only if their topic ids are: the record at a
    position of a topic created again under the same name is another
    record, and a ref that knows no id is never equal to one that does."""

    topic: str
    partition: int
    offset: int
    leader_epoch: int = -1
    topic_id: bytes = NO_TOPIC_ID
    """The topic's 16-byte UUID, as Kafka's Metadata response carries it;
    NO_TOPIC_ID: not known, and the ref names the topic by name only
    (whichever topic holds the name when it is read)."""

    def __str__(self) -> str:
        where = f"{self.topic}:{self.partition}:{self.offset}:{self.leader_epoch}"
        if self.topic_id == NO_TOPIC_ID:
            return where
        return f"{where}@{uuid_text(self.topic_id)}"

    def with_topic_id(self, topic_id: bytes) -> RecordRef:
        return RecordRef(self.topic, self.partition, self.offset, self.leader_epoch, topic_id)

    @classmethod
    def parse(cls, text: str) -> RecordRef:
        """Parses ``topic:partition:offset:epoch@topic-id``, or the old form
        without ``@topic-id``; InvalidVector if malformed."""
        where, at, id_text = text.rpartition("@") if "@" in text else (text, "", "")
        parts = where.rsplit(":", 3)
        numbers = parts[1:]
        if len(parts) != 4 or not all(
            len(number) <= _MAX_DIGITS and _INTEGER.fullmatch(number) for number in numbers
        ):
            # int() also reads " 1", "1_0", "007", "-0" and other scripts'
            # digits: one ref, one text.
            raise InvalidVector(
                f"not a record reference (topic:partition:offset:epoch@topic-id): {text!r}"
            )
        topic, partition, offset, epoch = parts
        if ":" in topic:  # Kafka topic names never hold it, as from_json holds
            raise InvalidVector(f"not a record reference: {text!r}")
        ref = cls(topic, int(partition), int(offset), int(epoch))
        if not topic or not _in_range(ref.partition, ref.offset, ref.leader_epoch):
            raise InvalidVector(f"not a record reference: {text!r}")
        return ref.with_topic_id(_topic_id(id_text)) if at else ref

    def to_json(self) -> dict[str, Any]:
        """The agent-action schema's reference object for the record."""
        out: dict[str, Any] = {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
        }
        # Each part not known is left out: a ref knowing neither is the old object.
        if self.leader_epoch != -1:
            out["leader_epoch"] = self.leader_epoch
        if self.topic_id != NO_TOPIC_ID:
            out["topic_id"] = uuid_text(self.topic_id)
        return out

    @classmethod
    def from_json(cls, raw: Any) -> RecordRef:
        """Parses :meth:`to_json`'s object, or the old one without
        ``leader_epoch`` (-1) and ``topic_id`` (NO_TOPIC_ID); InvalidVector
        if it names no record (a URI reference, say)."""
        if not isinstance(raw, dict):
            raise InvalidVector("a record reference is a JSON object")
        topic, partition, offset = raw.get("topic"), raw.get("partition"), raw.get("offset")
        epoch, id_text = raw.get("leader_epoch", -1), raw.get("topic_id")
        if not isinstance(topic, str) or not topic or "@" in topic or ":" in topic:
            raise InvalidVector(f"not a record reference: topic {topic!r}")
        if type(partition) is not int or type(offset) is not int or type(epoch) is not int:
            raise InvalidVector(f"{topic}: expected integer partition/offset/leader_epoch")
        if not _in_range(partition, offset, epoch):
            raise InvalidVector(f"not a record reference: {topic}:{partition}:{offset}:{epoch}")
        if id_text is not None and not isinstance(id_text, str):
            raise InvalidVector(f"{topic}: topic_id is not text")
        topic_id = NO_TOPIC_ID if id_text is None else _topic_id(id_text)
        return cls(topic, partition, offset, epoch, topic_id)


def _in_range(partition: int, offset: int, epoch: int) -> bool:
    """Whether a place is one a Kafka log can have (epoch -1: not known)."""
    return (
        0 <= partition <= _MAX_PARTITION
        and 0 <= offset <= _MAX_OFFSET
        and -1 <= epoch <= _MAX_EPOCH
    )


def _topic_id(text: str) -> bytes:
    try:
        return parse_topic_id(text)
    except ValueError as error:
        raise InvalidVector(str(error)) from error
