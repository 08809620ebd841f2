"""The engine: topics and partitions on a stream store, in one process.

Engine is the facade and the composition root: opening it fences any other
owner of the storage and recovers every topic; its methods are the
embedded API, and the embedded producer and consumer, and the wire server,
are thin layers over them. The parts it wires each own one job:
topics.py (the topics and their partition leaders), topic_admin.py
(creating, deleting, growing, configuring), acks.py (when a produce is
durable), data_waiters.py (waiting for new data), maintenance.py
(checkpoints and the log cleaner on a background thread), store_errors.py
(the stream store's errors as the engine's) and exit_close.py.

It is safe to use from many threads and from asyncio: produce and fetch
have ``*_async`` twins that never block the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, overload

from engine import clock, exit_close, offset_lookup
from engine.acks import Acks, AppendCall, CallThen
from engine.acl_authorizer import engine_authorizer
from engine.append_settle import AppendSettle
from engine.authorization import AuthorizationConfig
from engine.broker_config import BrokerAlteration, BrokerConfigs, engine_static
from engine.catalog import Catalog
from engine.catalog_snapshot import waited_after
from engine.clock import SYSTEM, Clock
from engine.config import TopicConfig, normalize_all
from engine.config_ranges import ENGINE_RANGES
from engine.credentials import Credentials, user_credentials_record
from engine.data_waiters import DataWaiters
from engine.delegation_tokens import DelegationTokenConfig, DelegationTokens
from engine.errors import (
    EngineClosed,
    EngineError,
    InvalidTopic,
    UnknownPartition,
    UnknownTopic,
)
from engine.governance_gate import OWNER, Actor, may_govern
from engine.governance_log import GovernanceChange, stamped_ranges
from engine.groups import ConsumerLag, GroupConfig, GroupCoordinator, consumer_lag
from engine.groups.topic_subscriptions import TopicInfo
from engine.internal_topics import (
    INTERNAL_TOPIC_CONFIGS,
    append_refusal,
    internal_partition_count,
    is_internal_topic,
    refuses_record_deletion,
)
from engine.log_cleaner import LogCleaner
from engine.maintenance import CheckpointCadence, Maintenance
from engine.masking.batches import mask_fetch
from engine.masking.documents import Masking
from engine.masking.policy import topic_masking
from engine.masking.unmask import unmask_binding, unmask_granted
from engine.metrics_registry import EngineMetrics
from engine.partition import AppendResult, OffsetAndTimestamp, Partition, PartitionFetch, Watched
from engine.provenance import Provenance
from engine.quota_entities import ClientQuotas, client_quotas_record
from engine.schemas.store import SchemaRegistry
from engine.state_log import StateLog
from engine.store_errors import (
    PartitionRead,
    ReadOfDeleted,
    damage_at,
    store_errors,
    store_writes,
    unanswered_reads,
)
from engine.tables.service import TableService, TableStatus
from engine.tables.settings import TablesConfig
from engine.topic_admin import TopicAdmin, many_configs_record
from engine.topics import Topic, TopicRegistry
from engine.transactions.config import TransactionConfig
from engine.transactions.coordinator import TransactionCoordinator
from engine.types import NewTopic, TopicDescription, TopicPartition
from s3stream import CloseReport, ObjectStore, S3StreamError, StreamStore, StreamStoreConfig
from s3stream.ranges import check_ranges
from wal.closing import Closing

if TYPE_CHECKING:
    # The embedded clients, agent memory and verification are imported where
    # they are used: a server that serves only the wire never loads them.
    from prometheus_client.registry import Collector

    from engine.client.consumer import Consumer
    from engine.client.producer import Producer
    from engine.client.transactional_producer import TransactionalProducer
    from engine.memory.lookup import FoundRecord
    from engine.memory.replay import Replay
    from engine.memory.state_at import StateQuery, TopicState
    from engine.memory.vector import OffsetVector
    from engine.verify import VerifyReport

log = logging.getLogger("tidelog.engine")

EARLIEST = offset_lookup.EARLIEST
LATEST = offset_lookup.LATEST

CreateCheck = Callable[[str], None]
"""Whether the asker of an append may create its topic: called with the
topic's name before auto-creation, raises the refusal (engine/authorization.py's
TopicAuthorizationFailed) if not."""

READ_UNCOMMITTED = "read_uncommitted"
READ_COMMITTED = "read_committed"
_STATE_LOGS = ("groups", "transactions")
"""The engine's own state logs (_open_state_log): a fresh store's catalog
creates their streams with its own."""


@dataclass(frozen=True)
class EngineConfig:
    auto_create_topics: bool = False
    """Create a topic on its first produce (Kafka's auto.create.topics.enable)."""
    default_partitions: int = 1
    """Partitions of an auto-created topic (Kafka's num.partitions)."""
    topic_defaults: Mapping[str, str] = field(default_factory=dict)
    """Topic configs every topic gets unless it overrides them (a broker's log.* settings)."""
    checkpoint_interval_s: float = 5.0
    """How often partitions are looked at for a checkpoint of their producer
    state and time index that is due (docs/design/0128)."""
    checkpoint_bytes: int = 16 * 1024 * 1024
    """A partition is checkpointed once this many batch bytes were appended
    since its last checkpoint: a recovery replays at most about this much of it."""
    checkpoint_replay_bytes: int = 256 * 1024 * 1024
    """Past this many bytes appended since their last checkpoints over all
    partitions, those with the most are checkpointed: a recovery replays at
    most about this much, however many partitions there are."""
    checkpoint_max_interval_s: float = 300.0
    """A partition appended to is checkpointed at least this often."""
    producer_id_expiration_ms: int = 86_400_000
    cleaner_interval_s: float = 15.0
    """How often compacted topics are checked for cleaning (log.cleaner.backoff.ms)."""
    store: StreamStoreConfig = field(default_factory=StreamStoreConfig)
    groups: GroupConfig = field(default_factory=GroupConfig)
    """The group coordinator's settings (Kafka's group.* and offsets.* broker settings)."""
    transactions: TransactionConfig = field(default_factory=TransactionConfig)
    """The transaction coordinator's settings (Kafka's transaction.* broker settings)."""
    authorization: AuthorizationConfig | None = None
    """None: everyone may do everything. Set: the ACL authorizer over the
    catalog's ACLs decides for the embedded clients' principals and, under
    ``tidelog serve``, for every connection's (docs/security.md)."""
    tables: TablesConfig = field(default_factory=TablesConfig)
    """Where table topics' Iceberg tables are kept (docs/tables.md)."""
    delegation_tokens: DelegationTokenConfig = field(default_factory=DelegationTokenConfig)
    """Kafka's delegation.token.* settings: no secret, no tokens (docs/security.md)."""

    def __post_init__(self) -> None:
        check_ranges(self, ENGINE_RANGES)
        normalize_all(self.topic_defaults)  # InvalidConfig naming the topic config

    @classmethod
    def small(cls) -> EngineConfig:
        """The defaults with the stream store's small footprint
        (StreamStoreConfig.small): what engine.testing's brokers run on."""
        return replace(cls(), store=StreamStoreConfig.small())


class Engine:
    """Open with :func:`engine.open`; a context manager, sync and async."""

    clock: Clock
    """Wall and monotonic time for the coordinators' timers and stamps."""

    def __init__(self) -> None:
        raise TypeError("use engine.open(...)")

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str],
        object_store: ObjectStore | str | None = None,
        config: EngineConfig | None = None,
        *,
        clock: Clock = SYSTEM,
    ) -> Engine:
        """Opens the engine (fencing any other engine on the same storage) and
        recovers every topic from the object store and the local WAL.
        ``clock`` drives the coordinators' timers (a ManualClock in tests)."""
        self = cls.__new__(cls)
        self.clock = clock
        with store_errors():  # e.g. a damaged object met while recovering
            self._init(os.fspath(data_dir), object_store, config or EngineConfig())
        return self

    def _init(
        self, data_dir: str, object_store: ObjectStore | str | None, config: EngineConfig
    ) -> None:
        self.config = config
        static_topic_defaults = normalize_all(config.topic_defaults)
        started = clock.monotonic()
        self.store = StreamStore.open(data_dir, object_store, config.store)
        self._lock = threading.RLock()
        self._closed = False
        """Whether close has begun: no new work is taken."""
        self._closing = Closing("Engine")
        self._closing_lock = threading.Lock()
        self._close_flush = True
        """False once a close said not to upload: the close finishing it
        (the exit hook's plain ``close()`` too) does not upload either."""
        self._metrics: EngineMetrics | None = None
        self.close_report: CloseReport | None = None
        """What close left only in the WAL (None until closed)."""
        try:
            self.catalog = Catalog.open(self.store, internal=_STATE_LOGS)
            self.authorizer = engine_authorizer(config.authorization, self.catalog.state)
            """What the principals of the embedded clients (and, served, of
            connections) may do: the one authorizer both ask."""
            self.broker_configs = BrokerConfigs(
                engine_static(
                    config.auto_create_topics, config.default_partitions, config.delegation_tokens
                ),
                self.catalog.state.broker_configs,
                lambda changes: self._admin.append_catalog(
                    many_configs_record([["broker_configs", *change] for change in changes])
                ),
                static_topic_defaults=static_topic_defaults,
            )
            """The broker configs in force, the dynamic ones included."""
            self.credentials = Credentials(
                lambda: self.catalog.state.credentials,
                lambda changes: self._admin.append_catalog(user_credentials_record(changes)),
            )
            """Users' SASL credentials (kept salted in the catalog)."""
            self.delegation_tokens = DelegationTokens(
                lambda: self.catalog.state.delegation_tokens,
                lambda record: self._admin.append_catalog(record),  # noqa: PLW0108 (set below)
                config.delegation_tokens,
                self.clock.time_ms,
            )
            """Delegation tokens (KIP-48; kept in the catalog, never their HMACs)."""
            self.client_quotas = ClientQuotas(
                lambda: self.catalog.state.client_quotas,
                lambda alterations: self._admin.append_catalog(client_quotas_record(alterations)),
            )
            """Client quotas by user and client id (kept in the catalog)."""
            self.schemas = SchemaRegistry(
                lambda: self.catalog.state,
                lambda record: self._admin.append_catalog(record),  # noqa: PLW0108 (set below)
            )
            """The schema registry (Confluent's API; kept in the catalog)."""
            self.leader_epoch = self.store.manifest.state.epoch
            self._registry = TopicRegistry(
                self.store,
                self.leader_epoch,
                self.broker_configs.topic_defaults(),
                self.clock,
                self._verify_transaction,
                lambda: self.schemas,
            )
            replayed = 0
            for meta in list(self.catalog.state.topics.values()):
                topic = self._registry.load_topic(meta)
                for partition in topic.partitions:
                    replayed += partition.recover()
            self._delete_orphan_streams()
            topics = self._registry.topics
            self.groups = GroupCoordinator(
                self._open_state_log("groups"),
                config.groups,
                # Kafka's metadata has the internal topics: offsets of their
                # partitions are committed like any other's.
                lambda name: (
                    len(t.partitions) if (t := topics.get(name)) else internal_partition_count(name)
                ),
                topics=self._topic_infos,
                clock=self.clock,
            )
            self.transactions = TransactionCoordinator(self, self._open_state_log("transactions"))
            self._admin = TopicAdmin(
                self._registry,
                self.catalog,
                self.store,
                self._lock,
                default_partitions=lambda: self.broker_configs.num_partitions,
                clock=self.clock,
                check_open=self._check_open,
                on_deleted=self._topic_deleted,
            )
            # Before any append: the offsets it records are where they begin.
            self._admin.record_changes_at_open()
        except BaseException:
            if hasattr(self, "groups"):
                self.groups.close()
            if hasattr(self, "catalog"):
                self.catalog.close()  # its worker writes to the store: done first
            self.store.close(flush=False)
            raise
        self.broker_configs.subscribe(self._broker_configs_changed)
        self._waiters = DataWaiters(self._registry, self.clock)
        self._acks = Acks(self.store, self._waiters)
        try:
            self.transactions.start()
        except BaseException:  # a refused open leaves nothing running
            self.transactions.close()
            self.groups.close()
            self.catalog.close()
            self.store.close(flush=False)
            raise
        self.store.add_listener(self._waiters.on_durable)
        self.store.add_start_listener(self._retention_moved)
        self.cleaner = LogCleaner(self.store, self.clock)
        self._maintenance = Maintenance(
            self._registry,
            self._lock,
            self.store,
            self.cleaner,
            checkpoint_interval_s=config.checkpoint_interval_s,
            checkpoint_cadence=CheckpointCadence(
                config.checkpoint_bytes,
                config.checkpoint_replay_bytes,
                round(config.checkpoint_max_interval_s * 1000),
            ),
            cleaner_interval_s=config.cleaner_interval_s,
            producer_id_expiration_ms=config.producer_id_expiration_ms,
            token_sweep=self.delegation_tokens.sweep,
            token_sweep_interval_s=config.delegation_tokens.expiry_check_interval_ms / 1000,
            engine_clock=self.clock,
        )
        self._maintenance.start()
        self._tables = TableService(
            config.tables,
            data_dir,
            self.store.store,
            lambda: list(self._registry.topics.values()),
            lambda: self.schemas,
            lambda: self.store.fenced,
            self.masking,
        )
        self._tables.notice()
        exit_close.opened(self)
        log.info(
            "engine open: %d topics, %d partitions, leader epoch %d, %d batch headers "
            "replayed, %.2f s",
            len(self._registry.topics),
            len(self._registry.by_stream),
            self.leader_epoch,
            replayed,
            clock.monotonic() - started,
        )

    @property
    def topic_defaults(self) -> dict[str, str]:
        """The topic configs a topic without overrides has now: the broker's
        static [topic_defaults] under its dynamic broker configs."""
        return self._registry.topic_defaults

    def _broker_configs_changed(self) -> None:
        with self._lock:
            self._registry.set_defaults(*self.broker_configs.topic_defaults())
        self._tables.notice()

    def _topic_deleted(self, topic: Topic) -> None:
        self.groups.on_topic_deleted(topic.name)
        self._waiters.topic_deleted(topic.partitions)

    def _verify_transaction(self, topic: str, partition: int, producer_id: int, epoch: int) -> None:
        self.transactions.verify(topic, partition, producer_id, epoch)

    def _open_state_log(self, name: str) -> StateLog:
        """The engine's own state log ``name`` (docs/engine-format.md)."""
        with store_errors():
            stream_id = self.catalog.internal_stream(name)
            self.store.open_stream(stream_id, 0)
            return StateLog.open(self.store, stream_id)

    def _delete_orphan_streams(self) -> None:
        """Streams of topics whose creation did not reach the catalog, or whose
        deletion did not finish, are deleted now."""
        keep = self.catalog.state.stream_ids() | {self.catalog.stream_id}
        for stream_id in self.store.streams():
            if stream_id not in keep:
                log.info("deleting stream %d: no topic refers to it", stream_id)
                self.store.delete_stream(stream_id)

    # -- topics (topic_admin.py changes them, topics.py finds them) ------------------

    def create_topic(
        self,
        name: str,
        partitions: int | None = None,
        configs: Mapping[str, object] | None = None,
        *,
        replication_factor: int = 1,
        validate_only: bool = False,
        principal: str | Actor | None = None,
    ) -> TopicDescription:
        """Creates a topic; Kafka's rules for names, partition counts and configs."""
        new = NewTopic(name, partitions, configs, replication_factor)
        result = self.create_topics([new], validate_only=validate_only, principal=principal)[0]
        if isinstance(result, EngineError):
            raise result
        return result

    def create_topics(
        self,
        topics: Sequence[NewTopic],
        *,
        validate_only: bool = False,
        principal: str | Actor | None = None,
        timeout_ms: int | None = None,
    ) -> list[TopicDescription | EngineError]:
        """Creates many topics at once, all or none after a crash; per topic,
        its description or the error that refused it (TopicAdmin.create_topics).
        ``principal``: who asks (see ``actor``). ``timeout_ms``: an object
        store failing transiently is retried that long at most, then
        AdminTimedOut is raised and no topic was created (None: retried
        until the store closes)."""
        created = self._admin.create_topics(
            topics,
            validate_only=validate_only,
            actor=self.actor(principal),
            deadline=_deadline(timeout_ms),
        )
        self._tables.notice()
        return created

    def actor(self, principal: str | Actor | None) -> Actor:
        """Who asks for a topic change, and whether they may change its
        governance (ALTER_CONFIGS or ALTER on the cluster, asked of the
        engine's authorizer; engine/governance_gate.py). None: the code that
        holds the Engine, which may; an Actor: as the server decided it."""
        if principal is None:
            return OWNER
        if isinstance(principal, Actor):
            return principal
        # The embedded clients' host: any (engine/client/access.py).
        return Actor(principal, "embedded", may_govern(self.authorizer, principal, "*"))

    def fork(
        self,
        topic: str,
        at: OffsetVector | None = None,
        *,
        name: str,
        configs: Mapping[str, object] | None = None,
    ) -> TopicDescription:
        """Creates topic ``name`` reading ``topic``'s records below ``at``
        (None: every partition's high watermark) and taking its own records
        after; nothing is copied (engine/memory/forks.py, docs/memory.md)."""
        from engine.memory.forks import fork_topic  # noqa: PLC0415  (see TYPE_CHECKING)

        return fork_topic(self._admin, topic, name, at, configs)

    def delete_topic(self, name: str, *, principal: str | Actor | None = None) -> None:
        error = self.delete_topics([name], principal=principal)[0]
        if error is not None:
            raise error

    def delete_topics(
        self,
        names: Sequence[str],
        *,
        principal: str | Actor | None = None,
        timeout_ms: int | None = None,
    ) -> list[EngineError | None]:
        """Deletes many topics at once; per name, None or the error that
        refused it (TopicAdmin.delete_topics). ``timeout_ms``: how long the
        deletion of their streams is retried at most; the topics are
        deleted either way (what is left goes at the next open)."""
        return self._admin.delete_topics(
            names, actor=self.actor(principal), deadline=_deadline(timeout_ms)
        )

    def create_partitions(self, name: str, total: int, *, validate_only: bool = False) -> None:
        """Grows a topic to ``total`` partitions (Kafka never shrinks one)."""
        error = self.create_partitions_many([(name, total)], validate_only=validate_only)[0]
        if error is not None:
            raise error

    def create_partitions_many(
        self,
        totals: Sequence[tuple[str, int]],
        *,
        validate_only: bool = False,
        timeout_ms: int | None = None,
    ) -> list[EngineError | None]:
        """Grows many topics at once, each to its total; per topic, None or
        the error that refused it (TopicAdmin.create_partitions_many).
        ``timeout_ms`` as for create_topics (AdminTimedOut: no topic grew)."""
        return self._admin.create_partitions_many(
            totals, validate_only=validate_only, deadline=_deadline(timeout_ms)
        )

    def alter_configs(
        self,
        name: str,
        configs: Mapping[str, object | None],
        *,
        incremental: bool = True,
        validate_only: bool = False,
        principal: str | Actor | None = None,
    ) -> None:
        """Sets (or, with None, removes) topic config overrides. Not
        incremental: the given configs replace every override (AlterConfigs).
        A governance config changes only for a ``principal`` that may govern
        (``actor``), else GovernanceChangeRefused."""
        self._admin.alter_configs(
            name, configs, incremental, validate_only, actor=self.actor(principal)
        )
        self._tables.notice()

    def alter_configs_many(
        self,
        topics: Sequence[tuple[str, Mapping[str, object | None], bool]],
        brokers: Sequence[BrokerAlteration] = (),
        *,
        principal: str | Actor | None = None,
    ) -> None:
        """Alters several topics' overrides and broker resources' dynamic
        configs (each with whether incrementally) as one catalog record, as
        Kafka's controller commits one AlterConfigs' records in one atomic
        batch: after a crash, and to the authorizer, all of them are in
        force or none is. Raises, writing nothing, if any is refused."""
        actor = self.actor(principal)
        if brokers:
            # Opened before the broker configs' lock: the snapshot the
            # record made due is waited for once the change is in force and
            # that lock released (catalog_snapshot.waited_after).
            with waited_after():
                self.broker_configs.alter_many(
                    brokers,
                    lambda changes: self._admin.alter_configs_many(
                        topics, actor, [["broker_configs", *change] for change in changes]
                    ),
                )
        else:
            self._admin.alter_configs_many(topics, actor)
        self._tables.notice()

    def commit_tables(self, topic: str | None = None) -> dict[str, int]:
        """Writes every table topic's (or ``topic``'s) settled records to its
        Iceberg table now, without waiting for the cadence; the rows added
        per topic (docs/tables.md). Records become settled once uploaded:
        ``flush`` first to include everything acknowledged."""
        self._check_open()
        return self._tables.commit(topic)

    def table_status(self) -> list[TableStatus]:
        """Each table topic's table: rows, files, commits, lag, positions."""
        return self._tables.status()

    def list_topics(self) -> list[str]:
        return sorted(list(self._registry.topics))

    def describe_topic(self, name: str) -> TopicDescription:
        return self._registry.describe(self._registry.topic(name))

    def has_topic(self, name: str) -> bool:
        return name in self._registry.topics

    def topic_leaders(self, name: str) -> Sequence[Partition] | None:
        """A topic's partitions by index (None for no such topic), never
        auto-created: a Fetch of a topic's many partitions looks the topic
        up once, not once a partition. Read, never kept: a topic deleted and
        created again has a new table."""
        topic = self._registry.topics.get(name)
        return None if topic is None else topic.partitions

    def topic_shape(self, name: str) -> tuple[bytes, int]:
        """A topic's id and partition count (it is never auto-created here)."""
        topic = self._registry.topic(name)
        return topic.meta.topic_id, len(topic.partitions)

    def topic_config(self, name: str) -> TopicConfig:
        """A topic's config; an internal topic's is the overrides Kafka
        creates it with (INTERNAL_TOPIC_CONFIGS) over the broker's defaults."""
        if is_internal_topic(name):
            return self._registry.topic_config(INTERNAL_TOPIC_CONFIGS[name])
        return self._registry.topic(name).config

    def partition_count(self, name: str, may_create: CreateCheck | None = None) -> int:
        """Partitions of a topic (created first if auto_create_topics is on
        and ``may_create`` allows it, as for submit)."""
        if name not in self._registry.topics:
            self.partition(name, 0, auto_create=True, may_create=may_create)
        return len(self._registry.topic(name).partitions)

    def _topic_infos(self) -> dict[str, TopicInfo]:
        """Every topic's id and partition count, for consumer groups; read
        without the engine's lock (the group coordinator calls it under its
        own), from a copy made in one step."""
        return {
            name: TopicInfo(topic.meta.topic_id, len(topic.partitions))
            for name, topic in list(self._registry.topics.items())
        }

    def topic_id(self, name: str) -> bytes:
        return self._registry.topic(name).meta.topic_id

    def topic_partitions(self, topics: Iterable[str]) -> list[TopicPartition]:
        known = self._registry.topics
        with self._lock:
            return [
                TopicPartition(name, p.index)
                for name in topics
                if name in known
                for p in known[name].partitions
            ]

    def partition(
        self,
        topic: str,
        partition: int,
        *,
        auto_create: bool = False,
        may_create: CreateCheck | None = None,
    ) -> Partition:
        """The partition's leader. An unknown topic raises UnknownTopic unless
        ``auto_create`` and auto_create_topics are on: only produce and
        metadata create topics, as in Kafka; a fetch or an offset lookup
        racing a deletion must not bring the topic back. ``may_create``, the
        asker's CREATE check, is called before an unknown topic is created
        and raises if the asker may not create it."""
        if topic not in self._registry.topics:  # a dict read needs no lock; creating one does
            if auto_create and may_create is not None and self.broker_configs.auto_create_topics:
                # Outside the lock: the authorizer has its own.
                may_create(topic)
            # A snapshot the creation made due is waited for once the lock
            # is released (catalog_snapshot.waited_after).
            with waited_after(), self._lock:
                if topic not in self._registry.topics:
                    if auto_create and is_internal_topic(topic):
                        raise InvalidTopic(append_refusal(topic))
                    if not (auto_create and self.broker_configs.auto_create_topics) or self._closed:
                        raise UnknownTopic(topic)
                    self.create_topic(topic)
        return self._registry.partition(topic, partition)

    # -- producing (acks.py answers once durable) -------------------------------------

    def submit(
        self,
        topic: str,
        partition: int,
        records: bytes | bytearray | memoryview,
        *,
        remote: bool | None = None,
        provenance: Provenance | None = None,
        one_batch: bool = False,
        may_create: CreateCheck | None = None,
    ) -> Future[AppendResult]:
        """Appends record batches (Kafka's v2 format) to a partition; the
        future resolves once they are durable: in the local WAL, or in an
        object committed to the object store if the topic's
        ``tidelog.ack.durability`` is ``remote`` (``remote`` overrides it).
        Validation errors raise here; ``Fenced`` once another engine owns
        the storage. Several batches may go in one append, none of them
        with a producer id (an idempotent or transactional batch goes
        alone, else InvalidRecord).

        A bytearray or writable memoryview is rewritten in place (offsets,
        leader epoch) and stored without a copy: it must not change after.

        On a ``tidelog.provenance = stamp`` topic every record is stamped
        with ``provenance``: who wrote it (engine/provenance.py; an append
        that names nobody is stamped as ``User:ANONYMOUS`` on ``embedded``).

        With ``one_batch`` (a Produce request's partition), the data is
        framed first as Kafka's ProduceRequest.validateRecords frames it
        (native.produce_batch_size): a second whole batch is refused
        InvalidRecord, as Kafka refuses it from Produce v3, before anything
        else in it is checked, and bytes after the batch too short to be
        another are dropped, as Kafka drops them (docs/record-batch.md); and
        the batch must start at offset 0 (InvalidRecord otherwise), as Kafka
        requires of a client's batch. Without it the broker writes the base
        offset over whatever the batches came with.

        A topic that does not exist is created where auto_create_topics is
        on, after ``may_create`` (the asker's CREATE check, which raises
        its refusal) allows it: a topic deleted after a request looked it up
        is created again only for a principal that may create it.
        """
        self._check_open()
        leader = self.partition(topic, partition, auto_create=True, may_create=may_create)
        return self._acks.submit(leader, records, remote, provenance, one_batch)

    def produce(
        self,
        topic: str,
        partition: int,
        records: bytes | bytearray | memoryview,
        *,
        remote: bool | None = None,
    ) -> AppendResult:
        """Appends and waits until durable (see submit)."""
        return self.submit(topic, partition, records, remote=remote).result()

    async def produce_async(
        self,
        topic: str,
        partition: int,
        records: bytes | bytearray | memoryview,
        *,
        remote: bool | None = None,
    ) -> AppendResult:
        """Like produce, without blocking the event loop."""
        return await self.submit_async(topic, partition, records, remote=remote)

    def submit_async(
        self,
        topic: str,
        partition: int,
        records: bytes | bytearray | memoryview,
        *,
        remote: bool | None = None,
        provenance: Provenance | None = None,
        one_batch: bool = False,
        may_create: CreateCheck | None = None,
    ) -> asyncio.Future[AppendResult]:
        """Like submit, from a running event loop: the batches are validated
        and appended now, in call order (validation errors raise here), and
        the returned asyncio future resolves once they are durable.
        Back-pressure from a full log cache is waited for before it
        resolves, never by blocking the loop. Cancelling it stops the wait,
        not the append."""
        self._check_open()
        leader = self.partition(topic, partition, auto_create=True, may_create=may_create)
        return self._acks.submit_async(leader, records, remote, provenance, one_batch)

    def submit_then(
        self,
        topic: str,
        partition: int,
        records: bytes | bytearray | memoryview,
        then: AppendCall,
        *,
        remote: bool | None = None,
        provenance: Provenance | None = None,
        one_batch: bool = False,
        may_create: CreateCheck | None = None,
    ) -> None:
        """Like submit_async, with a call in place of the future:
        ``then(result, None)`` on the loop once the append is durable,
        ``then(result, error)`` if it failed (Acks.submit_then)."""
        self._check_open()
        leader = self.partition(topic, partition, auto_create=True, may_create=may_create)
        self._acks.submit_then(leader, records, CallThen(then), remote, provenance, one_batch)

    def submit_then_to(
        self,
        leader: Partition,
        records: bytes | bytearray | memoryview,
        settle: AppendSettle,
        *,
        provenance: Provenance | None = None,
        one_batch: bool = False,
        may_create: CreateCheck | None = None,
    ) -> None:
        """submit_then to a leader the caller has just looked up
        (``partition``), with the topic's own durability, answered through
        the caller's own ``settle`` (Acks.submit_then): the Produce
        handler's one-partition path, which looks at the partition before
        it appends and need not look it up a second time. A topic deleted
        since is looked up again, as submit_then looks it up: created
        again where ``may_create`` allows."""
        if self._closed:  # _check_open, without its call: once a Produce
            raise EngineClosed
        if leader.deleted:
            leader = self.partition(
                leader.topic, leader.index, auto_create=True, may_create=may_create
            )
        self._acks.submit_then(leader, records, settle, None, provenance, one_batch)

    def appends_gathered(self) -> contextlib.AbstractContextManager[None]:
        """Appends made inside the block (one request's partitions) share one
        write and one sync of the WAL; the WAL's writer waits for the block
        to end, at most 5 ms."""
        return self.store.gathered()

    def init_producer_id(self) -> tuple[int, int]:
        """A new idempotent producer: (producer id, epoch)."""
        self._check_open()
        with store_errors():
            return self.catalog.allocate_producer_id(), 0

    # -- reading --------------------------------------------------------------------

    def fetch(
        self,
        topic: str,
        partition: int,
        offset: int,
        max_bytes: int = 1024 * 1024,
        isolation_level: str = READ_UNCOMMITTED,
    ) -> PartitionFetch:
        """Stored batches from ``offset``, up to ``max_bytes`` (at least one
        batch if there is one), with the partition's watermarks. With
        ``isolation_level="read_committed"``, only batches below the last
        stable offset, with the aborted transactions among them.

        A read from the object store is waited for at most
        ``remote_fetch_max_wait_ms``, as fetch_async waits: past it the
        answer holds no records and ``read_pending`` is set ("no records
        yet", never the partition's end: fetch the same offset again, which
        waits on the same read)."""
        self._check_open()
        return self.fetch_from(self.partition(topic, partition), offset, max_bytes, isolation_level)

    async def fetch_async(
        self,
        topic: str,
        partition: int,
        offset: int,
        max_bytes: int = 1024 * 1024,
        isolation_level: str = READ_UNCOMMITTED,
    ) -> PartitionFetch:
        self._check_open()
        leader = self.partition(topic, partition)
        return await self.fetch_from_async(leader, offset, max_bytes, isolation_level)

    def fetch_from(
        self, leader: Partition, offset: int, max_bytes: int, isolation_level: str
    ) -> PartitionFetch:
        """fetch of a partition leader the caller looked up (and keeps, to
        wait on what it read: wait_for_reads)."""
        committed = _read_committed(isolation_level)
        self._check_open()
        with store_errors(), PartitionRead(leader, offset):
            return leader.fetch_bounded(offset, max_bytes, committed)

    async def fetch_from_async(
        self, leader: Partition, offset: int, max_bytes: int, isolation_level: str
    ) -> PartitionFetch:
        """fetch_async of a partition leader the caller looked up."""
        committed = _read_committed(isolation_level)
        return await self.fetch_leader_async(leader, offset, max_bytes, committed)

    async def fetch_leader_async(
        self,
        leader: Partition,
        offset: int,
        max_bytes: int,
        read_committed: bool,
        last_stable: int | None = None,
        *,
        cold: bool = False,
    ) -> PartitionFetch:
        """fetch_async of a partition leader the caller looked up, with the
        last stable offset if it read it (Partition.read_offsets) since its
        last await: the wire server's Fetch has looked at each partition it
        names once already, and a Fetch of thousands of partitions would
        otherwise look up each again and read its offsets twice more.
        ``cold``: fetch_leader_hot has just answered None for this read
        (Partition.fetch_async)."""
        self._check_open()
        with store_errors(), PartitionRead(leader, offset):
            return await leader.fetch_async(
                offset, max_bytes, read_committed, last_stable, cold=cold
            )

    def fetch_leader_hot(
        self,
        leader: Partition,
        offset: int,
        max_bytes: int,
        read_committed: bool,
        last_stable: int,
    ) -> PartitionFetch | None:
        """fetch_leader_async's answer, made at once, if it needs no object
        read (a tail read from the log cache, or one at the end); None if
        it does. A Fetch of thousands of caught-up or tailing partitions
        then makes no coroutine chain per partition."""
        self._check_open()
        with store_errors(), PartitionRead(leader, offset):
            return leader.fetch_hot(offset, max_bytes, read_committed, last_stable)

    def lookup(
        self,
        topic: str,
        header: str,
        value: bytes | str,
        *,
        partitions: Iterable[int] | None = None,
        isolation_level: str = READ_UNCOMMITTED,
    ) -> list[FoundRecord]:
        """Every record of ``topic`` (of ``partitions``, else all) whose
        header ``header`` has ``value`` (a str is its UTF-8), from the log
        start to the high watermark (``read_committed``: to the last stable
        offset, without aborted transactions' records): by partition, in
        offset order, each with its RecordRef. With ``header`` in the topic's
        ``tidelog.index.headers`` only indexed batches are read; otherwise
        the log is scanned (docs/memory.md, "Lookup by header")."""
        committed = _read_committed(isolation_level)
        self._check_open()
        # The partitions of the topic as looked up now, never looked up again
        # by name: one created again under the name while an earlier
        # partition was scanned is another log, not the rest of this one.
        leaders = list(self._registry.topic(topic).partitions)
        count = len(leaders)
        indexes = range(count) if partitions is None else sorted(set(partitions))
        wanted = value.encode() if isinstance(value, str) else bytes(value)
        from engine.memory.lookup import lookup_partition  # noqa: PLC0415

        found: list[FoundRecord] = []
        for index in indexes:
            if not 0 <= index < count:
                raise UnknownPartition(topic, index, count)
            leader = leaders[index]
            with (
                store_errors(),
                damage_at(topic, index, 0),
                unanswered_reads(topic, index),
                ReadOfDeleted(leader),
            ):
                found += lookup_partition(leader, header, wanted, committed)
        if any(leaders[index].deleted for index in indexes):
            # Deleted while a scan ran (a read that met the deletion raised
            # above) or after it: what was found is no answer for a topic gone.
            raise UnknownTopic(topic)
        return found

    def lookup_many(
        self,
        topics: Iterable[str],
        header: str,
        value: bytes | str,
        *,
        isolation_level: str = READ_UNCOMMITTED,
    ) -> list[FoundRecord]:
        """``lookup`` over several topics, in the order given."""
        return [
            r
            for topic in topics
            for r in self.lookup(topic, header, value, isolation_level=isolation_level)
        ]

    async def lookup_async(
        self,
        topic: str,
        header: str,
        value: bytes | str,
        *,
        partitions: Iterable[int] | None = None,
        isolation_level: str = READ_UNCOMMITTED,
    ) -> list[FoundRecord]:
        """Like lookup, on a worker thread, so the event loop never waits
        for object storage."""
        return await asyncio.to_thread(
            partial(
                self.lookup, topic, header, value, partitions=partitions,
                isolation_level=isolation_level,
            )
        )  # fmt: skip

    def masking(self, topic: str) -> Masking | None:
        """The topic's masking rules and key (docs/governance.md, "Masked
        replay"), None if it is not masked."""
        found = self._registry.topics.get(topic)
        if found is None:
            return None
        return topic_masking(found.config, self.catalog.state.masking_keys.get(topic))

    def masked_fetch(self, topic: str, fetched: PartitionFetch, principal: str) -> PartitionFetch:
        """``fetched`` as ``principal`` may see it: as stored if the topic is
        not masked, the principal is a super user of the engine's
        authorization or holds unmask in the catalog's ACLs, else with its
        records masked (what the embedded consumer reads)."""
        masking = self.masking(topic)
        if masking is None or self._may_unmask(principal, topic):
            return fetched
        return mask_fetch(fetched, masking, None)

    def _may_unmask(self, principal: str, topic: str) -> bool:
        authorization = self.config.authorization
        if authorization is not None and principal in authorization.super_users:
            return True  # as on the wire: super users read the stored bytes
        return unmask_granted(self.catalog.state.acls, principal, topic)

    def governance_history(self, topic: str | None = None) -> list[GovernanceChange]:
        """Every recorded change of governance configs (of ``topic``'s name
        only, if given), oldest first (engine/governance_log.py)."""
        history = self.catalog.state.governance
        return [c for c in history if topic is None or c.topic == topic]

    def stamped_ranges(self, topic: str, partition: int) -> list[tuple[int, int | None]]:
        """The offsets of the partition where the broker stamped every
        record (end None: it still does); stamp-named headers elsewhere are
        a client's (docs/governance.md, "Provenance")."""
        topic_id = self._registry.topic(topic).meta.topic_id
        return stamped_ranges(self.catalog.state.governance, topic_id, partition)

    def grant_unmask(self, topic: str, principal: str, *, prefixed: bool = False) -> None:
        """Lets ``principal`` read ``topic`` (with ``prefixed``, every topic
        whose name starts with it) in clear: the ACL binding CreateAcls
        would add (engine/masking/unmask.py)."""
        with store_errors():
            self.catalog.add_acls([unmask_binding(topic, principal, prefixed=prefixed)])

    def revoke_unmask(self, topic: str, principal: str, *, prefixed: bool = False) -> None:
        """Removes what ``grant_unmask`` with the same arguments added."""
        with store_errors():
            self.catalog.remove_acls([unmask_binding(topic, principal, prefixed=prefixed)])

    def list_offset(
        self,
        topic: str,
        partition: int,
        timestamp: int,
        isolation_level: str = READ_UNCOMMITTED,
    ) -> OffsetAndTimestamp:
        """ListOffsets: -2 earliest, -1 latest, -3 the record with the largest
        timestamp, -4 the first offset held locally, -5 the last offset in
        object storage, else the first offset whose timestamp is >=
        ``timestamp`` (offset -1 if there is none); see engine.offset_lookup.
        Read committed, the latest offset is the last stable offset, and only
        offsets below it are found by time (as in Kafka)."""
        committed = _read_committed(isolation_level)
        leader = self.partition(topic, partition)
        with store_errors(), unanswered_reads(topic, partition), ReadOfDeleted(leader):
            return offset_lookup.list_offset(leader, timestamp, committed)

    def delete_records(self, topic: str, partition: int, offset: int) -> int:
        """DeleteRecords: moves the log start to ``offset`` (-1: the high
        watermark); returns the new log start offset. An internal topic's
        records cannot be deleted (InvalidTopic)."""
        self._check_open()
        if refuses_record_deletion(topic, partition):
            raise InvalidTopic(f"Cannot delete records of internal topic {topic}")
        with store_errors():
            leader = self.partition(topic, partition)
            log_start = leader.delete_records(offset, self.config.producer_id_expiration_ms)
        self._waiters.log_start_moved(leader)
        return log_start

    def _retention_moved(self, streams: set[int]) -> None:
        """The store's retention moved these streams' log starts: waits read
        below a new start end now, as after DeleteRecords (docs/design/0098)."""
        by_stream = self._registry.by_stream
        for stream_id in streams:
            leader = by_stream.get(stream_id)
            if leader is not None:  # a stream of no partition: an internal log
                self._waiters.log_start_moved(leader)
                leader.note_log_start_moved()

    def offsets(self, topic: str, partition: int) -> tuple[int, int]:
        """(log start offset, high watermark)."""
        leader = self.partition(topic, partition)
        with store_errors(), ReadOfDeleted(leader):
            return leader.log_start_offset, leader.high_watermark

    # -- waiting for data (data_waiters.py) -------------------------------------------

    def wait_for_data(self, positions: Mapping[TopicPartition, int], timeout: float) -> bool:
        """Blocks until one of the partitions has data at or after its
        position, or ``timeout`` seconds pass; True if there is data."""
        return self._waiters.wait_for_data(positions, timeout)

    def wait_for_reads(self, watched: Mapping[int, Watched], timeout: float) -> bool:
        """wait_for_data over the partitions the caller read, by stream id
        (an embedded consumer: see DataWaiters.wait_for_reads)."""
        return self._waiters.wait_for_reads(watched, timeout)

    async def wait_for_data_async(
        self, positions: Mapping[TopicPartition, int], timeout: float, since: int | None = None
    ) -> bool:
        """Like wait_for_data, without blocking the event loop. ``since``:
        a growth_mark() taken before the caller read the partitions, so
        that only those that grew since are looked at before the wait."""
        return await self._waiters.wait_for_data_async(positions, timeout, since)

    async def wait_for_reads_async(
        self, watched: Mapping[int, Watched], timeout: float, since: int | None = None
    ) -> bool:
        """wait_for_data_async over the partitions the caller read, by stream
        id (a Fetch, an embedded consumer: see DataWaiters.wait_for_reads_async)."""
        return await self._waiters.wait_for_reads_async(watched, timeout, since)

    def growth_mark(self) -> int:
        """A mark of the streams' growths so far, for wait_for_data_async."""
        return self._waiters.growth_mark()

    # -- background work (maintenance.py) ---------------------------------------------

    def checkpoint(self) -> None:
        """Checkpoints every partition that changed (producer state, time
        index) now, whether or not its checkpoint is due by the cadence."""
        self._maintenance.checkpoint()

    def checkpoint_due(self) -> int:
        """Checkpoints the partitions whose checkpoint is due by the cadence
        (docs/design/0128), as the engine's thread does every
        ``checkpoint_interval_s``; returns how many were due."""
        with store_errors():
            return self._maintenance.checkpoint_due()

    def clean(self) -> int:
        """Runs the log cleaner over compacted topics; returns partitions cleaned."""
        with store_writes():  # it writes the cleaned objects and commits them
            return self._maintenance.clean()

    def verify(
        self,
        topic: str | None = None,
        partition: int | None = None,
        *,
        from_offset: int = 0,
        expect_head: bytes | None = None,
        accept_rewrites: bool = False,
    ) -> VerifyReport:
        """Proves the hash chains of a topic's partitions (all topics if None)
        from what is committed in the object store (docs/tamper-evidence.md);
        data not uploaded yet is not covered: ``flush`` first to include it.
        ``expect_head`` (one partition only) anchors the chain to a head
        recorded elsewhere: the report fails unless it ends there and, unless
        ``accept_rewrites``, holds no range the log cleaner rewrote
        (``PartitionVerdict.anchor_failures`` says why)."""
        from engine.verify import verify_partitions  # noqa: PLC0415

        self._check_open()
        with store_errors():
            return verify_partitions(
                self.store.store,
                topic,
                partition,
                from_offset=from_offset,
                catalog=self.catalog.state,
                expect_head=expect_head,
                accept_rewrites=accept_rewrites,
            )

    def state_at(
        self,
        topic: str,
        at: int | datetime | None = None,
        *,
        vector: OffsetVector | None = None,
        partitions: Sequence[int] | None = None,
    ) -> TopicState:
        """A compacted topic's keys and values as of ``at`` (ms, or an aware
        datetime) or below ``vector``, from the committed records kept, with
        each partition's exactness (engine/memory/state_at.py, docs/memory.md)."""
        from engine.memory.deleted_topics import deleted_under  # noqa: PLC0415
        from engine.memory.state_at import rebuild  # noqa: PLC0415

        query, sources, now = self._state_read(topic, at, vector, partitions)
        with store_errors(), deleted_under(sources, {topic: query.topic_id}):
            reached = _reached(now, sources)
            return rebuild(topic, sources, query, reached, unanswered_reads)

    async def state_at_async(
        self,
        topic: str,
        at: int | datetime | None = None,
        *,
        vector: OffsetVector | None = None,
        partitions: Sequence[int] | None = None,
    ) -> TopicState:
        from engine.memory.deleted_topics import deleted_under  # noqa: PLC0415
        from engine.memory.state_at import rebuild_async  # noqa: PLC0415

        query, sources, now = self._state_read(topic, at, vector, partitions)
        with store_errors(), deleted_under(sources, {topic: query.topic_id}):
            reached = _reached(now, sources)
            return await rebuild_async(topic, sources, query, reached, unanswered_reads)

    def _state_read(
        self,
        topic: str,
        at: int | datetime | None,
        vector: OffsetVector | None,
        partitions: Sequence[int] | None,
    ) -> tuple[StateQuery, list[Partition], int]:
        """What state_at and state_at_async read: the query, the partitions
        it reads and the time their reach is measured from (appends from
        then on are dated then or later, LogAppendTime)."""
        from engine.memory.state_at import state_query  # noqa: PLC0415

        self._check_open()
        read = self._state_partitions(topic, vector)
        query = state_query(topic, at, vector, partitions, len(read))
        now = self.clock.time_ms()
        # The partitions of the topic looked up above, never looked up again
        # by name: one deleted (and maybe created again) since is answered
        # as a deletion, not as another topic's or as UnknownPartition.
        return query, [read[index] for index in query.partitions], now

    def _state_partitions(self, topic: str, vector: OffsetVector | None) -> list[Partition]:
        """The partitions of the topic a state query reads. A read:
        an unknown topic is never created (as in Kafka); UnknownTopic, or
        UnknownTopicId for a vector naming the id of a topic since deleted."""
        from engine.memory.deleted_topics import gone  # noqa: PLC0415

        try:
            found = self._registry.topic(topic)
        except UnknownTopic as error:
            if vector is None:
                raise
            raise gone(topic, vector.topic_id(topic)) from error
        if vector is not None:
            # Before the vector's partitions are checked against the count:
            # a topic created again with fewer is still another topic.
            vector.check_topic_id(topic, found.meta.topic_id)
        return list(found.partitions)

    # -- lifecycle -------------------------------------------------------------------

    @property
    def storage_url(self) -> str:
        """The object store the engine keeps its data in (its URL)."""
        return self.store.store.url

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosed

    @property
    def closed(self) -> bool:
        return self._closed

    def flush(self, timeout: float | None = None) -> bool:
        """Checkpoints and uploads everything appended so far."""
        with store_errors():
            self.checkpoint()
            return self.store.flush(timeout)

    def close(self, *, flush: bool = True) -> None:
        """Stops, checkpoints, uploads (if ``flush``) and closes the store.

        A close cut short (a KeyboardInterrupt, any exception) leaves the
        engine closed to new work, with what it had not closed yet still
        open: call close again to finish it (the steps done are not run
        again) and release the data directory; it uploads only if every
        close before it asked to (``flush``). Left so, the engine is
        finished at interpreter exit (engine/exit_close.py), and in any case
        the directory's lock goes with the process (docs/design/0113)."""
        with self._lock:
            self._closed = True
        # One close at a time: a second caller waits for the first's steps.
        with self._closing_lock:
            if self._closing.finished:
                return
            self._close_flush = flush = flush and self._close_flush
            self._close_steps(flush)
        exit_close.closed(self)
        assert self.close_report is not None  # set by the last step
        if self.close_report.uploaded:
            log.info("engine closed")
        else:
            log.warning(
                "engine closed: %d appends (%d bytes) are only in the WAL: %s",
                self.close_report.wal_only_appends,
                self.close_report.wal_only_bytes,
                self.close_report.reason,
            )

    def _close_steps(self, flush: bool) -> None:
        closing = self._closing
        closing.step("tables", self._tables.close)
        closing.step("maintenance", self._maintenance.stop)
        closing.step("transactions", self.transactions.close)
        closing.step("groups", self.groups.close)
        closing.step("waiters", self._waiters.close)
        closing.step("catalog", self.catalog.close)
        if flush and not self.store.fenced:
            closing.step("checkpoint", self._checkpoint_at_close)
        closing.step("store", lambda: self._close_store(flush))
        closing.finish()

    def _checkpoint_at_close(self) -> None:
        with contextlib.suppress(S3StreamError):
            self.checkpoint()

    def _close_store(self, flush: bool) -> None:
        self.close_report = self.store.close(flush=flush and not self.store.fenced)

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    # -- embedded clients -------------------------------------------------------------

    @overload
    def producer(self, *, transactional_id: str, **options: Any) -> TransactionalProducer: ...

    @overload
    def producer(self, **options: Any) -> Producer: ...

    def producer(self, **options: Any) -> Producer:
        """An embedded producer (see engine.client.producer.Producer for options);
        with ``transactional_id``, a transactional one (TransactionalProducer)."""
        from engine.client.producer import Producer  # noqa: PLC0415
        from engine.client.transactional_producer import TransactionalProducer  # noqa: PLC0415

        if options.get("transactional_id") is not None:
            return TransactionalProducer(self, **options)
        return Producer(self, **options)

    def consumer(self, *topics: str, **options: Any) -> Consumer:
        """An embedded consumer, subscribed to ``topics`` if any are given."""
        from engine.client.consumer import Consumer  # noqa: PLC0415

        consumer = Consumer(self, **options)
        if topics:
            consumer.subscribe(topics)
        return consumer

    # -- points in time and bounded replay (engine/memory/, docs/memory.md) -----------

    def snapshot(
        self,
        topics: Iterable[str],
        at: int | None = None,
        *,
        isolation_level: str = READ_COMMITTED,
    ) -> OffsetVector:
        """The OffsetVector of what ``topics`` held durably now, or at ``at``
        (ms since the epoch); see engine.memory.snapshot."""
        from engine.memory import snapshot as memory_snapshot  # noqa: PLC0415

        self._check_open()
        with store_errors():
            return memory_snapshot.snapshot(self, topics, at, isolation_level)

    async def snapshot_async(
        self,
        topics: Iterable[str],
        at: int | None = None,
        *,
        isolation_level: str = READ_COMMITTED,
    ) -> OffsetVector:
        from engine.memory import snapshot as memory_snapshot  # noqa: PLC0415

        self._check_open()
        with store_errors():
            return await memory_snapshot.snapshot_async(self, topics, at, isolation_level)

    def earliest(self, topics: Iterable[str]) -> OffsetVector:
        """The log start of every partition of ``topics``, as a vector."""
        from engine.memory import snapshot as memory_snapshot  # noqa: PLC0415

        self._check_open()
        return memory_snapshot.earliest(self, topics)

    def replay(
        self,
        until: OffsetVector,
        since: OffsetVector | None = None,
        *,
        isolation_level: str = READ_COMMITTED,
        **options: Any,
    ) -> Replay:
        """The records below ``until`` from ``since`` (inclusive), then an
        end; see engine.memory.replay.Replay."""
        from engine.memory.replay import Replay  # noqa: PLC0415

        self._check_open()
        return Replay(self, until, since, isolation_level=isolation_level, **options)

    def metrics(self) -> EngineMetrics:
        """The engine's metrics registry (docs/operations.md): serve
        ``metrics().text()`` or hand ``metrics().registry`` to prometheus-client."""
        if self._metrics is None:
            self._metrics = EngineMetrics(self)
            self._metrics.add_source(self._tables, self._tables_collector)
        return self._metrics

    def _tables_collector(self) -> Collector:
        """The table topics' metrics, made with the registry (whose first
        read loads prometheus-client)."""
        from engine.tables.collector import TablesCollector  # noqa: PLC0415

        return TablesCollector(self._tables)

    def all_partitions(self) -> list[Partition]:
        """Every loaded partition of every topic, internal ones included.
        Read without the engine's lock: a scrape never waits on an append."""
        topics = list(self._registry.topics.values())
        return [partition for topic in topics for partition in topic.partitions]

    def consumer_lag(self, group_id: str) -> dict[TopicPartition, ConsumerLag]:
        """Per partition of every topic the group has committed offsets for
        or subscribes to: committed offset, high watermark and lag."""
        return consumer_lag(self, group_id)


def _reached(now: int, sources: Sequence[Partition]) -> Callable[[int, int], int]:
    """The time each partition of a state rebuild has reached, given the
    latest time its read carries: ``now`` (taken before) if everything
    appended was readable as the rebuild began, else the latest time read,
    as an open transaction's or a not yet durable append's records may be
    dated up to it (they were appended after every record read)."""
    # The log end first: a stable offset read after it can only be later.
    settled = {p.index: p.log_end_offset <= p.last_stable_offset for p in sources}
    return lambda index, read_ms: now if settled[index] else min(now, read_ms)


def _read_committed(isolation_level: str) -> bool:
    if isolation_level not in (READ_UNCOMMITTED, READ_COMMITTED):
        raise ValueError(
            f"isolation_level must be {READ_UNCOMMITTED!r} or {READ_COMMITTED!r}, "
            f"not {isolation_level!r}"
        )
    return isolation_level == READ_COMMITTED


def _deadline(timeout_ms: int | None) -> float | None:
    """The monotonic time an admin request's ``timeout_ms`` ends at (the
    object store's retries run on real time, whatever the engine's clock)."""
    return None if timeout_ms is None else clock.monotonic() + max(timeout_ms, 0) / 1000
