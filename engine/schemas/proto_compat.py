"""Protobuf compatibility: the differences between two versions of a schema
that Confluent's registry counts as breaking (its ``SchemaDiff``), found on
the compiled descriptors.

A check compares an *original* (the writer's schema) with an *update* (the
reader's): messages by full name, fields by number, oneofs by name. Each
breaking difference is reported with Confluent's name for it:

- ``PACKAGE_CHANGED``: the file's package differs;
- ``MESSAGE_REMOVED``: a message of the original (a renamed one too) is
  missing (map entries excepted);
- ``FIELD_KIND_CHANGED``: a field went between scalar (enums count as
  scalars), message and map;
- ``FIELD_SCALAR_KIND_CHANGED``: a scalar field's type left its wire group
  (``int32 uint32 int64 uint64 bool`` and enums; ``sint32 sint64``;
  ``fixed32 sfixed32``; ``fixed64 sfixed64``; ``float``; ``double``;
  ``string bytes``);
- ``FIELD_NAMED_TYPE_CHANGED``: a message field names another message;
- ``FIELD_NUMERIC_LABEL_CHANGED``: a numeric field became repeated or
  stopped being;
- ``REQUIRED_FIELD_ADDED`` / ``REQUIRED_FIELD_REMOVED``: a proto2
  ``required`` field (or label) added or removed;
- ``ONEOF_FIELD_REMOVED``: a field left a oneof both versions have;
- ``FIELD_MOVED_TO_EXISTING_ONEOF``: a field joined a oneof the original had;
- ``MULTIPLE_FIELDS_MOVED_TO_ONEOF``: fields of the original joined a new
  oneof together.

Everything else is compatible, as in Confluent's: fields and messages
added, fields removed or renamed, enums and enum values added, removed or
renamed, oneofs added or removed, messages reordered, ``string``/``bytes``
and message fields made repeated or not.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from engine.schemas.proto_files import ProtoSchema

# FieldDescriptorProto's Type and Label numbers (descriptor.proto), by name.
_TYPE_NAMES = {
    1: "double",
    2: "float",
    3: "int64",
    4: "uint64",
    5: "int32",
    6: "fixed64",
    7: "fixed32",
    8: "bool",
    9: "string",
    10: "group",
    11: "message",
    12: "bytes",
    13: "uint32",
    14: "enum",
    15: "sfixed32",
    16: "sfixed64",
    17: "sint32",
    18: "sint64",
}
_MESSAGE, _GROUP, _ENUM = 11, 10, 14
_LABEL_REPEATED, _LABEL_REQUIRED = 3, 2
_SCALAR_GROUPS = {
    # Confluent's ScalarKind: types that read each other's wire encoding.
    "int32": "number",
    "uint32": "number",
    "int64": "number",
    "uint64": "number",
    "bool": "number",
    "enum": "number",
    "sint32": "signed",
    "sint64": "signed",
    "fixed32": "fixed32",
    "sfixed32": "fixed32",
    "fixed64": "fixed64",
    "sfixed64": "fixed64",
    "float": "float",
    "double": "double",
    "string": "text",
    "bytes": "text",
}


def breaking_changes(original: ProtoSchema, update: ProtoSchema) -> list[str]:
    """What breaks reading ``original``'s data with ``update`` (empty: nothing)."""
    return list(_Diff(original, update).run())


class _Diff:
    def __init__(self, original: ProtoSchema, update: ProtoSchema) -> None:
        self.original = original.file
        self.update = update.file
        self.original_messages = _messages_of(original)
        self.update_messages = _messages_of(update)

    def run(self) -> Iterator[str]:
        if self.original.package != self.update.package:
            yield (
                f"PACKAGE_CHANGED: package {self.original.package!r} became {self.update.package!r}"
            )
        yield from self._messages(
            _prefix(self.original.package), self.original.message_type, self.update.message_type
        )

    def _messages(self, scope: str, original: Any, update: Any) -> Iterator[str]:
        updated = {m.name: m for m in update}
        for message in original:
            name = scope + message.name
            counterpart = updated.get(message.name)
            if counterpart is None:
                if not message.options.map_entry:
                    yield f"MESSAGE_REMOVED: message {name}"
                continue
            yield from self._fields(name, message, counterpart)
            yield from self._messages(name + ".", message.nested_type, counterpart.nested_type)

    def _fields(self, name: str, original: Any, update: Any) -> Iterator[str]:
        before = {f.number: f for f in original.field}
        after = {f.number: f for f in update.field}
        for number, field in before.items():
            where = f"{name} field {number} ({field.name})"
            other = after.get(number)
            if other is None:
                if field.label == _LABEL_REQUIRED:
                    yield f"REQUIRED_FIELD_REMOVED: {where}"
                continue
            yield from self._field(where, field, other)
        for number, field in after.items():
            if number not in before and field.label == _LABEL_REQUIRED:
                yield f"REQUIRED_FIELD_ADDED: {name} field {number} ({field.name})"
        yield from self._oneofs(name, original, update)

    def _field(self, where: str, original: Any, update: Any) -> Iterator[str]:
        if (original.label == _LABEL_REQUIRED) != (update.label == _LABEL_REQUIRED):
            kind = "ADDED" if update.label == _LABEL_REQUIRED else "REMOVED"
            yield f"REQUIRED_FIELD_{kind}: {where} label changed"
        before_kind = self._kind(original, self.original_messages)
        after_kind = self._kind(update, self.update_messages)
        if before_kind != after_kind:
            yield f"FIELD_KIND_CHANGED: {where} went from {before_kind} to {after_kind}"
            return
        if before_kind == "map":
            before_entry = self.original_messages[original.type_name.lstrip(".")]
            after_entry = self.update_messages[update.type_name.lstrip(".")]
            for index, part in enumerate(("key", "value")):
                yield from self._field(
                    f"{where} map {part}", before_entry.field[index], after_entry.field[index]
                )
            return
        if before_kind == "message":
            before_name = _local(original.type_name, self.original.package)
            after_name = _local(update.type_name, self.update.package)
            if before_name != after_name:
                yield f"FIELD_NAMED_TYPE_CHANGED: {where} type {before_name} became {after_name}"
            return
        before_type, after_type = _TYPE_NAMES[original.type], _TYPE_NAMES[update.type]
        group = _SCALAR_GROUPS[before_type]
        if group != _SCALAR_GROUPS[after_type]:
            yield f"FIELD_SCALAR_KIND_CHANGED: {where} type {before_type} became {after_type}"
            return
        repeated = (original.label == _LABEL_REPEATED, update.label == _LABEL_REPEATED)
        if repeated[0] != repeated[1] and group != "text":
            change = "is no longer" if repeated[0] else "became"
            yield f"FIELD_NUMERIC_LABEL_CHANGED: {where} {change} repeated"

    def _kind(self, field: Any, messages: dict[str, Any]) -> str:
        if field.type in (_MESSAGE, _GROUP):
            entry = messages.get(field.type_name.lstrip("."))
            if entry is not None and entry.options.map_entry:
                return "map"
            return "message"
        return "scalar"

    def _oneofs(self, name: str, original: Any, update: Any) -> Iterator[str]:
        before = _oneof_members(original)
        after = _oneof_members(update)
        existing = {f.number for f in original.field}
        for oneof, members in after.items():
            where = f"{name} oneof {oneof}"
            if oneof in before:
                for number in sorted(before[oneof] - members):
                    yield f"ONEOF_FIELD_REMOVED: {where} lost field {number}"
                for number in sorted((members - before[oneof]) & existing):
                    yield f"FIELD_MOVED_TO_EXISTING_ONEOF: {where} took field {number}"
            elif len(members & existing) > 1:
                moved = ", ".join(str(n) for n in sorted(members & existing))
                yield f"MULTIPLE_FIELDS_MOVED_TO_ONEOF: {where} took fields {moved}"


def _oneof_members(message: Any) -> dict[str, set[int]]:
    """The real oneofs' field numbers by oneof name (a proto3 ``optional``
    field's synthetic oneof is no oneof to its readers)."""
    members: dict[str, set[int]] = {}
    for field in message.field:
        if field.HasField("oneof_index") and not field.proto3_optional:
            oneof = message.oneof_decl[field.oneof_index].name
            members.setdefault(oneof, set()).add(field.number)
    return members


def _messages_of(schema: ProtoSchema) -> dict[str, Any]:
    """Every message of the schema and its imports, by full name (no dot first)."""
    found: dict[str, Any] = {}
    for file in schema.files:
        stack = [(_prefix(file.package), m) for m in file.message_type]
        while stack:
            scope, message = stack.pop()
            found[scope + message.name] = message
            stack.extend((scope + message.name + ".", n) for n in message.nested_type)
    return found


def _prefix(package: str) -> str:
    return package + "." if package else ""


def _local(type_name: str, package: str) -> str:
    """A type's name without its file's package (which PACKAGE_CHANGED covers)."""
    name = type_name.lstrip(".")
    prefix = _prefix(package)
    return name[len(prefix) :] if prefix and name.startswith(prefix) else name
