"""Response encoding, compiled from Kafka's message schemas.

The schemas come from ``kio`` (dataclasses generated from Kafka's own JSON
message definitions, one class per API version). Rather than build those
frozen dataclasses for every response, a handler returns plain dicts keyed by
the schema's field names, and this module writes them for whatever version
the client asked for: fields a version lacks are skipped, fields a handler
leaves out take the schema's default, tagged fields are written only when
they differ from their default (KIP-482).

Record data is never copied into the response buffer: a ``records`` value
may be a list of stored batches (bytes or memoryviews), and they become
separate parts of the output, handed to the socket as they are.
"""

from __future__ import annotations

import dataclasses
import struct
import uuid
from collections.abc import Callable, Mapping
from functools import cache
from types import NoneType, UnionType
from typing import Any, Union, get_args, get_origin

from native import FLAT_BUFFER_TYPES

__all__ = [
    "EncodedItem",
    "EncodedItems",
    "Sink",
    "encode",
    "encoder_for",
    "item_encoder",
    "uvarint",
]

_INT8 = struct.Struct(">b")
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_INT64 = struct.Struct(">q")
_UINT16 = struct.Struct(">H")
_UINT32 = struct.Struct(">I")
_FLOAT64 = struct.Struct(">d")

_ZERO_COPY_MIN = 4096
"""Record data shorter than this is copied into the buffer: a separate part
costs more than the copy."""


class Sink:
    """An output buffer that can hold large record data by reference."""

    __slots__ = ("buffer", "parts")

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.parts: list[bytes | bytearray | memoryview] = []

    def attach(self, data: bytes | bytearray | memoryview) -> None:
        if len(data) < _ZERO_COPY_MIN:
            self.buffer += data
            return
        if self.buffer:
            self.parts.append(self.buffer)
            self.buffer = bytearray()
        self.parts.append(data)

    def finish(self) -> list[bytes | bytearray | memoryview]:
        if self.buffer:
            self.parts.append(self.buffer)
            self.buffer = bytearray()
        return self.parts

    def size(self) -> int:
        return len(self.buffer) + sum(map(len, self.parts))


Writer = Callable[[Sink, Any], None]


@dataclasses.dataclass(frozen=True, slots=True)
class EncodedItems:
    """An array's items already encoded for the version being written:
    ``count`` items, one after another in ``data`` (the array's length is
    written by the array's writer, as for a list). A handler whose long
    array is the same item after item (a topic's partitions in Metadata)
    encodes it without a walk of the schema per item."""

    count: int
    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class EncodedItem:
    """One struct already encoded for the version being written, given in
    place of its dict (an array's items may mix both), as parts (record
    data by reference, as Sink.attach takes it): an item that many
    responses carry alike (a partition's data fetched by many consumers) is
    encoded once and copied into each, and items answered alike (a Fetch's
    caught-up partitions, an accepted Produce partition) are written from a
    template rather than through the schema."""

    parts: tuple[bytes | memoryview, ...]

    @classmethod
    def of(cls, write: Writer, value: Any) -> EncodedItem:
        """``value`` written by ``write`` (an ``item_encoder``)."""
        sink = Sink()
        write(sink, value)
        # The sink's own buffers are copied: a part is never written to again.
        parts = [bytes(part) if isinstance(part, bytearray) else part for part in sink.finish()]
        return cls(tuple(parts))

    @classmethod
    def single(cls, data: bytes | memoryview) -> EncodedItem:
        """An item encoded in one buffer (a template's bytes, packed)."""
        return cls((data,))


def uvarint(out: bytearray, value: int) -> None:
    """Appends ``value`` as an unsigned varint."""
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _fixed(layout: struct.Struct) -> Writer:
    pack = layout.pack

    def write(sink: Sink, value: Any) -> None:
        sink.buffer += pack(value)

    return write


def _bool(sink: Sink, value: Any) -> None:
    sink.buffer.append(1 if value else 0)


def _millis(value: Any) -> int:
    """Durations and times are written as milliseconds; handlers may pass ints."""
    if isinstance(value, int):
        return value
    seconds = value.total_seconds() if hasattr(value, "total_seconds") else value.timestamp()
    return round(float(seconds) * 1000)


def _millis_writer(layout: struct.Struct, nullable: bool) -> Writer:
    pack = layout.pack

    def write(sink: Sink, value: Any) -> None:
        sink.buffer += pack(-1 if value is None and nullable else _millis(value))

    return write


def _uuid(sink: Sink, value: Any) -> None:
    if value is None:
        sink.buffer += bytes(16)
    elif isinstance(value, uuid.UUID):
        sink.buffer += value.bytes
    else:
        if len(value) != 16:
            raise ValueError(f"a uuid is 16 bytes, not {len(value)}")
        sink.buffer += value


def _as_bytes(value: Any) -> bytes | bytearray | memoryview:
    return value.encode() if isinstance(value, str) else value


def _string_writer(flexible: bool, nullable: bool, wide: bool) -> Writer:
    """Strings and bytes: compact (uvarint length + 1) in flexible versions,
    else an int16 (strings) or int32 (bytes) length; -1 / 0 for null."""

    def write(sink: Sink, value: Any) -> None:
        out = sink.buffer
        if value is None:
            if not nullable:
                raise ValueError("null given for a non-nullable field")
            if flexible:
                out.append(0)
            else:
                out += _INT32.pack(-1) if wide else _INT16.pack(-1)
            return
        data = _as_bytes(value)
        if flexible:
            uvarint(out, len(data) + 1)
        else:
            out += _INT32.pack(len(data)) if wide else _INT16.pack(len(data))
        out += data

    return write


_BUFFERS = (bytearray, memoryview, *FLAT_BUFFER_TYPES)
"""A tuple, not a union: ``bytes | bytearray | memoryview`` written in the
check builds a new union at every call, and isinstance walks it slower.
With the C extension a stored payload's ByteSlice too (0154): one buffer,
not a sequence of them."""


def _records_writer(flexible: bool, nullable: bool) -> Writer:
    """Record data: one buffer or a sequence of stored batches, written by
    reference (see Sink.attach)."""

    def write(sink: Sink, value: Any) -> None:
        out = sink.buffer
        if value is None:
            if not nullable:
                raise ValueError("null given for non-nullable records")
            if flexible:
                out.append(0)
            else:
                out += _INT32.pack(-1)
            return
        chunks: Any = (value,) if isinstance(value, _BUFFERS) else value
        total = sum(map(len, chunks))
        if flexible:
            uvarint(out, total + 1)
        else:
            out += _INT32.pack(total)
        for chunk in chunks:
            sink.attach(chunk)

    return write


def _primitive_writer(kafka_type: str, flexible: bool, nullable: bool) -> Writer:
    match kafka_type:
        case "int8":
            return _fixed(_INT8)
        case "int16" | "error_code":
            return _fixed(_INT16)
        case "int32":
            return _fixed(_INT32)
        case "int64":
            return _fixed(_INT64)
        case "uint16":
            return _fixed(_UINT16)
        case "uint32":
            return _fixed(_UINT32)
        case "float64":
            return _fixed(_FLOAT64)
        case "bool":
            return _bool
        case "uuid":
            return _uuid
        case "string":
            return _string_writer(flexible, nullable, wide=False)
        case "bytes":
            return _string_writer(flexible, nullable, wide=True)
        case "records":
            return _records_writer(flexible, nullable)
        case "timedelta_i32":
            return _millis_writer(_INT32, nullable)
        case "timedelta_i64" | "datetime_i64":
            return _millis_writer(_INT64, nullable)
    raise NotImplementedError(f"no writer for Kafka type {kafka_type!r}")


def _array_writer(item: Writer, flexible: bool, nullable: bool) -> Writer:
    def write(sink: Sink, values: Any) -> None:
        out = sink.buffer
        if values is None:
            if not nullable:
                raise ValueError("null given for a non-nullable array")
            if flexible:
                out.append(0)
            else:
                out += _INT32.pack(-1)
            return
        encoded = values if isinstance(values, EncodedItems) else None
        count = len(values) if encoded is None else encoded.count
        if flexible:
            uvarint(out, count + 1)
        else:
            out += _INT32.pack(count)
        if encoded is not None:
            out += encoded.data
            return
        for value in values:
            item(sink, value)

    return write


def _nullable_struct(write_struct: Writer) -> Writer:
    """A nullable struct (KIP-893) is preceded by -1 (null) or 1."""

    def write(sink: Sink, value: Any) -> None:
        if value is None:
            sink.buffer += _INT8.pack(-1)
            return
        sink.buffer += _INT8.pack(1)
        write_struct(sink, value)

    return write


def _unwrap_optional(field_type: Any) -> tuple[Any, bool]:
    if get_origin(field_type) in (UnionType, Union):
        args = [arg for arg in get_args(field_type) if arg is not NoneType]
        return args[0], len(args) < len(get_args(field_type))
    return field_type, False


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    name: str
    write: Writer
    default: Any
    tag: int | None


def _field_default(
    field: dataclasses.Field[Any], inner: Any, is_array: bool, nullable: bool
) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if is_array:
        return None if nullable else ()
    if dataclasses.is_dataclass(inner):
        return {}
    if nullable:
        return None
    kafka_type = field.metadata.get("kafka_type")
    if kafka_type in ("string",):
        return ""
    if kafka_type in ("bytes", "records"):
        return b""
    if kafka_type == "bool":
        return False
    if kafka_type == "uuid":
        return None
    return 0


def _compile_field(field: dataclasses.Field[Any], flexible: bool) -> _Field:
    tag = field.metadata.get("tag")
    inner, nullable = _unwrap_optional(field.type)
    is_array = get_origin(inner) is tuple
    if is_array:
        inner = get_args(inner)[0]
    # A tagged field's presence is its optionality; its value is never null.
    value_nullable = nullable and tag is None
    if dataclasses.is_dataclass(inner):
        item: Writer = encoder_for(inner)  # type: ignore[arg-type]
        if value_nullable and not is_array:
            item = _nullable_struct(item)
    else:
        item = _primitive_writer(
            field.metadata["kafka_type"], flexible, value_nullable and not is_array
        )
    write = _array_writer(item, flexible, value_nullable) if is_array else item
    default = _field_default(field, inner, is_array, nullable)
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        default = {f.name: getattr(default, f.name) for f in dataclasses.fields(default)}
    return _Field(field.name, write, default, None if tag is None else int(tag))


@cache
def encoder_for(schema: type) -> Writer:
    """A writer of dicts shaped like ``schema`` (a kio entity class)."""
    flexible = bool(getattr(schema, "__flexible__", False))
    plain: list[_Field] = []
    tagged: list[_Field] = []
    for field in dataclasses.fields(schema):
        compiled = _compile_field(field, flexible)
        (plain if compiled.tag is None else tagged).append(compiled)
    tagged.sort(key=lambda f: f.tag or 0)
    tagged_defaults = {f.name: _encoded(f.write, f.default) for f in tagged}

    def write(sink: Sink, value: Any) -> None:
        if type(value) is EncodedItem:
            for part in value.parts:
                sink.attach(part)
            return
        get = value.get if isinstance(value, Mapping) else _attribute_getter(value)
        for f in plain:
            f.write(sink, get(f.name, f.default))
        if not flexible:
            return
        present = []
        for f in tagged:
            given = get(f.name, f.default)
            encoded = _encoded(f.write, given)
            if encoded != tagged_defaults[f.name]:
                present.append((f.tag, encoded))
        out = sink.buffer
        uvarint(out, len(present))
        for tag, encoded in present:
            uvarint(out, tag or 0)
            uvarint(out, len(encoded))
            out += encoded

    return write


def item_encoder(schema: type, *path: str) -> Writer:
    """The writer of one item of the array reached from ``schema`` by the
    field names of ``path`` (each an array of structs, the last the one
    meant): what an EncodedItems of that array must hold, item after item."""
    for name in path:
        (field,) = [f for f in dataclasses.fields(schema) if f.name == name]
        inner, _ = _unwrap_optional(field.type)
        if get_origin(inner) is not tuple:
            raise TypeError(f"{schema.__name__}.{name} is not an array")
        schema = get_args(inner)[0]
    return encoder_for(schema)


def _attribute_getter(value: Any) -> Callable[[str, Any], Any]:
    def get(name: str, default: Any) -> Any:
        return getattr(value, name, default)

    return get


def _encoded(write: Writer, value: Any) -> bytes:
    sink = Sink()
    write(sink, value)
    return b"".join(sink.finish())


def encode(schema: type, value: Mapping[str, Any] | Any) -> list[bytes | bytearray | memoryview]:
    """Encodes ``value`` (a dict, or an entity) as ``schema``; returns the parts."""
    sink = Sink()
    encoder_for(schema)(sink, value)
    return sink.finish()
