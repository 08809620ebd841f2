"""Protobuf schemas as the registry takes them, compiled to descriptors.

A PROTOBUF schema is registered as Confluent's registry takes it: the text
of a ``.proto`` file, or (what confluent-kafka's ``ProtobufSerializer``
sends) a base64-encoded ``FileDescriptorProto``. Its references name other
subjects' schemas by the import path the file uses for them. This module
compiles either form, with the files it imports, to the descriptors that
protobuf's own runtime decodes with: ``.proto`` text through protoc (the one
grpcio-tools bundles, run in this process on files written to a temporary
directory), a serialized descriptor by building it into a descriptor pool.
Both are the optional extra ``tidelog[protobuf]``, imported by the first
Protobuf schema met, never with the engine.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.schemas.types import PROTOBUF, RegisteredSchema, SchemaReference

EXTRA = "tidelog[protobuf]"
MAIN_NAME = "schema.proto"
"""The file name a registered schema compiles under; its imports keep theirs."""
MAX_IMPORT_NAME = 255
MAX_REFERENCE_DEPTH = 32
"""How deep references may chain (a cycle is refused by this too)."""
CACHE_SIZE = 256
"""Compiled schemas kept by their text and imports; the least recently used goes first."""

_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_IMPORT_NAME = re.compile(r"[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*\.proto")
_BUILTIN_PREFIXES = ("google/protobuf/", "google/type/")
"""Imports the runtime ships descriptors for: confluent-kafka's serializers
register no reference for them, so they resolve here without one."""


class ProtoSchemaError(ValueError):
    """A Protobuf schema that does not compile; the message says why."""


class ProtobufUnavailable(ProtoSchemaError):
    """The ``tidelog[protobuf]`` extra is not installed."""

    def __init__(self, missing: str) -> None:
        super().__init__(
            f"PROTOBUF schemas need the {EXTRA} extra, which is not installed "
            f"(no module {missing}): pip install '{EXTRA}'"
        )


@dataclass(eq=False)
class ProtoSchema:
    """A compiled Protobuf schema: every file it needs, its imports first and
    itself (named ``name``) last, as ``FileDescriptorProto`` messages."""

    name: str
    files: tuple[Any, ...]
    source: str | None
    """Its ``.proto`` text (None: it was registered as a serialized descriptor)."""
    sources: tuple[tuple[str, str | None], ...]
    """(name, .proto text or None) of itself and every import it was given."""
    key: str
    """A digest of its text and its imports' keys: the compile cache's key."""
    _pool: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def file(self) -> Any:
        """Its own ``FileDescriptorProto``."""
        return self.files[-1]

    def serialized(self) -> str:
        """Its ``FileDescriptorProto``, base64-encoded: what Confluent's
        registry answers for ``format=serialized``."""
        return base64.standard_b64encode(self.file.SerializeToString()).decode("ascii")

    def pool(self) -> Any:
        """A descriptor pool holding it and its imports (built once)."""
        with self._lock:
            if self._pool is None:
                self._pool = _build_pool(self.files)
            return self._pool

    def message(self, indexes: Sequence[int]) -> Any:
        """The message descriptor Confluent's message indexes name: the index
        of a top-level message, then of a nested message in each level.
        ProtoSchemaError if there is no such message."""
        if not indexes:
            raise ProtoSchemaError("no message index")
        found = self.pool().FindFileByName(self.name)
        # In the order the file declares them, which the indexes count in.
        candidates = [found.message_types_by_name[m.name] for m in self.file.message_type]
        descriptor = None
        for depth, index in enumerate(indexes):
            if not 0 <= index < len(candidates):
                path = ", ".join(str(i) for i in indexes)
                raise ProtoSchemaError(
                    f"message indexes [{path}] name no message: level {depth} has "
                    f"{len(candidates)} messages"
                )
            descriptor = candidates[index]
            candidates = list(descriptor.nested_types)
        return descriptor


def parse(text: str, name: str, imports: Sequence[ProtoSchema]) -> ProtoSchema:
    """Compiles ``text`` (``.proto`` text or a base64 ``FileDescriptorProto``)
    as the file ``name``, with ``imports`` (each compiled under the import
    path it is referenced by). ProtoSchemaError if it does not compile,
    ProtobufUnavailable without the extra."""
    _check_import_name(name)
    if not text.strip():
        raise ProtoSchemaError("the schema is empty")
    for imported in imports:
        _check_import_name(imported.name)
    import hashlib  # noqa: PLC0415  (here, not on the serve path's imports)

    digest = hashlib.sha256()
    for part in (name, text, *(i.key for i in imports)):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    key = digest.hexdigest()
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    if _BASE64.fullmatch(text):
        schema = _from_descriptor(text, name, imports, key)
    else:
        schema = _from_source(text, name, imports, key)
    _CACHE.put(key, schema)
    return schema


def available() -> bool:
    """Whether the extra is installed (looked for, not imported)."""
    import importlib.util  # noqa: PLC0415

    try:
        modules = ("grpc_tools", "google.protobuf")
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except (ImportError, ValueError):  # a parent package missing, or stubbed out
        return False


def compile_registered(
    registered: RegisteredSchema,
    referenced: Callable[[SchemaReference], RegisteredSchema | None],
    name: str = MAIN_NAME,
    depth: int = 0,
) -> ProtoSchema:
    """Compiles a registered PROTOBUF schema with the schemas its references
    name (``referenced`` finds each; None: it does not exist), each under its
    reference's import name."""
    if depth > MAX_REFERENCE_DEPTH:
        raise ProtoSchemaError(f"references chain deeper than {MAX_REFERENCE_DEPTH}")
    imports = []
    for reference in registered.references:
        found = referenced(reference)
        if found is None:
            raise ProtoSchemaError(
                f"reference {reference.name!r} names {reference.subject} version "
                f"{reference.version}, which does not exist"
            )
        if found.schema_type != PROTOBUF:
            raise ProtoSchemaError(
                f"reference {reference.name!r} names a {found.schema_type} schema, not PROTOBUF"
            )
        imports.append(compile_registered(found, referenced, reference.name, depth + 1))
    return parse(registered.schema, name, imports)


def _check_import_name(name: str) -> None:
    # protoc refuses "..", absolute paths and backslashes in an import; the
    # name is also a file written under a temporary directory, so it is held
    # to a plain relative path here first.
    if len(name) > MAX_IMPORT_NAME or not _IMPORT_NAME.fullmatch(name) or ".." in name:
        raise ProtoSchemaError(
            f"the import name {name[:100]!r} is not a relative path ending in .proto"
        )


def _runtime() -> Any:
    try:
        from google.protobuf import descriptor_pb2  # noqa: PLC0415  (the optional extra)
    except ImportError as error:
        raise ProtobufUnavailable("google.protobuf") from error
    return descriptor_pb2


def _protoc() -> tuple[Any, Path]:
    try:
        import grpc_tools  # noqa: PLC0415  (the optional extra)
        from grpc_tools import _protoc_compiler  # noqa: PLC0415
    except ImportError as error:
        raise ProtobufUnavailable("grpc_tools") from error
    return _protoc_compiler, Path(grpc_tools.__file__).parent / "_proto"


def _closure(imports: Sequence[ProtoSchema]) -> list[Any]:
    """Every file the imports need, each once, dependencies first."""
    files: dict[str, Any] = {}
    for imported in imports:
        for file in imported.files:
            known = files.get(file.name)
            if known is not None and known != file:
                raise ProtoSchemaError(
                    f"two different files are imported as {file.name!r}: its references "
                    "name different schemas under one import path"
                )
            files[file.name] = file
    return list(files.values())


def _builtin(name: str) -> Any | None:
    """The ``FileDescriptorProto`` the protobuf runtime (or googleapis'
    common protos) ships for a well-known import, or None."""
    if not name.startswith(_BUILTIN_PREFIXES):
        return None
    import importlib  # noqa: PLC0415

    from google.protobuf import descriptor_pool  # noqa: PLC0415

    module = name[: -len(".proto")].replace("/", ".") + "_pb2"
    try:
        importlib.import_module(module)
        found = descriptor_pool.Default().FindFileByName(name)
    except (ImportError, KeyError):
        return None
    proto = _runtime().FileDescriptorProto()
    found.CopyToProto(proto)
    return proto


def _from_descriptor(text: str, name: str, imports: Sequence[ProtoSchema], key: str) -> ProtoSchema:
    descriptor_pb2 = _runtime()
    from google.protobuf.message import DecodeError  # noqa: PLC0415

    try:
        raw = base64.standard_b64decode(text.encode("ascii"))
        file = descriptor_pb2.FileDescriptorProto.FromString(raw)
    except (binascii.Error, DecodeError, ValueError) as error:
        raise ProtoSchemaError(
            f"neither .proto text nor a base64 FileDescriptorProto: {error}"
        ) from error
    file.name = name
    files = _closure(imports)
    known = {f.name for f in files}
    pending = [d for d in file.dependency if d not in known]
    while pending:  # the well-known imports, and the ones they import
        dependency = pending.pop()
        if dependency in known:
            continue
        builtin = _builtin(dependency)
        if builtin is None:
            raise ProtoSchemaError(
                f"the import {dependency!r} has no reference naming a schema for it"
            )
        files.insert(0, builtin)
        known.add(dependency)
        pending.extend(d for d in builtin.dependency if d not in known)
    files.append(file)
    _build_pool(files)  # refuses what does not link: unknown types, clashing names
    sources = ((name, None), *(s for i in imports for s in i.sources))
    return ProtoSchema(name, tuple(files), None, tuple(dict(sources).items()), key)


_PROTOC_LOCK = threading.Lock()
"""protoc's compiler keeps state of its own between runs: one at a time."""


def _from_source(text: str, name: str, imports: Sequence[ProtoSchema], key: str) -> ProtoSchema:
    descriptor_pb2 = _runtime()
    compiler, well_known = _protoc()
    sources = {name: text}
    for imported in imports:
        for source_name, source in imported.sources:
            if source is None:
                raise ProtoSchemaError(
                    f"the import {source_name!r} was registered as a serialized descriptor; "
                    ".proto text compiles only with imports registered as .proto text"
                )
            sources[source_name] = source
    import tempfile  # noqa: PLC0415  (see parse)

    with tempfile.TemporaryDirectory(prefix="tidelog-proto-") as tmp:
        root = Path(tmp) / "src"
        for source_name, source in sources.items():
            path = root / source_name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(source, encoding="utf-8", errors="surrogatepass")
        out = Path(tmp) / "out.pb"
        include = [str(root).encode(), str(well_known).encode()]
        with _PROTOC_LOCK:
            try:
                # Errors come back as an exception with their line and column
                # (protoc's command line would print them to the process's stderr).
                compiler.get_protos(name.encode(), include)
            except compiler.ProtocErrors as errors:
                raise ProtoSchemaError(_protoc_message(errors)) from errors
            status = compiler.run_main(
                [
                    b"protoc",
                    *(b"-I" + path for path in include),
                    b"--include_imports",
                    b"--descriptor_set_out=" + str(out).encode(),
                    name.encode(),
                ]
            )
        if status != 0:
            raise ProtoSchemaError(f"protoc did not compile it (exit status {status})")
        compiled = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    files = tuple(compiled.file)
    if not files or files[-1].name != name:
        raise ProtoSchemaError("protoc did not compile the schema's own file")
    return ProtoSchema(name, files, text, tuple(sources.items()), key)


def _protoc_message(errors: Any) -> str:
    found = []
    located = [e for e in errors.errors() if e.line >= 0]
    for error in (located or errors.errors())[:5]:
        message = error.message
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        # protoc counts lines and columns from 0; editors and Confluent from 1.
        where = f"line {error.line + 1}, column {error.column + 1}: " if error.line >= 0 else ""
        found.append(where + message)
    return "; ".join(found) or "protoc refused it"


def _build_pool(files: Sequence[Any]) -> Any:
    _runtime()
    from google.protobuf import descriptor_pool  # noqa: PLC0415

    pool = descriptor_pool.DescriptorPool()
    for file in files:
        try:
            pool.Add(file)
        except Exception as error:  # the runtime raises TypeError or ValueError, by backend
            raise ProtoSchemaError(f"{file.name} does not link: {error}") from error
    return pool


class _Compiled:
    """The compile cache: a registry compiles the same few schemas for every
    compatibility check, and a broker for every schema id it meets."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, ProtoSchema] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> ProtoSchema | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: str, schema: ProtoSchema) -> None:
        with self._lock:
            self._entries[key] = schema
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)


_CACHE = _Compiled(CACHE_SIZE)
