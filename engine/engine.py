"""The engine: topics and partitions on a stream store, in one process.

It owns the stream store, the catalog and every partition leader; the
embedded producer and consumer, and the wire server, are thin layers over
its methods. It is safe to use from many threads and from asyncio: produce
and fetch have ``*_async`` twins that never block the event loop.

A background thread writes partition checkpoints (producer state, time
index) and runs the log cleaner for compacted topics.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import re
import threading
import uuid
import weakref
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, overload

from engine import clock, offset_lookup
from engine.catalog import Catalog, TopicMeta
from engine.client.consumer import Consumer
from engine.client.producer import Producer
from engine.client.transactional_producer import TransactionalProducer
from engine.clock import SYSTEM, Clock
from engine.config import TopicConfig, normalize, normalize_all
from engine.errors import (
    CorruptStoredData,
    EngineClosed,
    EngineError,
    Fenced,
    InvalidPartitions,
    InvalidReplicationFactor,
    InvalidTopic,
    StorageError,
    TopicExists,
    UnknownPartition,
    UnknownTopic,
)
from engine.gc_pause import collector_paused
from engine.groups import ConsumerLag, GroupConfig, GroupCoordinator, consumer_lag
from engine.groups.consumer_group import TopicInfo
from engine.internal_topics import append_refusal, is_internal_topic
from engine.log_cleaner import LogCleaner
from engine.partition import (
    AppendResult,
    OffsetAndTimestamp,
    Partition,
    PartitionFetch,
)
from engine.state_log import StateLog
from engine.transactions.config import TransactionConfig
from engine.transactions.coordinator import TransactionCoordinator
from engine.types import NewTopic, PartitionInfo, TopicDescription, TopicPartition
from s3stream import (
    CloseReport,
    CorruptObject,
    ObjectStore,
    S3StreamError,
    StoreClosed,
    StreamStore,
    StreamStoreConfig,
)
from s3stream import Fenced as StoreFenced

log = logging.getLogger("tidelog.engine")

EXIT_CLOSE_TIMEOUT_S = 10.0
"""How long interpreter exit waits for an engine left open to close."""
_open_engines: weakref.WeakSet[Engine] = weakref.WeakSet()

_TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
EARLIEST = offset_lookup.EARLIEST
LATEST = offset_lookup.LATEST
READ_UNCOMMITTED = "read_uncommitted"
READ_COMMITTED = "read_committed"
_MANY_TOPICS = 64
"""Changes of this many topics pause the garbage collector (gc_pause.py)."""


@dataclass(frozen=True)
class EngineConfig:
    auto_create_topics: bool = False
    """Create a topic on its first produce (Kafka's auto.create.topics.enable)."""
    default_partitions: int = 1
    """Partitions of an auto-created topic (Kafka's num.partitions)."""
    topic_defaults: Mapping[str, str] = field(default_factory=dict)
    """Topic configs every topic gets unless it overrides them (a broker's log.* settings)."""
    checkpoint_interval_s: float = 5.0
    """How often changed partitions checkpoint their producer state and time index."""
    producer_id_expiration_ms: int = 86_400_000
    cleaner_interval_s: float = 15.0
    """How often compacted topics are checked for cleaning (log.cleaner.backoff.ms)."""
    store: StreamStoreConfig = field(default_factory=StreamStoreConfig)
    groups: GroupConfig = field(default_factory=GroupConfig)
    """The group coordinator's settings (Kafka's group.* and offsets.* broker settings)."""
    transactions: TransactionConfig = field(default_factory=TransactionConfig)
    """The transaction coordinator's settings (Kafka's transaction.* broker settings)."""


class Topic:
    def __init__(self, meta: TopicMeta, config: TopicConfig, partitions: list[Partition]) -> None:
        self.meta = meta
        self.config = config
        self.partitions = partitions

    @property
    def name(self) -> str:
        return self.meta.name


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
        with _store_errors():  # e.g. a damaged object met while recovering
            self._init(os.fspath(data_dir), object_store, config or EngineConfig())
        return self

    def _init(
        self, data_dir: str, object_store: ObjectStore | str | None, config: EngineConfig
    ) -> None:
        self.config = config
        self.topic_defaults = normalize_all(config.topic_defaults)
        started = clock.monotonic()
        self.store = StreamStore.open(data_dir, object_store, config.store)
        self._lock = threading.RLock()
        self._topics: dict[str, Topic] = {}
        self._by_stream: dict[int, Partition] = {}
        self._closed = False
        self._stop = threading.Event()
        self._data_arrived = threading.Condition()
        self._sync_waiters = 0
        self._async_waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._offset_waiters: dict[
            int, list[tuple[int, Callable[[BaseException | None], None]]]
        ] = {}
        self._offset_waiters_lock = threading.Lock()
        self.close_report: CloseReport | None = None
        """What close left only in the WAL (None until closed)."""
        try:
            self.catalog = Catalog.open(self.store)
            self.leader_epoch = self.store.manifest.state.epoch
            replayed = 0
            for meta in list(self.catalog.state.topics.values()):
                topic = self._load_topic(meta)
                for partition in topic.partitions:
                    replayed += partition.recover()
            self._delete_orphan_streams()
            self.groups = GroupCoordinator(
                self._open_state_log("groups"),
                config.groups,
                lambda name: len(t.partitions) if (t := self._topics.get(name)) else None,
                topics=self._topic_infos,
                clock=self.clock,
            )
            self.transactions = TransactionCoordinator(self, self._open_state_log("transactions"))
        except BaseException:
            if hasattr(self, "groups"):
                self.groups.close()
            self.store.close(flush=False)
            raise
        self.transactions.start()
        self.store.add_listener(self._on_durable)
        self.cleaner = LogCleaner(self.store, self.clock)
        # Daemon threads, so a script that raises with the engine open still
        # exits; _close_at_exit closes what is left open.
        self._background = threading.Thread(
            target=self._background_loop, name="tidelog-engine", daemon=True
        )
        self._background.start()
        _open_engines.add(self)
        log.info(
            "engine open: %d topics, %d partitions, leader epoch %d, %d batch headers "
            "replayed, %.2f s",
            len(self._topics),
            len(self._by_stream),
            self.leader_epoch,
            replayed,
            clock.monotonic() - started,
        )

    def _load_topic(self, meta: TopicMeta) -> Topic:
        config = TopicConfig(meta.configs, self.topic_defaults)
        topic = Topic(meta, config, [])
        for streams in meta.streams:
            topic.partitions.append(self._load_partition(topic, streams))
        self._topics[meta.name] = topic
        return topic

    def _load_partition(self, topic: Topic, streams: tuple[int, int]) -> Partition:
        for stream_id in streams:
            self.store.open_stream(stream_id, 0)
        partition = Partition(
            self.store,
            topic.name,
            len(topic.partitions),
            streams,
            topic.config,
            self.leader_epoch,
            clock=self.clock,
        )
        self._by_stream[partition.stream_id] = partition
        partition.verify_transaction = self._verify_transaction
        return partition

    def _verify_transaction(self, topic: str, partition: int, producer_id: int, epoch: int) -> None:
        self.transactions.verify(topic, partition, producer_id, epoch)

    def _open_state_log(self, name: str) -> StateLog:
        """The engine's own state log ``name`` (docs/engine-format.md)."""
        with _store_errors():
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

    # -- topics ------------------------------------------------------------------

    def create_topic(
        self,
        name: str,
        partitions: int | None = None,
        configs: Mapping[str, object] | None = None,
        *,
        replication_factor: int = 1,
        validate_only: bool = False,
    ) -> TopicDescription:
        """Creates a topic; Kafka's rules for names, partition counts and configs."""
        new = NewTopic(name, partitions, configs, replication_factor)
        result = self.create_topics([new], validate_only=validate_only)[0]
        if isinstance(result, EngineError):
            raise result
        return result

    def create_topics(
        self, topics: Sequence[NewTopic], *, validate_only: bool = False
    ) -> list[TopicDescription | EngineError]:
        """Creates many topics at once: one manifest commit for all their
        streams and one catalog record naming them all, so after a crash
        either every one of them exists or none does. Per topic, in order:
        its description, or the error that refused it (the others are
        created regardless). A name given twice is refused the second time
        (TopicExists). A store failure raises, and then none was created."""
        results: list[TopicDescription | EngineError | None] = [None] * len(topics)
        checked: list[tuple[int, str, int, dict[str, str]]] = []
        for i, topic in enumerate(topics):
            try:
                checked.append((i, topic.name, *self._check_new_topic(topic)))
            except EngineError as error:
                results[i] = error
        created: list[tuple[int, Topic]] = []
        with self._lock, collector_paused(len(checked) >= _MANY_TOPICS):
            self._check_open()
            fresh: list[tuple[int, str, int, dict[str, str]]] = []
            taken: set[str] = set()
            for i, name, count, overrides in checked:
                if name in self._topics or name in taken:
                    results[i] = TopicExists(name)
                elif validate_only:
                    results[i] = self._describe_new(name, count, overrides)
                else:
                    taken.add(name)
                    fresh.append((i, name, count, overrides))
            if fresh:
                ids = iter(self._create_streams(2 * sum(count for _, _, count, _ in fresh)))
                created_ms = self.clock.time_ms()
                metas = [
                    TopicMeta(
                        name,
                        uuid.uuid4().bytes,
                        overrides,
                        [(next(ids), next(ids)) for _ in range(count)],
                        created_ms,
                    )
                    for _, name, count, overrides in fresh
                ]
                wire = [meta.to_wire() for meta in metas]
                self._append_catalog(
                    ["create_topic", wire[0]] if len(wire) == 1 else ["create_topics", wire]
                )
                topics_now = self.catalog.state.topics
                created = [(i, self._load_topic(topics_now[name])) for i, name, _, _ in fresh]
        with collector_paused(len(created) >= _MANY_TOPICS):
            for i, loaded in created:
                results[i] = self._describe(loaded)
        if created:
            if len(created) == 1:
                log.info("created topic %s", created[0][1].name)
            else:
                log.info("created %d topics", len(created))
        return [r for r in results if r is not None]

    def _check_new_topic(self, topic: NewTopic) -> tuple[int, dict[str, str]]:
        """The topic's partition count and config overrides, by Kafka's rules."""
        count = (
            self.config.default_partitions if topic.partitions in (None, -1) else topic.partitions
        )
        assert count is not None
        _check_topic_name(topic.name)
        if is_internal_topic(topic.name):
            raise TopicExists(topic.name)  # Kafka's: it exists, as Metadata says
        if count < 1:
            raise InvalidPartitions(f"a topic needs at least 1 partition, not {count}")
        if topic.replication_factor not in (1, -1):
            raise InvalidReplicationFactor(
                f"replication factor {topic.replication_factor}: this engine is one node, "
                "its durability comes from the WAL and object storage"
            )
        return count, normalize_all(topic.configs or {})

    def _describe_new(self, name: str, count: int, overrides: dict[str, str]) -> TopicDescription:
        config = TopicConfig(overrides, self.topic_defaults)
        parts = [PartitionInfo(i, 0, 0, self.leader_epoch) for i in range(count)]
        return TopicDescription(name, bytes(16), parts, config.describe())

    def delete_topic(self, name: str) -> None:
        error = self.delete_topics([name])[0]
        if error is not None:
            raise error

    def delete_topics(self, names: Sequence[str]) -> list[EngineError | None]:
        """Deletes many topics at once: one catalog record naming them all,
        then one manifest commit deleting all their streams. Per name, in
        order: None, or the error that refused it (UnknownTopic; a name given
        twice is unknown the second time). A store failure raises."""
        results: list[EngineError | None] = []
        deleted: list[Topic] = []
        with self._lock:
            self._check_open()
            for name in names:
                topic = self._topics.get(name)
                if topic is None or topic in deleted:
                    results.append(UnknownTopic(name))
                else:
                    results.append(None)
                    deleted.append(topic)
            if not deleted:
                return results
            gone = [topic.name for topic in deleted]
            self._append_catalog(
                ["delete_topic", gone[0]] if len(gone) == 1 else ["delete_topics", gone]
            )
            for topic in deleted:
                del self._topics[topic.name]
                for partition in topic.partitions:
                    self._by_stream.pop(partition.stream_id, None)
        for topic in deleted:
            self.groups.on_topic_deleted(topic.name)
        streams = [
            stream_id
            for topic in deleted
            for partition in topic.partitions
            for stream_id in (partition.stream_id, partition.state_stream_id)
        ]
        # The topics are gone once the catalog says so; streams left behind
        # by a failure here are deleted at the next open (no topic names them).
        with contextlib.suppress(S3StreamError):
            self.store.delete_streams(streams)
        if len(gone) == 1:
            log.info("deleted topic %s", gone[0])
        else:
            log.info("deleted %d topics", len(gone))
        return results

    def create_partitions(self, name: str, total: int, *, validate_only: bool = False) -> None:
        """Grows a topic to ``total`` partitions (Kafka never shrinks one)."""
        error = self.create_partitions_many([(name, total)], validate_only=validate_only)[0]
        if error is not None:
            raise error

    def create_partitions_many(
        self, totals: Sequence[tuple[str, int]], *, validate_only: bool = False
    ) -> list[EngineError | None]:
        """Grows many topics at once, each to its total: one manifest commit
        for all the new streams and one catalog record (all or nothing after
        a crash). Per topic, in order: None, or the error that refused it
        (UnknownTopic; InvalidPartitions for a total that does not grow the
        topic, or a topic given twice). A store failure raises."""
        results: list[EngineError | None] = []
        growing: list[tuple[Topic, int]] = []
        with self._lock, collector_paused(len(totals) >= _MANY_TOPICS):
            self._check_open()
            for name, total in totals:
                topic = self._topics.get(name)
                current = 0 if topic is None else len(topic.partitions)
                if topic is None:
                    results.append(UnknownTopic(name))
                elif any(grown is topic for grown, _ in growing):
                    results.append(InvalidPartitions(f"topic {name} is given twice"))
                elif total <= current:
                    results.append(
                        InvalidPartitions(
                            f"topic {name} has {current} partitions; it can only grow, "
                            f"not to {total}"
                        )
                    )
                else:
                    results.append(None)
                    growing.append((topic, total - current))
            if validate_only or not growing:
                return results
            ids = iter(self._create_streams(2 * sum(count for _, count in growing)))
            added = [
                (topic, [(next(ids), next(ids)) for _ in range(count)]) for topic, count in growing
            ]
            wire = [[topic.name, [list(pair) for pair in pairs]] for topic, pairs in added]
            self._append_catalog(
                ["add_partitions", *wire[0]] if len(wire) == 1 else ["add_partitions_many", wire]
            )
            for topic, pairs in added:
                for pair in pairs:
                    topic.partitions.append(self._load_partition(topic, pair))
        return results

    def alter_configs(
        self,
        name: str,
        configs: Mapping[str, object | None],
        *,
        incremental: bool = True,
        validate_only: bool = False,
    ) -> None:
        """Sets (or, with None, removes) topic config overrides. Not
        incremental: the given configs replace every override (AlterConfigs)."""
        changes: dict[str, str | None] = {
            key: None if value is None else normalize(key, value) for key, value in configs.items()
        }
        with self._lock:
            self._check_open()
            topic = self._topic(name)
            if not incremental:
                for key in topic.meta.configs:
                    changes.setdefault(key, None)
            if validate_only:
                return
            self._append_catalog(["alter_configs", name, changes])
            topic.config = TopicConfig(topic.meta.configs, self.topic_defaults)
            for partition in topic.partitions:
                partition.configure(topic.config)

    # Reads of the topic map take no lock: it is changed only under the
    # engine's lock, a topic goes in whole (partitions loaded) and a lookup
    # or a list() of it is one step under the GIL. So produce, fetch and
    # Metadata never wait behind a long change, such as creating thousands
    # of topics.

    def list_topics(self) -> list[str]:
        return sorted(list(self._topics))

    def describe_topic(self, name: str) -> TopicDescription:
        return self._describe(self._topic(name))

    def _describe(self, topic: Topic) -> TopicDescription:
        parts = [
            PartitionInfo(p.index, p.log_start_offset, p.high_watermark, self.leader_epoch)
            for p in topic.partitions
        ]
        return TopicDescription(topic.name, topic.meta.topic_id, parts, topic.config.describe())

    def has_topic(self, name: str) -> bool:
        return name in self._topics

    def topic_shape(self, name: str) -> tuple[bytes, int]:
        """A topic's id and partition count (it is never auto-created here)."""
        topic = self._topic(name)
        return topic.meta.topic_id, len(topic.partitions)

    def topic_config(self, name: str) -> TopicConfig:
        return self._topic(name).config

    def partition_count(self, name: str) -> int:
        """Partitions of a topic (created first if auto_create_topics is on)."""
        if name not in self._topics:
            self.partition(name, 0, auto_create=True)
        return len(self._topic(name).partitions)

    def _topic_infos(self) -> dict[str, TopicInfo]:
        """Every topic's id and partition count, for consumer groups; read
        without the engine's lock (the group coordinator calls it under its
        own), from a copy made in one step."""
        return {
            name: TopicInfo(topic.meta.topic_id, len(topic.partitions))
            for name, topic in list(self._topics.items())
        }

    def topic_id(self, name: str) -> bytes:
        return self._topic(name).meta.topic_id

    def _create_streams(self, count: int) -> list[int]:
        with _store_errors():
            return self.store.create_streams(count)

    def _append_catalog(self, record: list[Any]) -> None:
        with _store_errors():
            self.catalog.append(record)

    def _topic(self, name: str) -> Topic:
        topic = self._topics.get(name)
        if topic is None:
            raise UnknownTopic(name)
        return topic

    def partition(self, topic: str, partition: int, *, auto_create: bool = False) -> Partition:
        """The partition's leader. An unknown topic raises UnknownTopic unless
        ``auto_create`` and auto_create_topics are on: only produce and
        metadata create topics, as in Kafka; a fetch or an offset lookup
        racing a deletion must not bring the topic back."""
        found = self._topics.get(topic)  # a dict read needs no lock; creating one does
        if found is None:
            with self._lock:
                found = self._topics.get(topic)
                if found is None:
                    if auto_create and is_internal_topic(topic):
                        raise InvalidTopic(append_refusal(topic))
                    if not (auto_create and self.config.auto_create_topics) or self._closed:
                        raise UnknownTopic(topic)
                    self.create_topic(topic)
                    found = self._topics[topic]
        if not 0 <= partition < len(found.partitions):
            raise UnknownPartition(topic, partition, len(found.partitions))
        return found.partitions[partition]

    # -- producing -----------------------------------------------------------------

    def submit(
        self,
        topic: str,
        partition: int,
        records: bytes | bytearray | memoryview,
        *,
        remote: bool | None = None,
    ) -> Future[AppendResult]:
        """Appends record batches (Kafka's v2 format) to a partition; the
        future resolves once they are durable: in the local WAL, or in an
        object committed to the object store if the topic's
        ``tidelog.ack.durability`` is ``remote`` (``remote`` overrides it).
        Validation errors raise here; ``Fenced`` once another engine owns
        the storage.

        A bytearray or writable memoryview is rewritten in place (offsets,
        leader epoch) and stored without a copy: it must not change after.
        """
        self._check_open()
        leader = self.partition(topic, partition, auto_create=True)
        with _store_errors():
            result, stored = leader.submit(records, remote)
        if stored is None:  # a retry: answered once the original is durable
            return self._retry_durable(leader, result, remote)
        done: Future[AppendResult] = Future()
        done.set_running_or_notify_cancel()

        def durable(future: Future[int]) -> None:
            error = future.exception()
            _settle(done, result, None if error is None else _translate(error))

        stored.add_done_callback(durable)
        return done

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
    ) -> Coroutine[Any, Any, AppendResult]:
        """Like submit, from a running event loop: the batches are validated
        and appended now, in call order (validation errors raise here), and
        the returned coroutine, which must be awaited, finishes once they
        are durable. Back-pressure from a full log cache is waited for in
        that coroutine, never by blocking the loop."""
        self._check_open()
        leader = self.partition(topic, partition, auto_create=True)
        with _store_errors():
            result, stored = leader.submit_async(records, remote)
        return self._durable_async(leader, result, stored, remote)

    async def _durable_async(
        self,
        leader: Partition,
        result: AppendResult,
        stored: Coroutine[Any, Any, int] | None,
        remote: bool | None,
    ) -> AppendResult:
        if stored is not None:
            with _store_errors():
                await stored
            return result
        return await asyncio.wrap_future(self._retry_durable(leader, result, remote))

    def _retry_durable(
        self, leader: Partition, result: AppendResult, remote: bool | None
    ) -> Future[AppendResult]:
        """A producer's retry of a batch already appended: answered once the
        original is as durable as the topic's acknowledgements promise."""
        done: Future[AppendResult] = Future()
        done.set_running_or_notify_cancel()
        wait_remote = leader.config.remote_acks if remote is None else remote

        def locally_durable(error: BaseException | None) -> None:
            if error is not None or not wait_remote:
                _settle(done, result, error)
                return
            try:
                uploaded = self.store.when_remote(leader.stream_id, result.last_offset + 1)
            except S3StreamError as failure:
                _settle(done, result, _translate(failure))
                return
            uploaded.add_done_callback(
                lambda f: _settle(done, result, _translate_optional(f.exception()))
            )

        self._when_durable(leader, result.last_offset, locally_durable)
        return done

    def _when_durable(
        self, leader: Partition, offset: int, callback: Callable[[BaseException | None], None]
    ) -> None:
        """Calls ``callback(None)`` once ``offset`` is below the high watermark
        (at once if it is), or ``callback(error)`` if the engine closes first."""
        with self._offset_waiters_lock:
            if leader.high_watermark <= offset:
                self._offset_waiters.setdefault(leader.stream_id, []).append((offset, callback))
                return
        callback(None)

    def init_producer_id(self) -> tuple[int, int]:
        """A new idempotent producer: (producer id, epoch)."""
        self._check_open()
        with _store_errors():
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
        stable offset, with the aborted transactions among them."""
        committed = _read_committed(isolation_level)
        self._check_open()
        with _store_errors(), _damage_at(topic, partition, offset):
            return self.partition(topic, partition).fetch(offset, max_bytes, committed)

    async def fetch_async(
        self,
        topic: str,
        partition: int,
        offset: int,
        max_bytes: int = 1024 * 1024,
        isolation_level: str = READ_UNCOMMITTED,
    ) -> PartitionFetch:
        committed = _read_committed(isolation_level)
        self._check_open()
        with _store_errors(), _damage_at(topic, partition, offset):
            return await self.partition(topic, partition).fetch_async(offset, max_bytes, committed)

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
        with _store_errors():
            return offset_lookup.list_offset(leader, timestamp, committed)

    def delete_records(self, topic: str, partition: int, offset: int) -> int:
        """DeleteRecords: moves the log start to ``offset`` (-1: the high
        watermark); returns the new log start offset."""
        self._check_open()
        with _store_errors():
            leader = self.partition(topic, partition)
            return leader.delete_records(offset, self.config.producer_id_expiration_ms)

    def offsets(self, topic: str, partition: int) -> tuple[int, int]:
        """(log start offset, high watermark)."""
        leader = self.partition(topic, partition)
        return leader.log_start_offset, leader.high_watermark

    # -- waiting for data ------------------------------------------------------------

    def _on_durable(self, streams: set[int]) -> None:
        """The store's listener: some streams grew. Wakes waiting consumers."""
        if self._offset_waiters:
            self._wake_offset_waiters(streams)
        if self._sync_waiters:
            with self._data_arrived:
                self._data_arrived.notify_all()
        if self._async_waiters:
            for stream_id in streams:
                waiters = self._async_waiters.pop(stream_id, None)
                for waiter in waiters or ():
                    waiter.get_loop().call_soon_threadsafe(_wake, waiter)

    def _wake_offset_waiters(self, streams: set[int]) -> None:
        ready = []
        with self._offset_waiters_lock:
            for stream_id in streams:
                waiting = self._offset_waiters.get(stream_id)
                leader = self._by_stream.get(stream_id)
                if not waiting or leader is None:
                    continue
                high_watermark = leader.high_watermark
                ready += [callback for offset, callback in waiting if offset < high_watermark]
                waiting[:] = [(o, c) for o, c in waiting if o >= high_watermark]
        for callback in ready:
            callback(None)

    def _has_data(self, positions: Mapping[TopicPartition, int]) -> bool:
        for (topic, partition), offset in positions.items():
            try:
                leader = self.partition(topic, partition)
            except EngineError:
                return True  # let the caller's fetch report it
            if leader.high_watermark > offset or leader.log_start_offset > offset:
                return True
        return not positions

    def wait_for_data(self, positions: Mapping[TopicPartition, int], timeout: float) -> bool:
        """Blocks until one of the partitions has data at or after its
        position, or ``timeout`` seconds pass; True if there is data."""
        deadline = clock.monotonic() + timeout
        with self._data_arrived:
            self._sync_waiters += 1
            try:
                while not self._has_data(positions):
                    remaining = deadline - clock.monotonic()
                    if remaining <= 0 or self._closed:
                        return False
                    self._data_arrived.wait(remaining)
                return True
            finally:
                self._sync_waiters -= 1

    async def wait_for_data_async(
        self, positions: Mapping[TopicPartition, int], timeout: float
    ) -> bool:
        """Like wait_for_data, without blocking the event loop."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        streams = []
        for topic, partition in positions:
            with contextlib.suppress(EngineError):
                streams.append(self.partition(topic, partition).stream_id)
        for stream_id in streams:
            self._async_waiters.setdefault(stream_id, []).append(waiter)
        try:
            if self._has_data(positions):
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiter), timeout)
            return self._has_data(positions)
        finally:
            for stream_id in streams:
                waiting = self._async_waiters.get(stream_id)
                if waiting and waiter in waiting:
                    waiting.remove(waiter)

    # -- background -----------------------------------------------------------------

    def _background_loop(self) -> None:
        next_checkpoint = clock.monotonic() + self.config.checkpoint_interval_s
        next_clean = clock.monotonic() + self.config.cleaner_interval_s
        while not self._stop.wait(0.2):
            now = clock.monotonic()
            try:
                if now >= next_checkpoint:
                    self.checkpoint()
                    next_checkpoint = now + self.config.checkpoint_interval_s
                if now >= next_clean:
                    self.clean()
                    next_clean = clock.monotonic() + self.config.cleaner_interval_s
            except (S3StreamError, EngineError) as error:
                if self.store.fenced:
                    log.error("engine fenced by a newer owner of the storage: %s", error)
                    return
                log.warning("background work failed, will retry: %s", error)
            except Exception:
                log.exception("background work failed, will retry")

    def checkpoint(self) -> None:
        """Checkpoints every partition that changed (producer state, time index)."""
        with self._lock:
            partitions = list(self._by_stream.values())
        pending = [p.checkpoint(self.config.producer_id_expiration_ms) for p in partitions]
        for future in pending:
            if future is not None:
                future.result()

    def clean(self) -> int:
        """Runs the log cleaner over compacted topics; returns partitions cleaned."""
        with self._lock:
            partitions = [
                p for t in self._topics.values() if t.config.compact for p in t.partitions
            ]
        return sum(1 for p in partitions if self.cleaner.clean(p))

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
        with _store_errors():
            self.checkpoint()
            return self.store.flush(timeout)

    def close(self, *, flush: bool = True) -> None:
        """Stops, checkpoints, uploads (if ``flush``) and closes the store."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _open_engines.discard(self)
        self._stop.set()
        self._background.join()
        self.transactions.close()
        self.groups.close()
        with self._data_arrived:
            self._data_arrived.notify_all()
        for waiters in list(self._async_waiters.values()):
            for waiter in waiters:
                waiter.get_loop().call_soon_threadsafe(_wake, waiter)
        with self._offset_waiters_lock:
            pending = [c for waiting in self._offset_waiters.values() for _, c in waiting]
            self._offset_waiters.clear()
        for callback in pending:
            callback(EngineClosed())
        if flush and not self.store.fenced:
            with contextlib.suppress(S3StreamError):
                self.checkpoint()
        self.close_report = self.store.close(flush=flush and not self.store.fenced)
        if self.close_report.uploaded:
            log.info("engine closed")
        else:
            log.warning(
                "engine closed: %d appends (%d bytes) are only in the WAL: %s",
                self.close_report.wal_only_appends,
                self.close_report.wal_only_bytes,
                self.close_report.reason,
            )

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
        if options.get("transactional_id") is not None:
            return TransactionalProducer(self, **options)
        return Producer(self, **options)

    def consumer(self, *topics: str, **options: Any) -> Consumer:
        """An embedded consumer, subscribed to ``topics`` if any are given."""
        consumer = Consumer(self, **options)
        if topics:
            consumer.subscribe(topics)
        return consumer

    def consumer_lag(self, group_id: str) -> dict[TopicPartition, ConsumerLag]:
        """Per partition of every topic the group has committed offsets for
        or subscribes to: committed offset, high watermark and lag."""
        return consumer_lag(self, group_id)

    def topic_partitions(self, topics: Iterable[str]) -> list[TopicPartition]:
        with self._lock:
            return [
                TopicPartition(name, p.index)
                for name in topics
                if name in self._topics
                for p in self._topics[name].partitions
            ]


@atexit.register
def _close_at_exit() -> None:
    """Closes the engines a script left open when the interpreter exits: the
    log cache is uploaded if that finishes within EXIT_CLOSE_TIMEOUT_S in
    all, else the interpreter exits anyway and the next open replays the WAL,
    which holds everything acknowledged."""
    engines = list(_open_engines)
    if not engines:
        return
    closing = threading.Thread(target=_close_all, args=(engines,), name="tidelog-exit", daemon=True)
    closing.start()
    closing.join(EXIT_CLOSE_TIMEOUT_S)
    if closing.is_alive():
        log.warning(
            "%d engine(s) left open did not close within %.0f s at exit; "
            "the WAL holds what was acknowledged, and the next open replays it",
            len(engines),
            EXIT_CLOSE_TIMEOUT_S,
        )


def _close_all(engines: list[Engine]) -> None:
    for engine in engines:
        try:
            engine.close()
        except Exception:
            log.warning("closing an engine left open at exit failed", exc_info=True)


def _settle(done: Future[AppendResult], result: AppendResult, error: BaseException | None) -> None:
    if error is None:
        done.set_result(result)
    else:
        done.set_exception(error)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _read_committed(isolation_level: str) -> bool:
    if isolation_level not in (READ_UNCOMMITTED, READ_COMMITTED):
        raise ValueError(
            f"isolation_level must be {READ_UNCOMMITTED!r} or {READ_COMMITTED!r}, "
            f"not {isolation_level!r}"
        )
    return isolation_level == READ_COMMITTED


def _check_topic_name(name: str) -> None:
    if name in (".", "..") or not _TOPIC_NAME.fullmatch(name):
        raise InvalidTopic(
            f"invalid topic name {name!r}: 1-249 characters of ASCII letters, digits, "
            "'.', '_' and '-', and not '.' or '..'"
        )


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """Raises the engine's error for a stream-store error raised inside."""
    try:
        yield
    except S3StreamError as error:
        raise _translate(error) from error


@contextlib.contextmanager
def _damage_at(topic: str, partition: int, offset: int) -> Iterator[None]:
    """Raises CorruptStoredData, naming the partition and offset, for a
    damaged object met by a read inside."""
    try:
        yield
    except CorruptObject as error:
        raise CorruptStoredData(topic, partition, offset, error.key, error.reason) from error


def _translate_optional(error: BaseException | None) -> BaseException | None:
    return None if error is None else _translate(error)


def _translate(error: BaseException) -> BaseException:
    """The engine's error for a stream-store error."""
    if isinstance(error, EngineError):
        return error
    if isinstance(error, StoreFenced):
        return Fenced(f"another engine opened this storage: {error}")
    if isinstance(error, StoreClosed):
        return EngineClosed()
    if isinstance(error, S3StreamError):
        return StorageError(str(error))
    return error
