"""The broker's check of a Protobuf payload: Confluent's message indexes
(which message of the schema's file the payload holds), then the message
itself, read by protobuf's own parser (unknown fields are kept, as protobuf
reads them; a proto2 message missing a required field is refused, as Java's
parser refuses it).

The indexes follow the schema id in Confluent's wire format: a zigzag
varint count, then that many zigzag varint indexes (a top-level message's
index in the file, then a nested message's in each level); the single byte
0 stands for ``[0]``, the file's first message. A ``raw`` topic's payload has
no prefix and no indexes: it holds the file's first message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.schemas.proto_files import ProtoSchema, ProtoSchemaError, compile_registered
from engine.schemas.types import RegisteredSchema, SchemaReference

MAX_INDEXES = 100
"""Message indexes a payload may give: protobuf nests no deeper than this."""
_VARINT_BYTES = 10


class NoMessageIndexes(ValueError):
    """A payload whose message indexes do not read."""


def read_message_indexes(body: bytes | memoryview) -> tuple[tuple[int, ...], int]:
    """The message indexes at the start of ``body`` and the offset after them."""
    count, offset = _zigzag(body, 0)
    if count == 0:
        return (0,), offset
    if not 0 < count <= MAX_INDEXES:
        raise NoMessageIndexes(f"claims {count} message indexes (at most {MAX_INDEXES})")
    indexes = []
    for _ in range(count):
        index, offset = _zigzag(body, offset)
        indexes.append(index)
    return tuple(indexes), offset


def _zigzag(body: bytes | memoryview, offset: int) -> tuple[int, int]:
    value = shift = 0
    for position in range(offset, min(offset + _VARINT_BYTES, len(body))):
        byte = body[position]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (value >> 1) ^ -(value & 1), position + 1
        shift += 7
    raise NoMessageIndexes("ends inside its message indexes")


class ProtobufCheck:
    """A payload is the message its indexes name, as protobuf parses it."""

    def __init__(self, schema: ProtoSchema, schema_id: int) -> None:
        self.schema = schema
        self.schema_id = schema_id
        self._classes: dict[tuple[int, ...], Any] = {}
        """Message classes by indexes; at most one per message of the schema."""

    def problem(self, body: bytes | memoryview) -> str | None:
        try:
            indexes, offset = read_message_indexes(body)
        except NoMessageIndexes as error:
            return f"does not hold Confluent's Protobuf message indexes: it {error}"
        return self._parse(indexes, body[offset:])

    def unframed_problem(self, payload: bytes | memoryview) -> str | None:
        """A payload with no prefix and no indexes: the file's first message."""
        return self._parse((0,), payload)

    @property
    def unframed(self) -> Unframed:
        """This check for payloads with no prefix and no indexes (``raw``)."""
        return Unframed(self)

    def _parse(self, indexes: tuple[int, ...], data: bytes | memoryview) -> str | None:
        message_class = self._classes.get(indexes)
        if message_class is None:
            try:
                descriptor = self.schema.message(indexes)
            except ProtoSchemaError as error:
                return f"names no message of schema id {self.schema_id}: {error}"
            from google.protobuf import message_factory  # noqa: PLC0415  (the extra's)

            message_class = message_factory.GetMessageClass(descriptor)
            self._classes[indexes] = message_class
        name = message_class.DESCRIPTOR.full_name
        try:
            message = message_class.FromString(bytes(data))
        except Exception as error:  # DecodeError, or the runtime's own for a bad message
            return f"does not parse as Protobuf message {name}: {error}"
        # Python's parser leaves this to the caller; Java's parseFrom, which
        # Confluent's Java deserializer uses, refuses a message without them.
        if not message.IsInitialized():
            missing = ", ".join(message.FindInitializationErrors()[:5])
            return f"does not parse as Protobuf message {name}: required fields missing: {missing}"
        return None


class Unframed:
    """A payload is the schema's first message, with no indexes before it."""

    def __init__(self, check: ProtobufCheck) -> None:
        self.check = check

    def problem(self, body: bytes | memoryview) -> str | None:
        return self.check.unframed_problem(body)


def protobuf_check(
    registered: RegisteredSchema,
    referenced: Callable[[SchemaReference], RegisteredSchema | None],
) -> ProtobufCheck:
    """The check of payloads of ``registered``; ProtoSchemaError if it does not compile."""
    return ProtobufCheck(compile_registered(registered, referenced), registered.schema_id)
