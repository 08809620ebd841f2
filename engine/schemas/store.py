"""The schema registry's store: subjects, their versions, schemas by global
id, and compatibility levels and modes, kept in the engine's catalog.

Every change is one catalog record (``schema``, ``subject_version``,
``schema_config``; docs/engine-format.md), so a process opening the same
bucket keeps every schema under its id. A schema is its type, its text in
canonical form and its references: the same schema registered under two
subjects gets one id, as Confluent's registry gives it. Ids are never
reused: a schema's id stays bound to it after every version naming it is
deleted, and registering it again gives that id back.

The store is the embedded API (register, look up, check, delete) and the
:class:`~engine.schemas.types.SchemaLookup` the broker's record checks ask.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from engine.linear_regex import InvalidPattern
from engine.schemas import compatibility
from engine.schemas.compatibility import DEFAULT_LEVEL, LEVELS, ParsedSchema
from engine.schemas.errors import (
    CompatibilityNotConfigured,
    IncompatibleSchema,
    InvalidCompatibilityLevel,
    InvalidMode,
    InvalidSchema,
    InvalidVersion,
    ModeNotConfigured,
    OperationNotPermitted,
    ReferenceExists,
    SchemaNotFound,
    SubjectNotFound,
    SubjectNotSoftDeleted,
    SubjectSoftDeleted,
    VersionNotFound,
    VersionNotSoftDeleted,
    VersionSoftDeleted,
)
from engine.schemas.types import AVRO, JSON, PROTOBUF, RegisteredSchema, SchemaReference

MODES = ("READWRITE", "READONLY", "IMPORT")
DEFAULT_MODE = "READWRITE"
SERVED_TYPES = (AVRO, JSON, PROTOBUF)
"""Schema types this registry parses and checks (PROTOBUF with the
``tidelog[protobuf]`` extra installed; without it, refused naming the extra)."""
MAX_VERSION = 2**31 - 1
MAX_NESTING = 200
"""The deepest a schema's JSON may nest: parsing and checking it recurse."""
COMPATIBILITY = "compatibility"
MODE = "mode"


def served_types() -> tuple[str, ...]:
    """The types a registration may name and succeed: PROTOBUF only with
    its extra installed (found without importing it)."""
    from engine.schemas.proto_files import available  # noqa: PLC0415

    return SERVED_TYPES if available() else (AVRO, JSON)


class SchemaTables(Protocol):
    """The catalog's state the registry keeps its tables in."""

    schemas: dict[int, list[Any]]
    """Global id -> [schema_type, schema, [[name, subject, version], ...]]."""
    subject_versions: dict[str, dict[int, list[Any]]]
    """Subject -> version -> [schema_id, deleted]."""
    schema_configs: dict[str | None, dict[str, str]]
    """Subject (None: global) -> {"compatibility": level, "mode": mode}."""


@dataclass(frozen=True, slots=True)
class SubjectVersion:
    """One version of a subject: what GET /subjects/{s}/versions/{v} answers."""

    subject: str
    version: int
    schema: RegisteredSchema
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class _Reads:
    source: int
    """id() of the subject table it was built from (a snapshot replaces it)."""
    by_id: dict[int, RegisteredSchema]
    latest: dict[str, RegisteredSchema]


class SchemaRegistry:
    """The registry over the catalog; every method is safe from any thread."""

    def __init__(
        self, tables: Callable[[], SchemaTables], append: Callable[[list[Any]], None]
    ) -> None:
        self._tables = tables
        self._append_record = append
        self._lock = threading.RLock()
        self._ids: dict[tuple[str, str, tuple[SchemaReference, ...]], int] = {}
        self._ids_for: int = -1
        """id() of the tables ``_ids`` was built from."""
        self._reads: _Reads | None = None
        """What by_id and latest answer, rebuilt after a change: the record
        checks ask on every produce, without taking the lock."""

    def _append(self, record: list[Any]) -> None:
        self._reads = None
        try:
            self._append_record(record)
        finally:
            self._reads = None

    def _current_reads(self) -> _Reads:
        reads = self._reads
        tables = self._tables()
        if reads is not None and reads.source == id(tables.subject_versions):
            return reads
        with self._lock:
            tables = self._tables()
            by_id: dict[int, RegisteredSchema] = {}
            latest: dict[str, RegisteredSchema] = {}
            for subject, versions in tables.subject_versions.items():
                live = [v for v, state in versions.items() if not state[1]]
                for state in versions.values():
                    if state[0] not in by_id:
                        by_id[state[0]] = _registered(state[0], tables.schemas[state[0]])
                if live:
                    latest[subject] = by_id[versions[max(live)][0]]
            reads = _Reads(id(tables.subject_versions), by_id, latest)
            self._reads = reads
            return reads

    # -- reads -------------------------------------------------------------------

    def by_id(self, schema_id: int) -> RegisteredSchema | None:
        return self._current_reads().by_id.get(schema_id)

    def latest(self, subject: str) -> RegisteredSchema | None:
        return self._current_reads().latest.get(subject)

    def referenced(self, reference: SchemaReference) -> RegisteredSchema | None:
        # A soft-deleted version still resolves, as Confluent's: a schema
        # registered before the delete keeps compiling.
        with self._lock:
            state = self._versions(reference.subject).get(reference.version)
            if state is None:
                return None
            return _registered(state[0], self._tables().schemas[state[0]])

    def serialized(self, schema: RegisteredSchema) -> str:
        """A PROTOBUF schema as a base64 ``FileDescriptorProto`` (Confluent's
        ``format=serialized``); other types' text as it is."""
        if schema.schema_type != PROTOBUF:
            return schema.schema
        from engine.schemas import proto_files  # noqa: PLC0415  (the optional extra's)

        try:
            return proto_files.compile_registered(schema, self.referenced).serialized()
        except proto_files.ProtoSchemaError as error:
            raise InvalidSchema(f"Invalid schema: {error}") from error

    def schema(self, schema_id: int) -> RegisteredSchema:
        """The schema with ``schema_id``; SchemaNotFound if none is."""
        found = self.by_id(schema_id)
        if found is None:
            raise SchemaNotFound(f"Schema {schema_id} not found")
        return found

    def subjects(self, deleted: bool = False, prefix: str = "") -> list[str]:
        with self._lock:
            return sorted(
                subject
                for subject, versions in self._tables().subject_versions.items()
                if subject.startswith(prefix)
                and any(deleted or not state[1] for state in versions.values())
            )

    def versions(self, subject: str, deleted: bool = False) -> list[int]:
        with self._lock:
            found = self._versions(subject)
            listed = sorted(v for v, state in found.items() if deleted or not state[1])
            if not listed:
                raise SubjectNotFound(subject)
            return listed

    def version(self, subject: str, version: int | str, deleted: bool = False) -> SubjectVersion:
        """One version (``"latest"`` or -1: the latest live one)."""
        number = parse_version(version)
        with self._lock:
            found = self._versions(subject)
            if number is None:
                live = self._live_versions(subject)
                if not live:
                    raise SubjectNotFound(subject)
                number = live[-1]
            state = found.get(number)
            if state is None or (state[1] and not deleted):
                raise VersionNotFound(subject, number)
            return self._version_locked(subject, number)

    def subject_versions_of(self, schema_id: int, deleted: bool = False) -> list[tuple[str, int]]:
        """Every (subject, version) naming ``schema_id``; SchemaNotFound if none."""
        with self._lock:
            found = sorted(
                (subject, version)
                for subject, versions in self._tables().subject_versions.items()
                for version, state in versions.items()
                if state[0] == schema_id and (deleted or not state[1])
            )
            if not found and schema_id not in self._tables().schemas:
                raise SchemaNotFound(f"Schema {schema_id} not found")
            return found

    def referenced_by(self, subject: str, version: int) -> list[int]:
        """The ids of live schemas whose references name this version."""
        with self._lock:
            tables = self._tables()
            return sorted(
                {
                    state[0]
                    for versions in tables.subject_versions.values()
                    for state in versions.values()
                    if not state[1]
                    and any(r[1:] == [subject, version] for r in tables.schemas[state[0]][2])
                }
            )

    def lookup(
        self,
        subject: str,
        schema: str,
        schema_type: str = AVRO,
        references: Sequence[SchemaReference] = (),
        *,
        normalize: bool = False,
        deleted: bool = False,
    ) -> SubjectVersion:
        """The version of ``subject`` holding this schema (POST /subjects/{s})."""
        with self._lock:
            if not self._versions(subject):
                raise SubjectNotFound(subject)
            key = self._parse(schema, schema_type, references, normalize)[0]
            schema_id = self._known_ids().get(key)
            for version, state in sorted(self._versions(subject).items(), reverse=True):
                if state[0] == schema_id and (deleted or not state[1]):
                    return self._version_locked(subject, version)
            raise SchemaNotFound("Schema not found")

    # -- compatibility -----------------------------------------------------------

    def compatibility(self, subject: str | None = None, default_to_global: bool = True) -> str:
        """The level in force for ``subject`` (None: the global level)."""
        with self._lock:
            configs = self._tables().schema_configs
            own = configs.get(subject, {}).get(COMPATIBILITY)
            if own is not None:
                return own
            if subject is not None and not default_to_global:
                raise CompatibilityNotConfigured(subject)
            return configs.get(None, {}).get(COMPATIBILITY, DEFAULT_LEVEL)

    def set_compatibility(self, level: object, subject: str | None = None) -> str:
        if not isinstance(level, str) or level.upper() not in LEVELS:
            raise InvalidCompatibilityLevel(level)
        with self._lock:
            if subject is not None:
                self._writable(subject)
            self._append(["schema_config", subject, {COMPATIBILITY: level.upper()}])
            return level.upper()

    def delete_compatibility(self, subject: str | None = None) -> str:
        """Removes a level (the subject then follows the global one); the old level."""
        with self._lock:
            old = self.compatibility(subject, default_to_global=subject is None)
            self._append(["schema_config", subject, {COMPATIBILITY: None}])
            return old

    def check(
        self,
        subject: str,
        schema: str,
        schema_type: str = AVRO,
        references: Sequence[SchemaReference] = (),
        version: int | str | None = None,
        *,
        normalize: bool = False,
    ) -> list[str]:
        """Why ``schema`` is incompatible with ``subject`` (empty: it is
        compatible): against one version, or (None) every version the
        subject's level names."""
        with self._lock:
            parsed = self._parse(schema, schema_type, references, normalize)[1]
            level = self.compatibility(subject)
            if version is None:
                return compatibility.check(level, parsed, self._live_parsed(subject))
            one = self.version(subject, version)
            old = self._parse_registered(one.schema)
            return compatibility.check(level.replace("_TRANSITIVE", ""), parsed, [old])

    # -- modes -------------------------------------------------------------------

    def mode(self, subject: str | None = None, default_to_global: bool = True) -> str:
        with self._lock:
            configs = self._tables().schema_configs
            own = configs.get(subject, {}).get(MODE)
            if own is not None:
                return own
            if subject is not None and not default_to_global:
                raise ModeNotConfigured(subject)
            return configs.get(None, {}).get(MODE, DEFAULT_MODE)

    def set_mode(self, mode: object, subject: str | None = None, force: bool = False) -> str:
        if not isinstance(mode, str) or mode.upper() not in MODES:
            raise InvalidMode(mode)
        mode = mode.upper()
        with self._lock:
            has_schemas = (
                bool(self._versions(subject))
                if subject is not None
                else bool(self._tables().subject_versions)
            )
            if mode == "IMPORT" and has_schemas and not force:
                raise OperationNotPermitted(
                    "Cannot import since found existing subjects (force=true imports anyway)"
                )
            self._append(["schema_config", subject, {MODE: mode}])
            return mode

    def delete_mode(self, subject: str) -> str:
        with self._lock:
            old = self.mode(subject, default_to_global=False)
            self._append(["schema_config", subject, {MODE: None}])
            return old

    # -- writes ------------------------------------------------------------------

    def register(
        self,
        subject: str,
        schema: str,
        schema_type: str = AVRO,
        references: Sequence[SchemaReference] = (),
        *,
        normalize: bool = False,
        schema_id: int | None = None,
        version: int | None = None,
    ) -> int:
        """Registers ``schema`` under ``subject`` (a new version, unless a
        live version already holds it) and answers its global id. In IMPORT
        mode ``schema_id`` and ``version`` may be given and compatibility is
        not checked. Raises IncompatibleSchema (409), InvalidSchema (42201),
        OperationNotPermitted (42205)."""
        if not subject or "\x00" in subject:
            raise InvalidSchema(f"invalid subject name {subject!r}")
        with self._lock:
            mode = self._writable(subject)
            importing = mode == "IMPORT"
            if (schema_id is not None or version is not None) and not importing:
                raise OperationNotPermitted(
                    f"a schema id or version is given only in IMPORT mode, and subject "
                    f"'{subject}' is in {mode} mode"
                )
            key, parsed = self._parse(schema, schema_type, references, normalize)
            ids = self._known_ids()
            known = ids.get(key)
            versions = self._versions(subject)
            for number, state in sorted(versions.items()):
                if state[0] == known and not state[1] and (version in (None, number)):
                    return int(state[0])
            if not importing:
                reasons = compatibility.check(
                    self.compatibility(subject), parsed, self._live_parsed(subject)
                )
                if reasons:
                    raise IncompatibleSchema(subject, reasons)
            tables = self._tables()
            if schema_id is not None:
                bound = tables.schemas.get(schema_id)
                if bound is not None and known != schema_id:
                    raise OperationNotPermitted(
                        f"Overwrite new schema with id {schema_id} is not permitted."
                    )
                known = schema_id
            if known is None:
                known = max(tables.schemas, default=0) + 1
            if known not in tables.schemas:
                self._append(["schema", known, key[0], key[1], [list(_ref(r)) for r in key[2]]])
                ids[key] = known
            number = version if version is not None else max(versions, default=0) + 1
            if not 1 <= number <= MAX_VERSION:
                raise InvalidVersion(str(number))
            if number in versions:
                raise OperationNotPermitted(
                    f"Version {number} of subject '{subject}' is taken by another schema"
                )
            self._append(["subject_version", subject, number, known, False])
            return known

    def delete_version(self, subject: str, version: int | str, permanent: bool = False) -> int:
        """Deletes one version: soft first, then (``permanent``) for good."""
        number = parse_version(version)
        with self._lock:
            self._writable(subject)
            versions = self._versions(subject)
            if not versions:
                raise SubjectNotFound(subject)
            if number is None:
                live = self._live_versions(subject)
                if not live:
                    raise SubjectNotFound(subject)
                number = live[-1]
            state = versions.get(number)
            if state is None:
                raise VersionNotFound(subject, number)
            self._not_referenced(subject, [number])
            if permanent:
                if not state[1]:
                    raise VersionNotSoftDeleted(subject, number)
                self._append(["subject_version", subject, number, None, True])
            else:
                if state[1]:
                    raise VersionSoftDeleted(subject, number)
                self._append(["subject_version", subject, number, state[0], True])
            return number

    def delete_subject(self, subject: str, permanent: bool = False) -> list[int]:
        """Deletes every version of ``subject``; the versions deleted."""
        with self._lock:
            self._writable(subject)
            versions = self._versions(subject)
            if not versions:
                raise SubjectNotFound(subject)
            live = sorted(v for v, state in versions.items() if not state[1])
            self._not_referenced(subject, sorted(versions))
            if permanent:
                if live:
                    raise SubjectNotSoftDeleted(subject)
                gone = sorted(versions)
                for number in gone:
                    self._append(["subject_version", subject, number, None, True])
                configs = self._tables().schema_configs.get(subject, {})
                if configs:
                    self._append(["schema_config", subject, dict.fromkeys(configs)])
                return gone
            if not live:
                raise SubjectSoftDeleted(subject)
            for number in live:
                self._append(["subject_version", subject, number, versions[number][0], True])
            return live

    # -- inside ------------------------------------------------------------------

    def _writable(self, subject: str) -> str:
        mode = self.mode(subject)
        if mode == "READONLY":
            raise OperationNotPermitted(f"Subject {subject} is in read-only mode")
        return mode

    def _versions(self, subject: str) -> dict[int, list[Any]]:
        return self._tables().subject_versions.get(subject, {})

    def _live_versions(self, subject: str) -> list[int]:
        return sorted(v for v, state in self._versions(subject).items() if not state[1])

    def _version_locked(self, subject: str, version: int) -> SubjectVersion:
        schema_id, deleted = self._versions(subject)[version]
        return SubjectVersion(
            subject, version, _registered(schema_id, self._tables().schemas[schema_id]), deleted
        )

    def _not_referenced(self, subject: str, numbers: list[int]) -> None:
        tables = self._tables()
        for versions in tables.subject_versions.values():
            for state in versions.values():
                if state[1]:
                    continue
                for _, ref_subject, ref_version in tables.schemas[state[0]][2]:
                    if ref_subject == subject and ref_version in numbers:
                        raise ReferenceExists(
                            f"One or more references exist to the schema "
                            f"{{subject={subject}, version={ref_version}}}"
                        )

    def _known_ids(self) -> dict[tuple[str, str, tuple[SchemaReference, ...]], int]:
        tables = self._tables()
        if self._ids_for != id(tables.schemas):
            self._ids = {
                (raw[0], raw[1], tuple(SchemaReference(*r) for r in raw[2])): schema_id
                for schema_id, raw in sorted(tables.schemas.items())
            }
            self._ids_for = id(tables.schemas)
        return self._ids

    def _live_parsed(self, subject: str) -> list[ParsedSchema]:
        return [
            self._parse_registered(self._version_locked(subject, v).schema)
            for v in self._live_versions(subject)
        ]

    def _parse_registered(self, schema: RegisteredSchema) -> ParsedSchema:
        return self._parse(schema.schema, schema.schema_type, schema.references, False)[1]

    def _parse(
        self,
        text: str,
        schema_type: str,
        references: Sequence[SchemaReference],
        normalize: bool,
    ) -> tuple[tuple[str, str, tuple[SchemaReference, ...]], ParsedSchema]:
        """The schema's identity (type, canonical text, references) and its
        parsed form; InvalidSchema if it does not parse."""
        schema_type = (schema_type or AVRO).upper()
        if schema_type not in SERVED_TYPES:
            raise InvalidSchema(
                f"Invalid schema type {schema_type}: this registry serves {', '.join(SERVED_TYPES)}"
            )
        if schema_type == PROTOBUF:
            return self._parse_protobuf(text, tuple(references))
        try:
            value = json.loads(text)
        except (ValueError, TypeError, RecursionError) as error:
            raise InvalidSchema(f"Invalid schema: not JSON: {error}") from error
        if _nesting(value) > MAX_NESTING:
            raise InvalidSchema(f"Invalid schema: nested deeper than {MAX_NESTING}")
        refs = tuple(references)
        # The schema libraries are imported by the first schema registered or
        # read, not with the engine: most engines never see one (a faster start).
        import fastavro  # noqa: PLC0415
        import jsonschema.exceptions  # type: ignore[import-untyped]  # noqa: PLC0415
        import jsonschema.validators  # type: ignore[import-untyped]  # noqa: PLC0415

        from engine.schemas.linear_json_schema import check_patterns  # noqa: PLC0415

        if schema_type == AVRO:
            named: dict[str, Any] = {}
            for reference in refs:
                self._avro_reference(reference, named, 0)
            try:
                _check_avro_attributes(value, 0)
                parsed = fastavro.parse_schema(value, named_schemas=named)
            except Exception as error:  # fastavro raises many kinds for a bad schema
                raise InvalidSchema(f"Invalid schema {text[:200]!r}: {error}") from error
            canonical = json.dumps(_avro_canonical(value), separators=(",", ":"))
            return (AVRO, canonical, refs), ParsedSchema(AVRO, parsed, named)
        if not isinstance(value, dict | bool):
            raise InvalidSchema("Invalid schema: a JSON Schema is an object or a boolean")
        for reference in refs:
            self._resolve_reference(reference)
        try:
            jsonschema.validators.validator_for(value).check_schema(value)
            check_patterns(value)
        except jsonschema.exceptions.SchemaError as error:
            raise InvalidSchema(f"Invalid schema: {error.message}") from error
        except InvalidPattern as error:  # the broker could not check records in linear time
            raise InvalidSchema(f"Invalid schema: {error}") from error
        except RecursionError as error:  # the metaschema's "regex" format compiles with re
            raise InvalidSchema("Invalid schema: a pattern nests too deep to compile") from error
        canonical = json.dumps(value, separators=(",", ":"), sort_keys=normalize)
        return (JSON, canonical, refs), ParsedSchema(JSON, value)

    def _parse_protobuf(
        self, text: str, references: tuple[SchemaReference, ...]
    ) -> tuple[tuple[str, str, tuple[SchemaReference, ...]], ParsedSchema]:
        """A PROTOBUF schema is kept as its text was given (.proto text or a
        base64 FileDescriptorProto): protobuf has no canonical text form that
        both could be written in, and a serializer looks its schema up by the
        same text it registered."""
        from engine.schemas import proto_files  # noqa: PLC0415  (the optional extra's)

        if not isinstance(text, str):
            raise InvalidSchema("Invalid schema: a PROTOBUF schema is a string")
        for reference in references:
            self._resolve_reference(reference)  # 42201 naming a missing one
        registered = RegisteredSchema(0, PROTOBUF, text, references)
        try:
            compiled = proto_files.compile_registered(registered, self.referenced)
        except proto_files.ProtoSchemaError as error:
            raise InvalidSchema(f"Invalid schema: {error}") from error
        return (PROTOBUF, text, references), ParsedSchema(PROTOBUF, compiled)

    def _resolve_reference(self, reference: SchemaReference) -> RegisteredSchema:
        state = self._versions(reference.subject).get(reference.version)
        if state is None or state[1]:
            raise InvalidSchema(
                f"Invalid schema: reference {reference.name!r} names "
                f"{reference.subject} version {reference.version}, which does not exist"
            )
        return _registered(state[0], self._tables().schemas[state[0]])

    def _avro_reference(
        self, reference: SchemaReference, named: dict[str, Any], depth: int
    ) -> None:
        if depth > 32:
            raise InvalidSchema("Invalid schema: references nest too deep")
        found = self._resolve_reference(reference)
        for inner in found.references:
            self._avro_reference(inner, named, depth + 1)
        import fastavro  # noqa: PLC0415  (see _parse)

        fastavro.parse_schema(json.loads(found.schema), named_schemas=named)


def parse_version(version: int | str) -> int | None:
    """A version number (None: the latest); InvalidVersion (42202) otherwise."""
    if isinstance(version, str):
        if version == "latest":
            return None
        if not version.lstrip("-").isdigit() or len(version) > 11:
            raise InvalidVersion(version)
        number = int(version)
    else:
        number = version
    if number == -1:
        return None
    if not 1 <= number <= MAX_VERSION:
        raise InvalidVersion(str(version))
    return number


_AVRO_REQUIRED = {
    "record": ("fields", list),
    "error": ("fields", list),
    "enum": ("symbols", list),
    "fixed": ("size", int),
    "array": ("items", object),
    "map": ("values", object),
}
"""What the Avro specification requires of each complex type (fastavro's
parser is lenient about some, Java's Avro and so Confluent's are not)."""
_AVRO_DEPTH = 64


def _check_avro_attributes(value: Any, depth: int) -> None:
    if depth > _AVRO_DEPTH:
        raise ValueError(f"the schema nests deeper than {_AVRO_DEPTH}")
    if isinstance(value, list):
        for branch in value:
            _check_avro_attributes(branch, depth + 1)
        return
    if not isinstance(value, dict):
        return
    kind = value.get("type")
    required = _AVRO_REQUIRED.get(kind) if isinstance(kind, str) else None
    if required is not None:
        key, wanted = required
        if not isinstance(value.get(key), wanted):
            raise ValueError(f"a {kind} needs {key!r}")
    elif not isinstance(kind, str):
        _check_avro_attributes(kind, depth + 1)
    for field_ in value.get("fields", []) if kind in ("record", "error") else []:
        if not isinstance(field_, dict) or "type" not in field_:
            raise ValueError("a record's field needs a name and a type")
        _check_avro_attributes(field_["type"], depth + 1)
    for key in ("items", "values"):
        if key in value and kind in ("array", "map"):
            _check_avro_attributes(value[key], depth + 1)


_AVRO_KEY_ORDER = (
    "type",
    "name",
    "namespace",
    "doc",
    "aliases",
    "fields",
    "symbols",
    "items",
    "values",
    "size",
    "default",
    "order",
    "logicalType",
    "precision",
    "scale",
)
"""The order Avro's own schema printer writes attributes in (Java's
Schema.toString, which Confluent's canonical text is): the same schema in
another attribute order is the same schema, with the same id."""


def _avro_canonical(schema: Any) -> Any:
    """``schema`` with its attributes in Avro's order and ``{"type": "int"}``
    written ``"int"``; fields keep their order, defaults are kept as given."""
    if isinstance(schema, list):
        return [_avro_canonical(branch) for branch in schema]
    if not isinstance(schema, dict):
        return schema
    if set(schema) == {"type"} and isinstance(schema["type"], str):
        return schema["type"]
    rank = {key: i for i, key in enumerate(_AVRO_KEY_ORDER)}
    ordered: dict[str, Any] = {}
    for key in sorted(schema, key=lambda k: (rank.get(k, len(rank)), k)):
        value = schema[key]
        if key in ("type", "items", "values"):
            value = _avro_canonical(value)
        elif key == "fields" and isinstance(value, list):
            value = [_avro_field(f) for f in value]
        ordered[key] = value
    return ordered


def _avro_field(field_: Any) -> Any:
    if not isinstance(field_, dict):
        return field_
    rank = {key: i for i, key in enumerate(_AVRO_KEY_ORDER)}
    ordered = {}
    for key in sorted(field_, key=lambda k: (rank.get(k, len(rank)), k)):
        ordered[key] = _avro_canonical(field_[key]) if key == "type" else field_[key]
    # A field is written name first, then its type, as Avro prints it.
    return {k: ordered[k] for k in ("name", *ordered) if k in ordered}


def _nesting(value: Any) -> int:
    """How deep JSON arrays and objects nest in ``value`` (without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        for child in children:
            if isinstance(child, dict | list):
                deepest = max(deepest, depth + 1)
                if deepest > MAX_NESTING:
                    return deepest
                stack.append((child, depth + 1))
    return deepest


def _ref(reference: SchemaReference) -> tuple[str, str, int]:
    return (reference.name, reference.subject, reference.version)


def _registered(schema_id: int, raw: list[Any]) -> RegisteredSchema:
    schema_type, text, references = raw
    return RegisteredSchema(
        schema_id, schema_type, text, tuple(SchemaReference(*r) for r in references)
    )
