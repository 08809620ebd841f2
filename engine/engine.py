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
import contextlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, overload

from engine.catalog import Catalog, TopicMeta
from engine.config import TopicConfig, normalize, normalize_all
from engine.consumer import Consumer
from engine.errors import (
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
from engine.groups import ConsumerLag, GroupConfig, GroupCoordinator, consumer_lag
from engine.groups.consumer_group import TopicInfo
from engine.log_cleaner import LogCleaner
from engine.partition import (
    AppendResult,
    OffsetAndTimestamp,
    Partition,
    PartitionFetch,
    now_ms,
)
from engine.producer import Producer
from engine.state_log import StateLog
from engine.transactions.coordinator import TransactionCoordinator
from engine.transactions.producer import TransactionalProducer
from engine.types import PartitionInfo, TopicDescription, TopicPartition
from s3stream import (
    CloseReport,
    ObjectStore,
    S3StreamError,
    StoreClosed,
    StreamStore,
    StreamStoreConfig,
)
from s3stream import Fenced as StoreFenced

log = logging.getLogger("tidelog.engine")

_TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
EARLIEST = -2
LATEST = -1
READ_UNCOMMITTED = "read_uncommitted"
READ_COMMITTED = "read_committed"


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
    # Consumer groups (Kafka's broker settings of these names, with its defaults).
    group_min_session_timeout_ms: int = 6000
    group_max_session_timeout_ms: int = 1_800_000
    group_initial_rebalance_delay_ms: int = 3000
    """A new group waits this long for more members before its first generation."""
    group_max_size: int = 2**31 - 1
    offsets_retention_minutes: float = 10080
    """Offsets of a group that has been empty this long expire (may be fractional)."""
    offsets_retention_check_interval_ms: int = 600_000
    offset_metadata_max_bytes: int = 4096
    # Consumer groups of the KIP-848 protocol (Kafka's group.consumer.* settings).
    group_consumer_session_timeout_ms: int = 45_000
    group_consumer_heartbeat_interval_ms: int = 5000
    group_consumer_assignors: tuple[str, ...] = ("uniform", "range")
    """The server-side assignors members may ask for; the first is the default."""
    group_consumer_max_size: int = 2**31 - 1
    transaction_max_timeout_ms: int = 900_000
    """The longest transaction.timeout.ms a producer may ask for."""
    transactional_id_expiration_ms: int = 604_800_000
    """A transactional id unused this long (and with no open transaction) is forgotten."""
    transaction_abort_timed_out_transaction_cleanup_interval_ms: int = 10_000
    """How often open transactions are checked against their timeout."""
    transaction_remove_expired_transaction_cleanup_interval_ms: int = 3_600_000
    """How often expired transactional ids are removed."""


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

    def __init__(self) -> None:
        raise TypeError("use engine.open(...)")

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str],
        object_store: ObjectStore | str | None = None,
        config: EngineConfig | None = None,
    ) -> Engine:
        """Opens the engine (fencing any other engine on the same storage) and
        recovers every topic from the object store and the local WAL."""
        self = cls.__new__(cls)
        self._init(os.fspath(data_dir), object_store, config or EngineConfig())
        return self

    def _init(
        self, data_dir: str, object_store: ObjectStore | str | None, config: EngineConfig
    ) -> None:
        self.config = config
        self.topic_defaults = normalize_all(config.topic_defaults)
        started = time.monotonic()
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
                GroupConfig.from_settings(config),
                lambda name: len(t.partitions) if (t := self._topics.get(name)) else None,
                topics=self._topic_infos,
            )
            self.transactions = TransactionCoordinator(self, self._open_state_log("transactions"))
        except BaseException:
            if hasattr(self, "groups"):
                self.groups.close()
            self.store.close(flush=False)
            raise
        self.transactions.start()
        self.store.add_listener(self._on_durable)
        self.cleaner = LogCleaner(self.store)
        self._background = threading.Thread(target=self._background_loop, name="tidelog-engine")
        self._background.start()
        log.info(
            "engine open: %d topics, %d partitions, leader epoch %d, %d batch headers "
            "replayed, %.2f s",
            len(self._topics),
            len(self._by_stream),
            self.leader_epoch,
            replayed,
            time.monotonic() - started,
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
            self.store, topic.name, len(topic.partitions), streams, topic.config, self.leader_epoch
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
        count = self.config.default_partitions if partitions in (None, -1) else partitions
        assert count is not None
        _check_topic_name(name)
        if count < 1:
            raise InvalidPartitions(f"a topic needs at least 1 partition, not {count}")
        if replication_factor not in (1, -1):
            raise InvalidReplicationFactor(
                f"replication factor {replication_factor}: this engine is one node, "
                "its durability comes from the WAL and object storage"
            )
        overrides = normalize_all(configs or {})
        with self._lock:
            self._check_open()
            if name in self._topics:
                raise TopicExists(name)
            if validate_only:
                return self._describe_new(name, count, overrides)
            ids = self._create_streams(2 * count)
            meta = TopicMeta(
                name,
                uuid.uuid4().bytes,
                overrides,
                [(ids[2 * i], ids[2 * i + 1]) for i in range(count)],
                now_ms(),
            )
            self._append_catalog(["create_topic", meta.to_wire()])
            self._load_topic(self.catalog.state.topics[name])
        log.info("created topic %s with %d partitions", name, count)
        return self.describe_topic(name)

    def _describe_new(self, name: str, count: int, overrides: dict[str, str]) -> TopicDescription:
        config = TopicConfig(overrides, self.topic_defaults)
        parts = [PartitionInfo(i, 0, 0, self.leader_epoch) for i in range(count)]
        return TopicDescription(name, bytes(16), parts, config.describe())

    def delete_topic(self, name: str) -> None:
        with self._lock:
            self._check_open()
            topic = self._topic(name)
            self._append_catalog(["delete_topic", name])
            del self._topics[name]
            for partition in topic.partitions:
                self._by_stream.pop(partition.stream_id, None)
        self.groups.on_topic_deleted(name)
        for partition in topic.partitions:
            for stream_id in (partition.stream_id, partition.state_stream_id):
                with contextlib.suppress(S3StreamError):
                    self.store.delete_stream(stream_id)
        log.info("deleted topic %s", name)

    def create_partitions(self, name: str, total: int, *, validate_only: bool = False) -> None:
        """Grows a topic to ``total`` partitions (Kafka never shrinks one)."""
        with self._lock:
            self._check_open()
            topic = self._topic(name)
            current = len(topic.partitions)
            if total <= current:
                raise InvalidPartitions(
                    f"topic {name} has {current} partitions; it can only grow, not to {total}"
                )
            if validate_only:
                return
            ids = self._create_streams(2 * (total - current))
            streams = [(ids[2 * i], ids[2 * i + 1]) for i in range(total - current)]
            self._append_catalog(["add_partitions", name, [list(s) for s in streams]])
            for pair in streams:
                topic.partitions.append(self._load_partition(topic, pair))

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

    def list_topics(self) -> list[str]:
        with self._lock:
            return sorted(self._topics)

    def describe_topic(self, name: str) -> TopicDescription:
        with self._lock:
            topic = self._topic(name)
        parts = [
            PartitionInfo(p.index, p.log_start_offset, p.high_watermark, self.leader_epoch)
            for p in topic.partitions
        ]
        return TopicDescription(name, topic.meta.topic_id, parts, topic.config.describe())

    def topic_config(self, name: str) -> TopicConfig:
        with self._lock:
            return self._topic(name).config

    def partition_count(self, name: str) -> int:
        """Partitions of a topic (created first if auto_create_topics is on)."""
        with self._lock:
            if name not in self._topics:
                self.partition(name, 0)
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
        with self._lock:
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

    def partition(self, topic: str, partition: int) -> Partition:
        with self._lock:
            found = self._topics.get(topic)
            if found is None:
                if not self.config.auto_create_topics or self._closed:
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
        leader = self.partition(topic, partition)
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
        leader = self.partition(topic, partition)
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
        with _store_errors():
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
        with _store_errors():
            return await self.partition(topic, partition).fetch_async(offset, max_bytes, committed)

    def list_offset(
        self,
        topic: str,
        partition: int,
        timestamp: int,
        isolation_level: str = READ_UNCOMMITTED,
    ) -> OffsetAndTimestamp:
        """ListOffsets: -2 earliest, -1 latest, else the first offset whose
        timestamp is >= ``timestamp`` (offset -1 if there is none). Read
        committed, the latest offset is the last stable offset, and only
        offsets below it are found by time (as in Kafka)."""
        committed = _read_committed(isolation_level)
        leader = self.partition(topic, partition)
        if timestamp == EARLIEST:
            return OffsetAndTimestamp(leader.log_start_offset, -1)
        end = leader.last_stable_offset if committed else leader.high_watermark
        if timestamp == LATEST:
            return OffsetAndTimestamp(end, -1)
        with _store_errors():
            found = leader.offset_for_timestamp(timestamp)
        return found if found is not None and found.offset < end else OffsetAndTimestamp(-1, -1)

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
        deadline = time.monotonic() + timeout
        with self._data_arrived:
            self._sync_waiters += 1
            try:
                while not self._has_data(positions):
                    remaining = deadline - time.monotonic()
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
        next_checkpoint = time.monotonic() + self.config.checkpoint_interval_s
        next_clean = time.monotonic() + self.config.cleaner_interval_s
        while not self._stop.wait(0.2):
            now = time.monotonic()
            try:
                if now >= next_checkpoint:
                    self.checkpoint()
                    next_checkpoint = now + self.config.checkpoint_interval_s
                if now >= next_clean:
                    self.clean()
                    next_clean = time.monotonic() + self.config.cleaner_interval_s
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
        """An embedded producer (see engine.producer.Producer for options);
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
