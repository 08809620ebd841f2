"""A topic's records held to schemas on the produce path: the per-topic
rules (``tidelog.key.schema.validation``, ``tidelog.value.schema.validation``
and their subjects) and the check that decodes a batch's records and refuses
the batch, naming each record that breaks them (KIP-467's record errors).

Modes, per field (docs/governance.md, "Schemas on the broker"):

- ``none``: nothing is checked; the topic keeps the path that never decodes
  records.
- ``id``: the payload carries Confluent's wire format and names a registered
  schema id.
- ``full``: as ``id``, and the bytes after the prefix hold to that schema
  (JSON Schema, Avro, or Protobuf's message indexes and message; some by id
  only, see engine/schemas/compiled.py).
- ``raw``: the whole payload, with no prefix, holds to the latest version of
  the field's subject (``<topic>-key`` / ``<topic>-value`` unless
  ``tidelog.*.schema.subject`` names another).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import NamedTuple

import native
from engine.record_errors import records_rejected
from engine.schemas.compiled import CompiledSchema, CompiledSchemas
from engine.schemas.types import PROTOBUF, RegisteredSchema, SchemaLookup
from engine.schemas.wire_format import NotFramed, unframe
from native import MAX_RECORD_ERRORS, BatchHeader, Record
from native.buffers import BytesLike
from native.errors import RecordError

MAX_MESSAGE_CHARS = 500
"""A record error's message is cut to this: a validator's words may quote the
whole failing value, and a refusal names up to MAX_RECORD_ERRORS records."""


class Validation(enum.Enum):
    NONE = "none"
    ID = "id"
    FULL = "full"
    RAW = "raw"


class FieldRule(NamedTuple):
    """How one field (the key or the value) of a topic's records is checked."""

    field: str
    """"key" or "value", as the record errors name it."""
    validation: Validation
    subject: str
    """The subject ``raw`` checks against."""
    position: int
    """The field's place in a decoded record (native.Record)."""


class SchemaSource(NamedTuple):
    """Where a check finds schemas: the broker's registry (None: none is
    served, so no schema id is known) and its compiled schemas."""

    lookup: Callable[[], SchemaLookup | None]
    compiled: CompiledSchemas


NO_REGISTRY = SchemaSource(lambda: None, CompiledSchemas(capacity=0))
"""A broker that serves no registry: every schema id and subject is unknown."""


class _Resolver:
    """One batch's view of the registry: each id and subject asked once."""

    def __init__(self, source: SchemaSource) -> None:
        self.lookup = source.lookup()
        self.compiled = source.compiled
        self.by_id: dict[int, CompiledSchema | None] = {}
        self.by_subject: dict[str, CompiledSchema | None] = {}

    def schema(self, schema_id: int) -> CompiledSchema | None:
        try:
            return self.by_id[schema_id]
        except KeyError:
            found = None if self.lookup is None else self.lookup.by_id(schema_id)
            compiled = None if found is None else self._compile(found)
            self.by_id[schema_id] = compiled
            return compiled

    def latest(self, subject: str) -> CompiledSchema | None:
        if subject not in self.by_subject:
            found = None if self.lookup is None else self.lookup.latest(subject)
            compiled = None if found is None else self._compile(found)
            if found is not None and found.schema_type == PROTOBUF:
                compiled = _unframed(compiled)
            self.by_subject[subject] = compiled
        return self.by_subject[subject]

    def _compile(self, found: RegisteredSchema) -> CompiledSchema:
        referenced = None if self.lookup is None else self.lookup.referenced
        return self.compiled.get(found, referenced)


class RecordCheck:
    """The schema rules of one topic's records."""

    def __init__(self, rules: Sequence[FieldRule], tombstones: bool) -> None:
        self.rules = tuple(rules)
        self.tombstones = tombstones
        """A null value passes (a compacted topic's delete marker)."""

    def check(
        self,
        data: BytesLike,
        headers: Sequence[BatchHeader],
        source: SchemaSource,
        max_inflated: int,
    ) -> None:
        """Raises InvalidRecord naming every record of the batches that
        breaks a rule (the first MAX_RECORD_ERRORS of them, all counted)."""
        resolver = _Resolver(source)
        view = memoryview(data)
        errors: list[RecordError] = []
        total = 0
        for header in headers:
            batch = view[header.position : header.position + header.size]
            records = native.decode_records(batch, max_inflated=max_inflated)
            for index, record in enumerate(records):
                for rule in self.rules:
                    problem = self._problem(rule, record[rule.position], resolver)
                    if problem is not None:
                        total += 1
                        if len(errors) < MAX_RECORD_ERRORS:
                            message = f"record {index}: {rule.field} {problem}"
                            errors.append((index, _shortened(message)))
                        break  # one error per record, as Kafka's record errors
        if errors:
            raise records_rejected(tuple(errors), total)

    def _problem(self, rule: FieldRule, payload: bytes | None, resolver: _Resolver) -> str | None:
        if payload is None:
            if rule.field == "value" and self.tombstones:
                return None
            return f"is null, and the topic holds its {rule.field}s to a schema"
        if rule.validation is Validation.RAW:
            compiled = resolver.latest(rule.subject)
            if compiled is None:
                return f"cannot be checked: subject {rule.subject} has no registered schema"
            return compiled.problem(payload)
        try:
            schema_id, body = unframe(payload)
        except NotFramed as error:
            return str(error)
        compiled = resolver.schema(schema_id)
        if compiled is None:
            return f"names schema id {schema_id}, which is not registered"
        if rule.validation is Validation.ID:
            return None
        return compiled.problem(body)


def _unframed(compiled: CompiledSchema | None) -> CompiledSchema | None:
    """A Protobuf check of payloads without a prefix, so without message
    indexes either (``raw``). Imported here, once a batch meets a Protobuf
    subject: the serve path does not load what only Protobuf needs."""
    from engine.schemas.proto_check import ProtobufCheck  # noqa: PLC0415

    return compiled.unframed if isinstance(compiled, ProtobufCheck) else compiled


def _shortened(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 3] + "..."


def record_check(
    topic: str,
    key: tuple[str, str],
    value: tuple[str, str],
    compact: bool,
) -> RecordCheck | None:
    """The check a topic's configs ask for: ``key`` and ``value`` are each
    field's (validation mode, subject); None if neither field is checked."""
    rules = []
    for field, (mode, subject) in (("key", key), ("value", value)):
        validation = Validation(mode)
        if validation is not Validation.NONE:
            position = Record._fields.index(field)
            rules.append(FieldRule(field, validation, subject or f"{topic}-{field}", position))
    if not rules:
        return None
    return RecordCheck(rules, tombstones=compact)
