"""The embedded producer: records in, Kafka record batches to the engine.

``send`` queues a record and returns a future of its (partition, offset),
resolved once the record is durable; ``send_many`` queues many records of
one call, encoded straight into batches, with one future for them all
(engine/client/bulk.py). A sender thread turns the queue into
batches, one per partition, of up to ``batch_size`` bytes: while one batch
waits for its group commit, the next fills up, as in Kafka's clients.
Batches carry a producer id and sequences, so the engine's idempotence
checks hold for embedded producers too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, NamedTuple

import native
from engine.authorization import ANONYMOUS, AclOperation
from engine.client.access import Access
from engine.client.bulk import (
    BulkDelivery,
    BulkResolver,
    PartitionRecords,
    Values,
    group_by_key,
    set_producer_fields,
)
from engine.client.delivery import DeliveryFuture, Waits, in_callback, run_callbacks
from engine.client.partitioner import DEFAULT_PARTITIONER, StickyPartitioner, key_partitioner
from engine.client.producer_batch import ProducerBatch, Resolver
from engine.errors import (
    BufferExhausted,
    EngineClosed,
    EngineError,
    FlushInCallback,
    InvalidTxnState,
)
from engine.partition import AppendResult, Partition
from engine.provenance import EMBEDDED_LISTENER, Provenance
from engine.types import Header, RecordMetadata, SentBatch, TopicPartition
from native import Compression, RecordSpec

if TYPE_CHECKING:
    from engine.client.host import ClientHost

log = logging.getLogger("tidelog.producer")

BATCH_OVERHEAD = 61 + 21
"""A batch header plus a record's worst-case framing, for size estimates."""

_new = tuple.__new__

METADATA_MAX_AGE_S = 1.0
"""How long a topic's partition count is trusted before it is looked up again."""
SPACE_WAITER_THREADS = 32
"""Async sends that wait for queue space at once (Python's cap on a default
executor); more wait their turn in the producer's pool, not the loop's."""

_CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


class Producer:
    """Sends records to the engine's topics; thread-safe; use as a context manager."""

    def __init__(
        self,
        engine: ClientHost,
        *,
        batch_size: int = 512 * 1024,
        linger_ms: float = 0.0,
        compression: str | int = "none",
        idempotent: bool = True,
        max_queued_bytes: int = 64 * 1024 * 1024,
        max_block_ms: float = 60_000.0,
        max_in_flight: int = 5,
        partitioner: str = DEFAULT_PARTITIONER,
        principal: str = ANONYMOUS,
        client_id: str | None = None,
    ) -> None:
        self._engine = engine
        self.principal = principal
        """Who this producer writes as: what a ``tidelog.provenance = stamp``
        topic stamps on its records (docs/security.md, docs/governance.md)."""
        self._provenance = Provenance(principal, EMBEDDED_LISTENER, client_id)
        self.partitioner = key_partitioner(partitioner)
        self.batch_size = batch_size
        self.linger_s = linger_ms / 1000
        self.compression = int(
            _CODECS[compression] if isinstance(compression, str) else compression
        )
        Compression(self.compression)  # raises ValueError for a codec Kafka does not define
        self._access = Access(engine.authorizer, principal)
        if idempotent:
            self._access.idempotent_write()
        self.producer_id, self.producer_epoch = (
            engine.init_producer_id() if idempotent else (-1, -1)
        )
        self.max_queued_bytes = max_queued_bytes
        if not 0 <= max_block_ms < float("inf"):
            raise ValueError(f"max_block_ms must be a finite number >= 0, not {max_block_ms}")
        self.max_block_s = max_block_ms / 1000
        """How long a send waits for queue space before BufferExhausted
        (Kafka's max.block.ms)."""
        self.max_in_flight = max_in_flight
        self._sequences: dict[TopicPartition, int] = {}
        self._queues: dict[TopicPartition, deque[ProducerBatch]] = {}
        self._queued_bytes = 0
        self._in_flight = 0
        self._batches_in_flight: dict[TopicPartition, int] = {}
        self._sender_idle = False
        self._space_pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._clock = engine.clock
        """Record timestamps, linger.ms and flush and delivery timeouts run on it."""
        self._waits = Waits(self._changed, self._clock)
        # Waits here are real waits bounded by the clock's remaining time; a
        # clock that jumps (a ManualClock) wakes them to read it again.
        self._clock.on_advance(self._clock_moved)
        self._closed = False
        self._accepting = True
        """Sends are taken (a transactional producer's only in a transaction)."""
        self._flushing = 0
        """How many flush calls are waiting: while any is, partial batches
        are sent at once. A count, not a flag, so that the first flush to
        return does not leave the others' batches to wait out linger_ms."""
        self._sticky = StickyPartitioner(batch_size)
        self._partitions: dict[tuple[str, int], tuple[TopicPartition, Partition]] = {}
        """Each partition sent to, and its leader, whose config says at each
        send whether the broker stamps its records (a topic's config may
        change while the producer writes to it). A leader whose topic was
        deleted is looked up again: the topic may be created anew under the
        same name, with another config, and sends go to the new one."""
        self._stamp_bytes = self._provenance.stamp_size()
        """What a stamp adds to each record: counted in batch sizes on a
        stamp topic, so that a stamped batch still fits max.message.bytes."""
        self._partition_counts: dict[str, tuple[int, float, Partition]] = {}
        """Per topic: its partition count, until when it is trusted, and its
        partition 0, whose ``deleted`` says the topic is gone."""
        self._sender = threading.Thread(
            target=self._send_loop, name="tidelog-producer", daemon=True
        )
        self._sender.start()

    # -- sending -------------------------------------------------------------------

    def send(
        self,
        topic: str,
        value: bytes | str | None,
        key: bytes | str | None = None,
        headers: Sequence[Header] = (),
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> DeliveryFuture[RecordMetadata]:
        """Queues a record; the future resolves to (partition, offset) once it is durable."""
        resolver: DeliveryFuture[RecordMetadata] = DeliveryFuture(self._waits)
        self._enqueue(topic, value, key, headers, partition, timestamp, resolver)
        return resolver

    async def send_async(
        self,
        topic: str,
        value: bytes | str | None,
        key: bytes | str | None = None,
        headers: Sequence[Header] = (),
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> RecordMetadata:
        """Like send, awaited: returns (partition, offset) once the record is durable."""
        loop = asyncio.get_running_loop()
        resolver: asyncio.Future[RecordMetadata] = loop.create_future()
        args = (topic, value, key, headers, partition, timestamp, resolver)
        try:
            self._enqueue(*args, on_loop=True)
        except _QueueFull:  # nothing queued: waits for space off the loop
            await loop.run_in_executor(self._space_waiters(), self._enqueue, *args)
        return await resolver

    def send_many(
        self,
        topic: str,
        values: Values,
        keys: Values | None = None,
        *,
        partition: int | None = None,
        headers: Sequence[Header] = (),
        timestamp: int | None = None,
    ) -> DeliveryFuture[list[SentBatch]]:
        """Queues ``values`` (``keys[i]`` with ``values[i]``), all with one
        timestamp and the same ``headers``; the future resolves to where each
        batch of them was written once all are durable. Records are encoded
        into batches here, without an object per record: the fast way to
        write many records at once."""
        resolver: DeliveryFuture[list[SentBatch]] = DeliveryFuture(self._waits)
        self._enqueue_many(topic, values, keys, partition, headers, timestamp, resolver)
        return resolver

    async def send_many_async(
        self,
        topic: str,
        values: Values,
        keys: Values | None = None,
        *,
        partition: int | None = None,
        headers: Sequence[Header] = (),
        timestamp: int | None = None,
    ) -> list[SentBatch]:
        """Like send_many, awaited: returns the batches once all are durable."""
        loop = asyncio.get_running_loop()
        resolver: asyncio.Future[list[SentBatch]] = loop.create_future()
        rest = self._enqueue_many(
            topic, values, keys, partition, headers, timestamp, resolver, on_loop=True
        )
        if rest is not None:  # the queue filled up: the rest waits for space off the loop
            await loop.run_in_executor(self._space_waiters(), rest)
        return await resolver

    def _enqueue_many(
        self,
        topic: str,
        values: Values,
        keys: Values | None,
        partition: int | None,
        headers: Sequence[Header],
        timestamp: int | None,
        resolver: BulkResolver,
        on_loop: bool = False,
    ) -> Callable[[], object] | None:
        """Queues the call's records; see _queue_parts for ``on_loop``."""
        if self._closed or not self._accepting:
            raise self._refusal()
        # Lists and tuples are read in place by the encoder; anything else
        # is taken as a tuple once (pointers, not records).
        values = values if isinstance(values, list | tuple) else tuple(values)
        if keys is not None:
            keys = keys if isinstance(keys, list | tuple) else tuple(keys)
            if len(keys) != len(values):
                raise ValueError(f"keys has {len(keys)} items for {len(values)} values")
        header_pairs = tuple(headers)
        when = self._clock.time_ms() if timestamp is None else timestamp
        parts = self._split_by_partition(topic, values, keys, partition)
        call = _ManyCall(topic, parts, header_pairs, when, BulkDelivery(resolver))
        return self._queue_parts(call, 0, 0, on_loop)

    def _queue_parts(
        self, call: _ManyCall, first: int, start: int, on_loop: bool
    ) -> Callable[[], object] | None:
        """Queues the call's records from record ``start`` of part ``first``
        on, then seals its delivery. ``on_loop`` (an event loop's thread,
        which must not wait): when the queue is full, returns the rest to
        queue where waiting is allowed."""
        delivery = call.delivery
        try:
            for i in range(first, len(call.parts)):
                part, part_values, part_keys = call.parts[i]
                self._queue_encoded(
                    call.topic,
                    part,
                    part_values,
                    part_keys,
                    call.headers,
                    call.timestamp,
                    delivery,
                    start if i == first else 0,
                    on_loop,
                )
        except _QueueFull as full:
            return functools.partial(self._queue_parts, call, i, full.start, False)
        except (BufferExhausted, EngineClosed, InvalidTxnState) as error:
            if not delivery.batches:
                raise  # nothing of the call was queued: refused as a send is
            with self._changed:
                delivery.cut_short(error)
        with self._changed:
            settle = delivery.seal()
        if settle is not None:
            settle()
        return None

    def _split_by_partition(
        self, topic: str, values: Values, keys: Values | None, partition: int | None
    ) -> list[PartitionRecords]:
        """The call's records per partition, each partition's in call order."""
        if not values:
            return []
        if partition is not None:
            return [(partition, values, keys)]
        count = self._partition_count(topic)
        if count == 1:
            return [(0, values, keys)]
        sticky = self._sticky.partition(topic, count, self.batch_size)
        if keys is None:
            return [(sticky, values, None)]
        return group_by_key(values, keys, count, self.partitioner, sticky)

    def _queue_encoded(
        self,
        topic: str,
        partition: int,
        values: Values,
        keys: Values | None,
        headers: tuple[Header, ...],
        timestamp: int,
        delivery: BulkDelivery,
        start: int = 0,
        on_loop: bool = False,
    ) -> None:
        """Cuts one partition's records from ``start`` on into encoded
        batches and queues them; on the loop, a full queue raises _QueueFull
        at the first record not queued."""
        known_partition = self._partitions.get((topic, partition))
        if known_partition is None or known_partition[1].deleted:
            known_partition = self._leader(topic, partition)
        tp, leader = known_partition
        stamp = self._stamp_bytes if leader.config.stamp_provenance else 0
        while start < len(values):
            limit = self.batch_size
            while True:
                encoded, end = native.encode_records(
                    values,
                    keys,
                    timestamp=timestamp,
                    start=start,
                    max_bytes=limit,
                    headers=headers,
                    compression=self.compression,
                    is_transactional=self._transactional,
                )
                # The broker's stamp grows every record: the stamped batch
                # must still fit, as send's size estimate makes sure.
                over = len(encoded) + (end - start) * stamp - self.batch_size
                if not stamp or over <= 0 or end - start == 1:
                    break
                limit -= over
            size = len(encoded) + (end - start) * stamp
            with self._lock:
                if self._queued_bytes > self.max_queued_bytes:
                    if on_loop:
                        raise _QueueFull(start)
                    self._wait_for_queue_space()
                self._check_still_open()
                queue = self._queues.get(tp)
                if queue is None:
                    queue = self._queues[tp] = deque()
                batch = ProducerBatch(self._clock.monotonic())
                batch.encoded, batch.count, batch.size = encoded, end - start, size
                batch.bulk, batch.slot = delivery, delivery.add_batch()
                queue.append(batch)
                self._queued_bytes += size
                if self._sender_idle:
                    self._changed.notify_all()
            start = end

    def _enqueue(
        self,
        topic: str,
        value: bytes | str | None,
        key: bytes | str | None,
        headers: Sequence[Header],
        partition: int | None,
        timestamp: int | None,
        resolver: Resolver,
        on_loop: bool = False,
    ) -> None:
        """Queues one record; on the loop, a full queue raises _QueueFull
        with nothing queued."""
        if self._closed or not self._accepting:
            raise self._refusal()
        value_bytes = value.encode() if isinstance(value, str) else value
        key_bytes = key.encode() if isinstance(key, str) else key
        header_pairs = tuple(headers) if headers else ()
        # tuple.__new__ skips the NamedTuple's Python-level __new__: this
        # method is the producer's cost per record, so every call counts.
        spec = _new(
            RecordSpec,
            (
                self._clock.time_ms() if timestamp is None else timestamp,
                key_bytes,
                value_bytes,
                header_pairs,
            ),
        )
        size = 21 + (len(value_bytes) if value_bytes else 0)
        if key_bytes:
            size += len(key_bytes)
        if header_pairs:
            size += sum(len(k) + len(v or b"") for k, v in header_pairs)
        if partition is None:
            known = self._partition_counts.get(topic)
            count = (
                known[0]
                if known and known[1] > self._clock.monotonic() and not known[2].deleted
                else self._partition_count(topic)
            )
            if count == 1:
                partition = 0
            else:
                partition = self.partitioner.partition(key_bytes, count)
                if partition is None:
                    partition = self._sticky.partition(topic, count, size)
        known_partition = self._partitions.get((topic, partition))
        if known_partition is None or known_partition[1].deleted:
            known_partition = self._leader(topic, partition)
        tp, leader = known_partition
        if leader.config.stamp_provenance:  # the topic's config now, not when first sent to
            size += self._stamp_bytes
        with self._lock:  # the condition's lock, without its Python-level __enter__
            if self._queued_bytes > self.max_queued_bytes:
                if on_loop:
                    raise _QueueFull(0)
                self._wait_for_queue_space()
            self._check_still_open()
            queue = self._queues.get(tp)
            if queue is None:
                queue = self._queues[tp] = deque()
            # A new batch when the last one is full: a new batch means the
            # sender has something to send (a full batch, or a first one).
            fresh = (
                not queue
                or queue[-1].encoded is not None
                or (queue[-1].size + size > self.batch_size and queue[-1].specs)
            )
            if fresh:
                queue.append(ProducerBatch(self._clock.monotonic()))
            batch = queue[-1]
            batch.specs.append(spec)
            batch.resolvers.append(resolver)
            batch.size += size
            self._queued_bytes += size
            if self._sender_idle and (fresh or batch.size >= self.batch_size):
                self._changed.notify_all()

    def _wait_for_queue_space(self) -> None:
        """Waits (holding the condition's lock) until the queue is back under
        max_queued_bytes; raises BufferExhausted after max_block_ms, as
        Kafka's producer does, so that a caller whose engine takes no
        appends is told rather than blocked for ever."""
        deadline = self._clock.monotonic() + self.max_block_s
        while self._queued_bytes > self.max_queued_bytes and not self._closed:
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                raise BufferExhausted(
                    self._queued_bytes, self.max_queued_bytes, self.max_block_s * 1000
                )
            # A real wait bounded by the clock's remaining time: a clock that
            # jumps wakes it (_clock_moved) to read it again.
            self._changed.wait(min(remaining, 0.5))

    def _check_still_open(self) -> None:
        """Under the condition's lock, just before a record is queued: the
        send's first check may have been passed before a close or the end
        of its transaction (a wait for queue space, or just a thread
        preempted between the two). Closed, a record queued now could
        outlive the sender thread and its future never settle (Kafka's
        BufferPool refuses the same way: "Producer closed while allocating
        memory"); its transaction ended, it would be sent in the next one."""
        if self._closed:
            raise EngineClosed()
        if not self._accepting:
            raise self._refusal()

    def _space_waiters(self) -> ThreadPoolExecutor:
        """The threads in which async sends wait for queue space: the
        producer's own, so that waiting senders never fill the loop's default
        executor, which the engine's own async paths (the appender's
        back-pressure, masked fetches, flush_async, close) wait in too."""
        with self._lock:
            if self._closed:
                raise EngineClosed()  # its pool is shut down
            if self._space_pool is None:
                self._space_pool = ThreadPoolExecutor(
                    SPACE_WAITER_THREADS, thread_name_prefix="tidelog-producer-space"
                )
            return self._space_pool

    def _clock_moved(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _partition_count(self, topic: str) -> int:
        """The topic's partition count, looked up at most once a second (a
        Kafka client refreshes its metadata the same way), and at once when
        the topic was deleted since (as a Kafka client refreshes on
        UNKNOWN_TOPIC_OR_PARTITION): a topic created again under its name
        may have fewer partitions."""
        now = self._clock.monotonic()
        known = self._partition_counts.get(topic)
        if known is None or known[1] < now or known[2].deleted:
            count = self._engine.partition_count(topic, self._access.create_topic)
            # Partition 0 stands for its topic: deleted with it.
            known = self._partition_counts[topic] = (
                count,
                now + METADATA_MAX_AGE_S,
                self._engine.partition(topic, 0),
            )
        return known[0]

    def _leader(self, topic: str, partition: int) -> tuple[TopicPartition, Partition]:
        """Looks the partition's leader up, and keeps it until its topic is
        deleted. Raises for an unknown partition, like a first send to it: a
        send to a deleted topic is refused (or creates it again, where
        produce may create topics) as Kafka's producer sees
        UNKNOWN_TOPIC_OR_PARTITION, then the topic created anew."""
        leader = self._engine.partition(
            topic, partition, auto_create=True, may_create=self._access.create_topic
        )
        known = self._partitions[(topic, partition)] = (TopicPartition(topic, partition), leader)
        return known

    # -- the sender thread ---------------------------------------------------------

    def _send_loop(self) -> None:
        while True:
            with self._changed:
                ready = self._ready_batches()
                while not ready:
                    if self._closed and not self._queues:
                        return
                    self._sender_idle = True
                    self._changed.wait(self._linger_wait())
                    self._sender_idle = False
                    ready = self._ready_batches()
            for tp, batch in ready:
                self._send_batch(tp, batch)

    def _linger_wait(self) -> float | None:
        """Until the oldest sendable queue has lingered enough; None: until a
        send or a durable batch wakes the sender."""
        waiting = [
            q[0].since for tp, q in self._queues.items() if not self._batches_in_flight.get(tp, 0)
        ]
        if not waiting or self.linger_s <= 0:
            return None
        return max(0.0005, min(waiting) + self.linger_s - self._clock.monotonic())

    def _ready_batches(self) -> list[tuple[TopicPartition, ProducerBatch]]:
        """Takes, per partition, its oldest batch if it is full or has
        lingered long enough (any batch when flushing or closing)."""
        now = self._clock.monotonic()
        ready = []
        for tp in list(self._queues):
            queue = self._queues[tp]
            in_flight = self._batches_in_flight.get(tp, 0)
            if in_flight >= self.max_in_flight:
                continue  # records gather here until a batch is durable
            # A partial batch waits while one of its partition is being written
            # (and for linger_ms): the next group commit then carries one large
            # batch rather than many small ones.
            batch = queue[0]
            partial = len(queue) == 1 and batch.encoded is None and batch.size < self.batch_size
            if (
                partial
                and not (self._closed or self._flushing)
                and (in_flight or now - batch.since < self.linger_s)
            ):
                continue
            queue.popleft()
            if not queue:
                del self._queues[tp]
            self._queued_bytes -= batch.size
            self._in_flight += batch.records
            self._batches_in_flight[tp] = in_flight + 1
            ready.append((tp, batch))
        if ready:
            self._changed.notify_all()
        return ready

    def _send_batch(self, tp: TopicPartition, batch: ProducerBatch) -> None:
        sequence = self._sequences.get(tp, 0)
        resolvers = batch.resolvers
        try:
            self._before_send(tp, batch.since)
            self._access.topic(AclOperation.WRITE, tp.topic)  # per batch, as a Produce
            if batch.encoded is not None:
                encoded = batch.encoded
                if self.producer_id >= 0:
                    set_producer_fields(encoded, self.producer_id, self.producer_epoch, sequence)
            else:
                encoded = bytearray(
                    native.encode_batch(
                        batch.specs,
                        compression=self.compression,
                        producer_id=self.producer_id,
                        producer_epoch=self.producer_epoch,
                        base_sequence=sequence if self.producer_id >= 0 else -1,
                        is_transactional=self._transactional,
                    )
                )
            # The topic was looked up when the batch was queued: deleted
            # since, it is created again only where the principal may create
            # it, as at that lookup (Kafka's producer asks again, by metadata).
            future = self._engine.submit(
                tp.topic,
                tp.partition,
                encoded,
                provenance=self._provenance,
                may_create=self._access.create_topic,
            )
        except (EngineError, ValueError) as error:
            self._send_failed(error)
            self._settle_batch(tp, batch, error)
            return
        self._sequences[tp] = (sequence + batch.records) % (2**31)

        def durable(done: Future[AppendResult]) -> None:
            error = done.exception()
            if error is not None:
                self._send_failed(error)
                self._settle_batch(tp, batch, error)
            elif batch.bulk is not None:
                self._settle_batch(tp, batch, done.result().base_offset)
            else:
                base, partition = done.result().base_offset, tp.partition
                written = [
                    _new(RecordMetadata, (partition, base + i)) for i in range(len(resolvers))
                ]
                self._settle(tp, resolvers, written)

        future.add_done_callback(durable)

    # Hooks of a transactional producer (engine/client/transactional_producer.py).
    _transactional = False
    """Batches are sent marked as part of a transaction."""

    def _refusal(self) -> EngineError:
        """Why a send is refused."""
        return EngineClosed()

    def _before_send(self, tp: TopicPartition, since: float) -> None:
        """Called on the sender thread before a batch for ``tp``, opened at
        ``since`` (the clock's monotonic seconds), is encoded."""

    def _send_failed(self, error: BaseException) -> None:
        """A batch failed, before or after it reached the engine."""

    def _settle_batch(
        self, tp: TopicPartition, batch: ProducerBatch, outcome: BaseException | int
    ) -> None:
        """Settles a batch that failed, or a send_many batch written at the
        base offset ``outcome``."""
        if batch.bulk is None:
            assert isinstance(outcome, BaseException)
            self._settle(tp, batch.resolvers, outcome)
            return
        error, sent = None, None
        if isinstance(outcome, BaseException):
            error = outcome
        else:
            sent = SentBatch(tp.partition, outcome, batch.count)
        with self._changed:
            settle = batch.bulk.batch_done(batch.slot, sent, error)
            self._in_flight -= batch.count
            self._batches_in_flight[tp] -= 1
            self._changed.notify_all()
        if settle is not None:
            settle()

    def _settle(
        self,
        tp: TopicPartition,
        resolvers: list[Resolver],
        outcome: BaseException | list[RecordMetadata],
    ) -> None:
        by_loop: dict[
            asyncio.AbstractEventLoop, list[tuple[asyncio.Future[RecordMetadata], int]]
        ] = {}
        callbacks: list[
            tuple[Callable[[DeliveryFuture[RecordMetadata]], None], DeliveryFuture[RecordMetadata]]
        ] = []
        error = outcome if isinstance(outcome, BaseException) else None
        with self._changed:
            for i, resolver in enumerate(resolvers):
                if isinstance(resolver, asyncio.Future):
                    by_loop.setdefault(resolver.get_loop(), []).append((resolver, i))
                else:
                    value = None if error is not None else outcome[i]  # type: ignore[index]
                    pending = resolver.settle(value, error)
                    if pending:
                        callbacks += [(c, resolver) for c in pending]
            self._in_flight -= len(resolvers)
            self._batches_in_flight[tp] -= 1
            self._changed.notify_all()
        if callbacks:
            run_callbacks(callbacks)
        for loop, waiting in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle_async, waiting, outcome)

    def _fail_queued(self, error: BaseException) -> int:
        """Fails every batch still queued (none sent yet) with ``error``,
        at once; returns how many records. Kafka's
        RecordAccumulator.abortUndrainedBatches: what the sender has taken
        is left to finish."""
        with self._changed:
            taken: list[tuple[TopicPartition, ProducerBatch]] = []
            for tp, queue in self._queues.items():
                for batch in queue:
                    # Counted as the sender counts what it takes, so that
                    # settling it is settling a batch in flight.
                    self._queued_bytes -= batch.size
                    self._in_flight += batch.records
                    self._batches_in_flight[tp] = self._batches_in_flight.get(tp, 0) + 1
                    taken.append((tp, batch))
            self._queues.clear()
        for tp, batch in taken:
            self._settle_batch(tp, batch, error)
        return sum(batch.records for _, batch in taken)

    # -- flushing and closing ------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Sends everything queued and waits until it is durable (or failed).
        FlushInCallback from a delivery callback, which runs on the thread
        that would settle what the flush waits for."""
        if in_callback():
            raise FlushInCallback
        return self._flush(timeout)

    def _flush(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        with self._changed:
            self._flushing += 1
            self._changed.notify_all()
            try:
                while self._queues or self._in_flight:
                    remaining = None if deadline is None else deadline - self._clock.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._changed.wait(remaining)
                return True
            finally:
                self._flushing -= 1

    async def flush_async(self, timeout: float | None = None) -> bool:
        return await asyncio.get_running_loop().run_in_executor(None, self.flush, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Sends what is queued, waits for it, and stops the sender. From a
        delivery callback it does not wait (Kafka's close(0) there): the
        callback's thread is the one that would settle what it waits for."""
        if in_callback():
            log.warning("Producer.close() from a delivery callback: closing without waiting")
            timeout = 0
        self._flush(timeout)
        with self._changed:
            self._closed = True
            self._changed.notify_all()
            pool = self._space_pool
        if pool is not None:
            pool.shutdown(wait=False)  # its waiters are woken above and refused
        self._sender.join(timeout)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Producer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)


class _QueueFull(Exception):
    """A send on an event loop's thread found the queue full: the records
    from ``start`` on are to be queued off the loop, where waiting for
    space (up to max_block_ms) blocks no one else."""

    def __init__(self, start: int) -> None:
        super().__init__(start)
        self.start = start


class _ManyCall(NamedTuple):
    """One send_many call's records, split by partition, and its delivery."""

    topic: str
    parts: list[PartitionRecords]
    headers: tuple[Header, ...]
    timestamp: int
    delivery: BulkDelivery


def _settle_async(
    waiting: list[tuple[asyncio.Future[RecordMetadata], int]],
    outcome: BaseException | list[RecordMetadata],
) -> None:
    for resolver, i in waiting:
        if resolver.done():
            continue  # the caller gave up waiting; the record is written anyway
        if isinstance(outcome, BaseException):
            resolver.set_exception(outcome)
        else:
            resolver.set_result(outcome[i])
