"""The catalog: topics, their partitions' streams and configs, producer ids.

It lives in the stream store as one stream of msgpack records (the first
stream the engine creates, so the lowest id), written through the WAL like
record data and uploaded with it: a fresh machine with only the bucket reads
it back and sees every topic. Each change is one record (a request that
creates or deletes many topics is one record too, so it is all or nothing);
once ``SNAPSHOT_EVERY`` records, and at least as many bytes as the last
snapshot took, were appended since it, a snapshot of the whole state is
appended and the stream is trimmed to it: reading the catalog stays short,
and writing snapshots costs in proportion to the changes, however many
topics there are. A snapshot larger than one append is written in parts
(engine/state_parts.py), sent together (engine/catalog_snapshot.py), and
the stream trimmed only once every part is durable; a snapshot is never
written on a thread that runs an event loop. The record formats are
specified in docs/engine-format.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import msgpack

from engine import clock
from engine.acl_bindings import AclBinding
from engine.catalog_snapshot import (
    Sent,
    SnapshotAbandoned,
    deferring,
    on_event_loop,
    owe,
    send,
)
from engine.errors import CatalogDamaged
from engine.governance_log import GovernanceChange, HistoryCounts, bounded
from engine.packing import pack_yielding
from engine.quota_entities import Entity, entity_from_wire, entity_to_wire
from engine.state_parts import Join, cut
from native.buffers import BytesLike
from s3stream import (
    LOCAL_LATER,
    UNPACED,
    AppendTooLarge,
    S3StreamError,
    StoreFailed,
    StreamStore,
    check_fits,
)

FORMAT_VERSION = 1
"""The format a catalog is created with: every tidelog reads it."""
PARTS_FORMAT_VERSION = 2
"""The version of the ``catalog`` record that opens a snapshot in parts: a
tidelog that knows only FORMAT_VERSION refuses it, clearly, rather than
read a catalog whose snapshot it cannot (docs/engine-format.md)."""
SNAPSHOT_PART = "snapshot_part"
_SNAPSHOT_KIND = msgpack.packb("snapshot")
SNAPSHOT_EVERY = 128
PRODUCER_ID_BLOCK = 1000
"""Producer ids are reserved in blocks, so allocating one is rarely a write."""


def snapshot_part(index: int, count: int, piece: bytes | memoryview) -> bytes:
    """The record of a snapshot's part ``index`` of ``count``
    (docs/engine-format.md, "Snapshots in parts")."""
    packed: bytes = msgpack.packb([SNAPSHOT_PART, index, count, piece], use_bin_type=True)
    return packed


log = logging.getLogger("tidelog.engine")


@dataclass
class TopicMeta:
    name: str
    topic_id: bytes
    configs: dict[str, str]
    streams: list[tuple[int, int]]
    """Per partition: (data stream, state stream)."""
    created_ms: int = 0

    def to_wire(self) -> list[Any]:
        return [
            self.name,
            self.topic_id,
            self.configs,
            [list(s) for s in self.streams],
            self.created_ms,
        ]

    @classmethod
    def from_wire(cls, raw: list[Any]) -> TopicMeta:
        name, topic_id, configs, streams, created_ms = raw
        return cls(name, bytes(topic_id), dict(configs), [(d, s) for d, s in streams], created_ms)


_GOVERNANCE_AT = {
    "create_topic": 2,
    "create_topics": 2,
    "delete_topic": 2,
    "delete_topics": 2,
    "alter_configs": 3,
}
"""Records that may carry governance history entries, and the index of
their list (absent when the change touched no governance config)."""


_CONFIGS_MANY_HOLDS = frozenset({"alter_configs", "broker_configs"})
"""The records a ``configs_many`` record holds: one request's config
changes, applied together."""


@dataclass
class CatalogState:
    topics: dict[str, TopicMeta] = field(default_factory=dict)
    producer_ids_end: int = 0
    """Producer ids below this were handed out (or reserved) before."""
    internal: dict[str, int] = field(default_factory=dict)
    """The engine's own streams by name (group and transaction state)."""
    broker_configs: dict[str, dict[str, str]] = field(default_factory=dict)
    """Dynamic broker configs by resource name: a node id, or "" for the
    cluster's defaults (engine/broker_config.py)."""
    acls: dict[AclBinding, None] = field(default_factory=dict)
    """The ACL bindings, in the order they were created (a dict: a set that
    keeps order, so DescribeAcls answers the same way every time). Replaced
    on each change, never changed in place."""
    acls_version: int = 0
    """Bumped on every change to ``acls``: the authorizer rebuilds its index
    when it differs from the one it was built at."""
    credentials: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    """Users' credentials by user, then SASL mechanism: salt, stored key,
    server key, iterations (engine/credentials.py); never a password."""
    delegation_tokens: dict[str, list[Any]] = field(default_factory=dict)
    """Delegation tokens by id, in their catalog form (engine/delegation_tokens.py):
    never an HMAC. Replaced on each change, never changed in place."""
    client_quotas: dict[Entity, dict[str, float]] = field(default_factory=dict)
    """Client quotas by entity (engine/quota_entities.py)."""
    masking_keys: dict[str, bytes] = field(default_factory=dict)
    """Each masked topic's key for its ``hash`` rules (engine/masking/), by
    topic name: kept here, never in a topic config a client may describe."""
    schemas: dict[int, list[Any]] = field(default_factory=dict)
    """The schema registry's schemas by global id: [schema_type, schema,
    [[name, subject, version], ...]] (engine/schemas/store.py)."""
    subject_versions: dict[str, dict[int, list[Any]]] = field(default_factory=dict)
    """The registry's subjects: version -> [schema_id, deleted]."""
    schema_configs: dict[str | None, dict[str, str]] = field(default_factory=dict)
    """The registry's compatibility levels and modes by subject (None: global)."""
    governance: list[GovernanceChange] = field(default_factory=list)
    """The changes of topics' governance configs, in order, within the
    history's bounds (engine/governance_log.py)."""
    _counts: HistoryCounts = field(default_factory=HistoryCounts, repr=False, compare=False)
    _parts: Join = field(default_factory=Join, repr=False, compare=False)
    """The snapshot in parts being read, if any."""

    def apply(self, record: list[Any]) -> None:
        kind = record[0]
        if kind == SNAPSHOT_PART:
            if len(record) != 4:
                raise ValueError(f"a {kind} record holds {len(record) - 1} fields, not 3")
            joined = self._parts.take(*record[1:])
            if joined is not None:
                self.apply(["snapshot", msgpack.unpackb(joined, raw=False, strict_map_key=False)])
            return
        # Any other record ends a snapshot in parts unread: its writer
        # stopped part way, and the log before it is whole.
        self._parts.end()
        if kind == "configs_many":
            for inner in _held(record):
                self.apply(inner)
            return
        if kind in ("delete_topic", "delete_topics"):
            names = [record[1]] if kind == "delete_topic" else record[1]
            self._counts.deleted(self.topics[n].topic_id for n in names if n in self.topics)
        self._apply(kind, record)
        if kind == "snapshot":
            self._counts.recount(self.governance, self._live_ids())
        governed_at = _GOVERNANCE_AT.get(kind)
        if governed_at is not None and len(record) > governed_at:
            # After the topics changed: the bounds keep more of live topics.
            # A new list, never changed in place: verify and the CLI read it
            # from other threads without a lock.
            entries = [GovernanceChange.from_wire(raw) for raw in record[governed_at]]
            live = {
                change.topic_id
                for change in entries
                if (meta := self.topics.get(change.topic)) is not None
                and meta.topic_id == change.topic_id
            }
            self.governance = [*self.governance, *entries]
            if self._counts.add(entries, live):
                live_ids = self._live_ids()
                self.governance = bounded(self.governance, live_ids)
                self._counts.recount(self.governance, live_ids)

    def log_ended(self) -> None:
        """The log was read to its end: a snapshot in parts not whole by
        now is not taken, and the pieces read of it are let go, rather
        than held until the next change ends it."""
        self._parts.end()

    @property
    def snapshots_in_parts(self) -> int:
        """How many snapshots in parts this state took whole."""
        return self._parts.joined

    def check_applicable(self, records: Sequence[list[Any]]) -> None:
        """Raises, as ``apply`` would, for a record that cannot apply after
        those before it: checked before a write, since a record applied only
        once durable must never fail then (a catalog holding it would fail
        every open after)."""
        topics = _TopicNames(self.topics)
        for record in records:
            # _held refuses a configs_many holding anything but config records
            for change in _held(record) if record[0] == "configs_many" else [record]:
                _check_record(change, topics)

    def _live_ids(self) -> set[bytes]:
        return {meta.topic_id for meta in self.topics.values()}

    def _apply(self, kind: str, record: list[Any]) -> None:
        if kind == "catalog":
            if record[1] > PARTS_FORMAT_VERSION:
                raise ValueError(f"catalog format {record[1]} is newer than this tidelog")
            if record[1] == PARTS_FORMAT_VERSION:
                self._parts.begin()
        elif kind == "snapshot":
            restored = CatalogState.from_wire(record[1])
            self.topics = restored.topics
            # The greater end, not the snapshot's: a block taken while the
            # snapshot was packed is written before it, and its end is
            # carried by a producer_ids record after it, which a crash may
            # have cut (docs/engine-format.md, on producer ids).
            self.producer_ids_end = max(self.producer_ids_end, restored.producer_ids_end)
            self.internal = restored.internal
            self.broker_configs = restored.broker_configs
            self.acls = restored.acls
            self.acls_version += 1
            self.credentials = restored.credentials
            self.delegation_tokens = restored.delegation_tokens
            self.client_quotas = restored.client_quotas
            self.masking_keys = restored.masking_keys
            self.schemas = restored.schemas
            self.subject_versions = restored.subject_versions
            self.schema_configs = restored.schema_configs
            self.governance = restored.governance
        elif kind == "create_topic":
            meta = TopicMeta.from_wire(record[1])
            self.topics[meta.name] = meta
        elif kind == "create_topics":
            for raw in record[1]:
                meta = TopicMeta.from_wire(raw)
                self.topics[meta.name] = meta
        elif kind == "delete_topic":
            self.topics.pop(record[1], None)
            self.masking_keys.pop(record[1], None)
        elif kind == "delete_topics":
            for name in record[1]:
                self.topics.pop(name, None)
                self.masking_keys.pop(name, None)
        elif kind == "add_partitions":
            self.topics[record[1]].streams.extend((d, s) for d, s in record[2])
        elif kind == "add_partitions_many":
            for name, pairs in record[1]:
                self.topics[name].streams.extend((d, s) for d, s in pairs)
        elif kind == "alter_configs":
            configs = self.topics[record[1]].configs
            for name, value in record[2].items():
                if value is None:
                    configs.pop(name, None)
                else:
                    configs[name] = value
        elif kind == "broker_configs":
            configs = self.broker_configs.setdefault(record[1], {})
            for name, value in record[2].items():
                if value is None:
                    configs.pop(name, None)
                else:
                    configs[name] = value
            if not configs:
                del self.broker_configs[record[1]]
        elif kind == "acls_add":
            # A new dict, never changed in place: the authorizer and
            # DescribeAcls read it from other threads without a lock.
            added = dict.fromkeys(AclBinding.from_wire(raw) for raw in record[1])
            self.acls = {**self.acls, **added}
            self.acls_version += 1
        elif kind == "acls_remove":
            gone = {AclBinding.from_wire(raw) for raw in record[1]}
            self.acls = {acl: None for acl in self.acls if acl not in gone}
            self.acls_version += 1
        elif kind == "user_credentials":
            self._alter_credentials([record[1:4]])
        elif kind == "user_credentials_many":
            self._alter_credentials(record[1])
        elif kind == "delegation_token":
            # A new dict: SCRAM logins read it on the event loop.
            self.delegation_tokens = {
                **self.delegation_tokens,
                **{raw[0]: list(raw) for raw in record[1]},
            }
        elif kind == "delegation_tokens_remove":
            removed = set(record[1])
            self.delegation_tokens = {
                token_id: raw
                for token_id, raw in self.delegation_tokens.items()
                if token_id not in removed
            }
        elif kind == "client_quotas":
            self._alter_client_quotas([(record[1], record[2])])
        elif kind == "client_quotas_many":
            self._alter_client_quotas(record[1])
        elif kind == "masking_key":
            self.masking_keys[record[1]] = bytes(record[2])
        elif kind == "schema":
            self.schemas[record[1]] = [record[2], record[3], [list(r) for r in record[4]]]
        elif kind == "subject_version":
            subject, version, schema_id, deleted = record[1:5]
            versions = self.subject_versions.setdefault(subject, {})
            if schema_id is None:
                versions.pop(version, None)
            else:
                versions[version] = [schema_id, bool(deleted)]
            if not versions:
                del self.subject_versions[subject]
        elif kind == "schema_config":
            settings = self.schema_configs.setdefault(record[1], {})
            for name, value in record[2].items():
                if value is None:
                    settings.pop(name, None)
                else:
                    settings[name] = value
            if not settings:
                del self.schema_configs[record[1]]
        elif kind == "internal_stream":
            self.internal[record[1]] = record[2]
        elif kind == "producer_ids":
            self.producer_ids_end = max(self.producer_ids_end, record[1])
        else:
            raise ValueError(f"unknown catalog record {kind!r}")

    def _alter_credentials(self, changes: list[Any]) -> None:
        """Applies ``[user, mechanism, credential or nil]`` changes to a new
        dict, never one changed in place: SASL handshakes read it on the
        event loop while the admin thread writes, and see a request's
        changes all or none."""
        replaced = dict(self.credentials)
        for user, mechanism, credential in changes:
            mechanisms = dict(replaced.get(user, {}))
            if credential is None:
                mechanisms.pop(mechanism, None)
            else:
                mechanisms[mechanism] = list(credential)
            if mechanisms:
                replaced[user] = mechanisms
            else:
                replaced.pop(user, None)
        self.credentials = replaced

    def _alter_client_quotas(self, alterations: list[Any]) -> None:
        """Applies ``[entity, {key: value or nil}]`` pairs to a new dict,
        never one changed in place: the server reads it on the event loop
        while the admin thread writes, and sees a request's alterations all
        or none."""
        replaced = dict(self.client_quotas)
        for raw_entity, changes in alterations:
            entity = entity_from_wire(raw_entity)
            quotas = dict(replaced.get(entity, {}))
            for key, value in changes.items():
                if value is None:
                    quotas.pop(key, None)
                else:
                    quotas[key] = value
            if quotas:
                replaced[entity] = quotas
            else:
                replaced.pop(entity, None)
        self.client_quotas = replaced

    def to_wire(self) -> dict[str, Any]:
        return {
            "topics": [t.to_wire() for t in self.topics.values()],
            "producer_ids_end": self.producer_ids_end,
            "internal": self.internal,
            "broker_configs": self.broker_configs,
            "acls": [acl.to_wire() for acl in self.acls],
            "credentials": self.credentials,
            "delegation_tokens": list(self.delegation_tokens.values()),
            "client_quotas": [
                [entity_to_wire(entity), quotas] for entity, quotas in self.client_quotas.items()
            ],
            "masking_keys": self.masking_keys,
            "schemas": [[i, *raw] for i, raw in self.schemas.items()],
            "subject_versions": [
                [subject, version, *state]
                for subject, versions in self.subject_versions.items()
                for version, state in versions.items()
            ],
            "schema_configs": [[subject, c] for subject, c in self.schema_configs.items()],
            "governance": [change.to_wire() for change in self.governance],
        }

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> CatalogState:
        topics = [TopicMeta.from_wire(t) for t in raw["topics"]]
        return cls(
            {t.name: t for t in topics},
            raw["producer_ids_end"],
            dict(raw.get("internal", {})),
            {scope: dict(configs) for scope, configs in raw.get("broker_configs", {}).items()},
            acls={AclBinding.from_wire(acl): None for acl in raw.get("acls", [])},
            credentials={
                user: {mechanism: list(c) for mechanism, c in mechanisms.items()}
                for user, mechanisms in raw.get("credentials", {}).items()
            },
            delegation_tokens={raw[0]: list(raw) for raw in raw.get("delegation_tokens", [])},
            client_quotas={
                entity_from_wire(entity): dict(quotas)
                for entity, quotas in raw.get("client_quotas", [])
            },
            masking_keys={name: bytes(key) for name, key in raw.get("masking_keys", {}).items()},
            schemas={
                schema_id: [schema_type, text, [list(r) for r in refs]]
                for schema_id, schema_type, text, refs in raw.get("schemas", [])
            },
            subject_versions=_subject_versions(raw.get("subject_versions", [])),
            schema_configs={
                subject: dict(settings) for subject, settings in raw.get("schema_configs", [])
            },
            governance=[GovernanceChange.from_wire(g) for g in raw.get("governance", [])],
        )

    def stream_ids(self) -> set[int]:
        """Every stream the catalog refers to."""
        topics = {sid for t in self.topics.values() for pair in t.streams for sid in pair}
        return topics | set(self.internal.values())


def start_damage(
    stream_id: int, first: list[Any] | None, state: CatalogState
) -> CatalogDamaged | None:
    """Why the catalog stream ``stream_id``, whose first record is
    ``first`` and which was read into ``state``, cannot be trusted, if it
    cannot: it starts with a snapshot in parts and none was joined. The
    stream is trimmed to an opening record only once every part is
    durable, so such a stream lost parts, and the state read from it is
    empty or holds only the changes after them."""
    opens_in_parts = (
        first is not None
        and len(first) > 1
        and first[0] == "catalog"
        and first[1] == PARTS_FORMAT_VERSION
    )
    if opens_in_parts and state.snapshots_in_parts == 0:
        return CatalogDamaged(stream_id)
    return None


def _held(record: list[Any]) -> list[list[Any]]:
    """The records a ``configs_many`` record holds, each one of the kinds
    it may hold (a hostile or damaged catalog: refused, clearly)."""
    held = record[1] if len(record) == 2 else None
    if not isinstance(held, list):
        raise ValueError(f"a configs_many record holds no list of records: {record!r:.200}")
    for inner in held:
        kind = inner[0] if isinstance(inner, list) and inner else inner
        if not isinstance(kind, str) or kind not in _CONFIGS_MANY_HOLDS:
            raise ValueError(f"a configs_many record holds {kind!r:.200}")
    return held


RECORD_KINDS = frozenset(
    {
        "catalog", "snapshot", "create_topic", "create_topics", "delete_topic",
        "delete_topics", "add_partitions", "add_partitions_many", "alter_configs",
        "broker_configs", "acls_add", "acls_remove", "user_credentials",
        "user_credentials_many", "delegation_token", "delegation_tokens_remove",
        "client_quotas", "client_quotas_many", "masking_key", "schema", "subject_version",
        "schema_config", "internal_stream", "producer_ids", "configs_many", SNAPSHOT_PART,
    }
)  # fmt: skip
"""Every record kind ``CatalogState._apply`` knows (configs_many and
snapshot parts: ``apply``)."""


class _TopicNames:
    """The topic names after some records, as changes over the state's: no
    copy of every name for each write."""

    def __init__(self, topics: dict[str, TopicMeta]) -> None:
        self._base: Collection[str] = topics.keys()
        self._changed: dict[str, bool] = {}

    def has(self, name: str) -> bool:
        return self._changed.get(name, name in self._base)

    def update(self, names: Iterable[str]) -> None:
        self._changed.update(dict.fromkeys(names, True))

    def difference_update(self, names: Iterable[str]) -> None:
        self._changed.update(dict.fromkeys(names, False))

    def replace(self, names: Iterable[str]) -> None:
        self._base, self._changed = set(names), {}


def _check_record(record: list[Any], topics: _TopicNames) -> None:
    """Raises for a record ``_apply`` would refuse, given the topic names
    before it; updates them as the record would."""
    kind = record[0]
    if kind not in RECORD_KINDS:
        raise ValueError(f"unknown catalog record {kind!r}")
    if kind == "catalog" and record[1] > PARTS_FORMAT_VERSION:
        raise ValueError(f"catalog format {record[1]} is newer than this tidelog")
    if kind == "snapshot":
        topics.replace(TopicMeta.from_wire(raw).name for raw in record[1]["topics"])
    elif kind in ("create_topic", "create_topics"):
        raws = [record[1]] if kind == "create_topic" else record[1]
        topics.update(TopicMeta.from_wire(raw).name for raw in raws)
    elif kind in ("delete_topic", "delete_topics"):
        topics.difference_update([record[1]] if kind == "delete_topic" else record[1])
    elif kind in ("add_partitions", "alter_configs", "add_partitions_many"):
        names = [n for n, _ in record[1]] if kind == "add_partitions_many" else [record[1]]
        for name in names:
            if not topics.has(name):
                raise ValueError(f"a {kind} record names topic {name!r}, which is not there")


def _subject_versions(rows: list[list[Any]]) -> dict[str, dict[int, list[Any]]]:
    found: dict[str, dict[int, list[Any]]] = {}
    for subject, version, schema_id, deleted in rows:
        found.setdefault(subject, {})[version] = [schema_id, bool(deleted)]
    return found


class Catalog:
    """The catalog stream: read at open, appended to on every change."""

    def __init__(self, store: StreamStore, stream_id: int, state: CatalogState) -> None:
        self.store = store
        self.stream_id = stream_id
        self.state = state
        self._lock = threading.Lock()
        """Orders the changes to the state, from the check to the apply, and
        is held over a snapshot's packing: every write but a producer id's
        block takes it."""
        self._tail_lock = threading.Lock()
        """Orders the appends to the stream (an offset taken and its record
        submitted) and guards the counts toward the next snapshot; held
        briefly, never over a packing or a sync. A producer id's block takes
        only this one (and ``_producer_ids_lock``), so it never waits for a
        snapshot being packed (docs/design/0126)."""
        self._internal_lock = threading.Lock()
        self._acls_lock = threading.Lock()
        self._failure: BaseException | None = None
        """Why a write's outcome is unknown: set, the catalog writes no more."""
        self._since_snapshot = 0
        self._bytes_since_snapshot = 0
        self._snapshot_bytes = 0
        self._next_producer_id = state.producer_ids_end
        self._producer_ids_lock = threading.Lock()
        self._reserved_end = state.producer_ids_end
        """The greatest end of a ``producer_ids`` record submitted (under
        ``_tail_lock``), durable or not: a snapshot submitted after one
        carries it (``_send_snapshot``)."""
        self._snapshotting = False
        """A snapshot is being written: no other is started (set under
        ``_tail_lock``, cleared by the one writing it)."""
        self._snapshots = ThreadPoolExecutor(1, thread_name_prefix="tidelog-catalog-snapshot")
        """Where a snapshot due after a write made on an event loop, or
        inside ``catalog_snapshot.waited_after``, is written
        (engine/catalog_snapshot.py); its thread starts on first use."""

    @classmethod
    def open(cls, store: StreamStore, internal: Sequence[str] = ()) -> Catalog:
        """Reads the catalog, or creates it in a store that has no streams yet,
        and with it the engine's own streams named in ``internal`` (see
        internal_stream), all in one manifest commit: each commit costs a
        fresh engine's open its object store's syncs."""
        streams = store.streams()
        if not streams:
            stream_id, *internal_ids = store.create_streams(1 + len(internal))
            store.open_stream(stream_id, 0)
            catalog = cls(store, stream_id, CatalogState())
            catalog.append_all(
                [
                    ["catalog", FORMAT_VERSION, clock.time_ms()],
                    *(
                        ["internal_stream", name, internal_id]
                        for name, internal_id in zip(internal, internal_ids, strict=True)
                    ),
                ]
            )
            return catalog
        stream_id = streams[0]
        store.open_stream(stream_id, 0)
        state = CatalogState()
        records = 0
        # The first record's bytes (a snapshot's, with its parts if it has
        # them) and the rest's; a snapshot in parts counts as one record.
        catalog_bytes = [0, 0]
        opening = True
        first: list[Any] | None = None
        for payload in read_payloads(store, stream_id):
            record = msgpack.unpackb(payload, raw=False, strict_map_key=False)
            if records == 0 and record[0] not in ("catalog", "snapshot"):
                raise ValueError(f"stream {stream_id} is not a tidelog catalog")
            state.apply(record)
            opening_part = records > 0 and opening and record[0] == SNAPSHOT_PART
            opening = records == 0 or opening_part
            catalog_bytes[not opening] += len(payload)
            records += not opening_part
            first = record if first is None else first
        state.log_ended()
        damage = start_damage(stream_id, first, state)
        if damage is not None:
            raise damage
        catalog = cls(store, stream_id, state)
        catalog._since_snapshot = records
        catalog._snapshot_bytes, catalog._bytes_since_snapshot = catalog_bytes
        if records == 0:  # created, then the process died before its first record
            catalog.append(["catalog", FORMAT_VERSION, clock.time_ms()])
        return catalog

    def append(self, record: list[Any]) -> None:
        """Makes a change durable, then applies it (returns once it is in the WAL)."""
        self.append_all([record])

    def append_all(self, records: list[list[Any]]) -> None:
        """Makes changes durable together, then applies them in order
        (``_write``); a snapshot they make due is written before this
        returns, or on the catalog's own worker (``_start_snapshot``): on a
        thread that runs an event loop, unwaited for; inside
        ``catalog_snapshot.waited_after``, waited for as it ends, once the
        locks taken inside it are released."""
        if not self._write(records):
            return
        if on_event_loop():
            self._start_snapshot(on_worker=True)
        elif deferring():
            started = self._start_snapshot(on_worker=True)
            if started is not None:
                owe(started)
        else:
            self._start_snapshot(on_worker=False)

    def _write(self, records: list[list[Any]]) -> bool:
        """Makes changes durable together, then applies them in order: queued
        at once, they share the WAL's syncs rather than waiting for one each
        (a fresh catalog's first records, when an engine first opens).

        As Kafka's controller, the catalog applies only what is committed
        (docs/design/0062): a write that fails leaves the state as it was,
        the state a restart reads back. The lock, held from the check to the
        apply, keeps the state changing in the order of the writes; each
        writer's own lock keeps what it read of the state true until its
        change is applied. Once a write's outcome is unknown (accepted, then
        failed), the catalog writes nothing more until it is reopened: the
        store refuses too, as it failed or was fenced.

        True if they made a snapshot due, claimed for the caller to start."""
        payloads = [msgpack.packb(record, use_bin_type=True) for record in records]
        # Refused whole, before any is appended: a later record refused
        # after the first was accepted would leave the write's outcome
        # unknown and stop the catalog until it is reopened.
        check_fits(self.stream_id, payloads, self.store.max_append_bytes)
        with self._lock:
            if self._failure is not None:
                raise StoreFailed(self._failure)
            self.state.check_applicable(records)
            pending: list[Future[int]] = []
            try:
                with self._tail_lock:
                    for payload in payloads:
                        offset = self.store.next_offset(self.stream_id)
                        # Never waits for room: written under this lock,
                        # which an outage of the object store would hold
                        # until it ends. The write is refused (NoRoom) as a
                        # whole, by its first record, past the headroom; its
                        # others are not, so a refusal changes nothing.
                        options = LOCAL_LATER if pending else UNPACED
                        pending.append(
                            self.store.submit(self.stream_id, offset, offset, payload, options)
                        )
                for appended in pending:
                    appended.result()
            except BaseException as error:
                if pending:
                    self._failure = error
                raise
            for record in records:
                self.state.apply(record)
            with self._tail_lock:
                self._since_snapshot += len(payloads)
                self._bytes_since_snapshot += sum(map(len, payloads))
                return self._claim_snapshot_locked()

    def _write_block(self, end: int) -> bool:
        """Makes a ``producer_ids`` record of ``end`` durable, then raises the
        state's end to it, as ``_write`` would, but under ``_tail_lock``
        alone: never behind a snapshot being packed under ``_lock``. The
        record commutes with every other (a reader takes the greatest end it
        reads, a snapshot's included), so it needs no place in their order;
        one submitted while a snapshot is packed lands before the snapshot,
        which the trim drops, and the snapshot carries its end
        (``_send_snapshot``). Its sync is waited for with no lock held.

        True if it made a snapshot due, claimed for the caller to start."""
        payload = msgpack.packb(["producer_ids", end], use_bin_type=True)
        with self._tail_lock:
            if self._failure is not None:
                raise StoreFailed(self._failure)
            offset = self.store.next_offset(self.stream_id)
            # Never waits for room (UNPACED): taken on the event loop, or
            # under the transaction coordinator's lock, which the loop takes.
            appended = self.store.submit(self.stream_id, offset, offset, payload, UNPACED)
            self._reserved_end = max(self._reserved_end, end)
        try:
            appended.result()
        except BaseException as error:
            self._failure = error
            raise
        with self._producer_ids_lock:
            self.state.producer_ids_end = max(self.state.producer_ids_end, end)
        with self._tail_lock:
            self._since_snapshot += 1
            self._bytes_since_snapshot += len(payload)
            return self._claim_snapshot_locked()

    def _claim_snapshot_locked(self) -> bool:
        """Under ``_tail_lock``: whether a snapshot is due and none is being
        written: if so, it is this writer's to start (a snapshot already
        running is never started twice; the writes during it count toward
        the next)."""
        if (
            self._snapshotting
            or self._since_snapshot < SNAPSHOT_EVERY
            or self._bytes_since_snapshot < self._snapshot_bytes
        ):
            return False
        self._snapshotting = True
        return True

    def _start_snapshot(self, *, on_worker: bool) -> Future[None] | None:
        """Writes the snapshot claimed, here or ``on_worker``, the catalog's
        own (engine/catalog_snapshot.py): the change that made it due is
        durable and applied already. On the worker: its future (None if it
        was not handed over), which its writer may wait for or not."""
        if not on_worker:
            self._snapshot()
            return None
        try:
            return self._snapshots.submit(self._snapshot_logged)
        except BaseException as error:
            # Not handed over (the worker closed, or a Ctrl-C): unclaimed,
            # or no snapshot would ever be started again; the next write
            # (the next open's, once closed) tries again.
            self._snapshotting = False
            if not isinstance(error, RuntimeError):
                raise
            return None

    def _snapshot_logged(self) -> None:
        try:
            self._snapshot()
        except Exception:
            log.exception("the catalog's snapshot failed")

    def _snapshot(self) -> None:
        """Appends a snapshot and trims to it. The changes before it are
        durable and applied already: a failure here is logged, not raised to
        their writer, and the snapshot is tried again at the next write.

        Packed under the lock that orders the catalog's changes, and
        submitted under the one that orders its appends too, so no record
        comes between its records; a producer id's block, which takes only
        the latter, waits for the submitting, never for the packing.
        Waited for with both released (the last WAL group of them), so the
        writes after it are not held for its syncs. They count toward the
        next."""
        try:
            with self._lock:
                if self._failure is not None:
                    return
                packed = self._pack_snapshot_locked()
                if packed is None:
                    return
                with self._tail_lock:
                    # Counted now, not before the packing: the blocks taken
                    # meanwhile are before the snapshot, and trimmed with
                    # the rest.
                    counted = self._since_snapshot, self._bytes_since_snapshot
                    sent = self._send_snapshot(*packed)
            end = sent.wait()
            if end != sent.first + sent.count:
                # Something else was written between the parts: a reader
                # would not take the snapshot, so the log before it stays.
                log.warning("the catalog's snapshot parts were not written in a row")
                return
            self.store.trim(self.stream_id, sent.first)
            with self._tail_lock:
                self._since_snapshot -= counted[0] - 1
                self._bytes_since_snapshot -= counted[1]
                self._snapshot_bytes = sent.size
        except SnapshotAbandoned as abandoned:
            # Parts before it may be durable: a reader skips them, as the
            # next change record (or the stream's end) ends their run.
            log.warning("%s; tried again at the next write", abandoned)
        except S3StreamError:
            log.warning("the catalog's snapshot was not written", exc_info=True)
        finally:
            self._snapshotting = False

    def _pack_snapshot_locked(self) -> tuple[list[bytes], int] | None:
        """Under ``_lock``: the snapshot's records, and the producer ids'
        end its state holds at least; None if the state outgrew what parts
        can be cut to."""
        # Read before the state is: blocks taken during the packing may
        # raise it (under _tail_lock, not this lock), never lower it.
        producer_ids_end = self.state.producer_ids_end
        # In pieces, the GIL let go between them: a block taken meanwhile
        # (on the event loop) runs beside the packing (engine/packing.py).
        body = pack_yielding(self.state.to_wire())
        # ["snapshot", body] without packing the state twice: a fixarray
        # of two, the kind, then the state's own bytes; joined only when it
        # is written so, as a copy of the state beside its parts would
        # hold a third.
        limit = self.store.max_append_bytes
        size = 1 + len(_SNAPSHOT_KIND) + len(body)
        try:
            records = (
                [b"\x92" + _SNAPSHOT_KIND + body]
                if size <= limit
                else self._snapshot_parts(body, limit)
            )
        except AppendTooLarge:
            # The state outgrew what parts can be cut to (a store whose
            # appends hold no more than a part's framing). Tried again only
            # once as many bytes more were written, not at every write: each
            # try packs the whole state.
            log.warning("the catalog's %d-byte snapshot could not be written", size)
            with self._tail_lock:
                self._snapshot_bytes = size
                self._bytes_since_snapshot = 0
            return None
        return records, producer_ids_end

    def _send_snapshot(self, records: list[bytes], producer_ids_end: int) -> Sent:
        """Under both locks: submits the snapshot's ``records``, followed by
        a ``producer_ids`` record when a block was submitted past the end
        its state holds (taken while it was packed: written before it, and
        trimmed with what is). Never waits for room, as the writes before
        it: under the catalog's locks, which an outage of the object store
        would hold (and every producer id's block behind them). Refused
        (NoRoom) past the headroom, it is abandoned and tried again at the
        next write."""
        if self._reserved_end > producer_ids_end:
            block = ["producer_ids", self._reserved_end]
            records = [*records, msgpack.packb(block, use_bin_type=True)]
        return send(self.store, self.stream_id, records)

    def _snapshot_parts(self, body: bytes | bytearray, limit: int) -> list[bytes]:
        """A snapshot too large for one append, as its opening record and
        its parts, each checked to fit (docs/engine-format.md)."""
        opening = msgpack.packb(["catalog", PARTS_FORMAT_VERSION, clock.time_ms()])
        check_fits(self.stream_id, [opening], limit)
        return [opening, *cut(self.stream_id, body, limit, snapshot_part)]

    def close(self) -> None:
        """Waits for a snapshot being written on the catalog's worker, before
        the store it writes to is closed; none is started after."""
        self._snapshots.shutdown(wait=True)

    def internal_stream(self, name: str) -> int:
        """The id of the engine's own stream ``name``, created on first use."""
        with self._internal_lock:
            found = self.state.internal.get(name)
            if found is not None:
                return found
            stream_id = self.store.create_stream()
            self.append(["internal_stream", name, stream_id])
            return stream_id

    def add_acls(self, acls: list[AclBinding]) -> None:
        """Stores the bindings (those already stored are left as they are),
        as one record: all of them or none."""
        with self._acls_lock:
            new = list(dict.fromkeys(a for a in acls if a not in self.state.acls))
            if new:
                self.append(["acls_add", [a.to_wire() for a in new]])

    def remove_acls(self, acls: list[AclBinding]) -> None:
        """Removes the bindings, as one record."""
        with self._acls_lock:
            gone = list(dict.fromkeys(a for a in acls if a in self.state.acls))
            if gone:
                self.append(["acls_remove", [a.to_wire() for a in gone]])

    def allocate_producer_id(self) -> int:
        """A new producer id, handed out only once a durable ``producer_ids``
        record covers it, so no crash can hand it out twice. The state's end
        rises only once its block is durable (``_write_block`` raises it
        after the write), so an id below it is covered, and an end read
        before it rose only costs a record more. Not under the lock that
        orders the changes: a snapshot being packed holds it, and this is
        called on the event loop (InitProducerId), which would wait for the
        packing; a new block waits only for its own sync (docs/design/0126).

        A snapshot the block's record makes due is always left to the
        catalog's worker, on the loop or off it: an id is taken there or
        under the transaction coordinator's lock, which the loop takes for
        every transactional request (an embedded transactional producer
        takes its id on its own thread, under that lock)."""
        with self._producer_ids_lock:
            producer_id = self._next_producer_id
            self._next_producer_id += 1
        covered = producer_id < self.state.producer_ids_end
        if not covered and self._write_block(producer_id + PRODUCER_ID_BLOCK):
            self._start_snapshot(on_worker=True)
        return producer_id


def read_records(store: StreamStore, stream_id: int) -> list[Any]:
    """Every msgpack record of a stream, from its start to its end."""
    return [
        msgpack.unpackb(payload, raw=False, strict_map_key=False)
        for payload in read_payloads(store, stream_id)
    ]


def read_payloads(store: StreamStore, stream_id: int) -> Iterator[BytesLike]:
    """Every append's bytes of a stream, from its start to its end."""
    offset, end = store.start_offset(stream_id), store.end_offset(stream_id)
    while offset < end:
        result = store.fetch(stream_id, offset, 4 * 1024 * 1024)
        if not result.batches:
            break
        for batch in result.batches:
            yield batch.payload
        offset = result.next_offset
