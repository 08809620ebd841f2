"""A partition leader: validates batches, assigns offsets, serves reads.

Each partition is two streams of the stream store: its record batches
(stored exactly as produced, with the broker-owned header fields rewritten)
and its state (checkpoints of the producer table, the time index and the
leader epochs, docs/engine-format.md). Nothing here decodes records on the
produce or fetch path: batches are checked and rewritten by ``native`` from
their 61-byte headers. The leader keeps no state that the two streams
cannot rebuild: on open it loads the last checkpoint and replays the batch
headers appended after it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, NamedTuple

import msgpack

import native
from engine import markers
from engine.batch_refusals import batch_error
from engine.catalog import read_payloads
from engine.checkpoint_records import (
    CHANGED,
    CHANGES_VERSION,
    CHECKPOINT_VERSION,
    GONE,
    checkpoints,
    in_parts,
)
from engine.clock import SYSTEM, Clock
from engine.compaction_horizon import CompactionHorizon, widen
from engine.compaction_horizon import from_checkpoint as horizon_from_checkpoint
from engine.config import LONG_MAX, TopicConfig
from engine.errors import (
    CorruptRecord,
    InvalidRecord,
    InvalidTimestamp,
    InvalidTxnState,
    NotInTransaction,
    OffsetOutOfRange,
    RecordTooLarge,
)
from engine.futures import all_done
from engine.gc_pause import CollectorPaused
from engine.header_index import header_indexer
from engine.leader_epochs import as_a_leader_holds_it, end_offset_for_epoch, epoch_for_offset
from engine.partition_txns import AbortedTxn, PartitionTransactions
from engine.producer_state import ProducerStateTable
from engine.provenance import EMBEDDED, Provenance, stamp_batches
from engine.record_errors import log_append_time_refused
from engine.schemas.record_check import NO_REGISTRY, RecordCheck, SchemaSource, record_check
from engine.time_index import TimeIndex
from engine.topic_id import NO_TOPIC_ID
from engine.whole_batches import whole_batches
from native import (
    BatchError,
    BatchHeader,
    Compression,
    NonZeroBaseOffset,
    RecordSpec,
    RejectedRecords,
    TimestampType,
)
from native.buffers import BytesLike
from native.records import (
    CONTROL_BIT,
    LENGTH_PREFIX,
    NO_TIMESTAMP,
    TIMESTAMP_TYPE_BIT,
    TRANSACTIONAL_BIT,
)
from s3stream import (
    AppendTooLarge,
    DurableCall,
    FetchResult,
    NoRoom,
    ReadPending,
    Retention,
    StreamStore,
)
from s3stream import OffsetOutOfRange as StreamOffsetOutOfRange
from s3stream.append_options import PACED, PACED_LATER, UNPACED, ByRemote

FULL_CHECKPOINT_EVERY = 32
"""Incremental checkpoints at least between two full ones (which hold the
producer table and trim the state stream); the incremental ones since a
full one also reach its size in bytes first (docs/design/0117)."""

CHECKPOINT_NEEDED = -1
"""Partition.checkpoint_pending: due now, whatever the bytes appended."""

TransactionVerifier = Callable[[str, int, int, int], None]
"""(topic, partition, producer id, epoch): raises unless that producer has an
open transaction that includes the partition."""

_CODECS = {
    "uncompressed": Compression.NONE,
    "gzip": Compression.GZIP,
    "snappy": Compression.SNAPPY,
    "lz4": Compression.LZ4,
    "zstd": Compression.ZSTD,
}

_REFUSABLE_ATTRIBUTES = CONTROL_BIT | TRANSACTIONAL_BIT | TIMESTAMP_TYPE_BIT
"""A batch's attributes _validate may refuse it for, read one by one only
when one of them is set."""

_new = tuple.__new__


class AppendResult(NamedTuple):
    base_offset: int
    last_offset: int
    log_append_time: int
    """The time the broker wrote into the batches (LogAppendTime topics), else -1."""
    log_start_offset: int
    duplicate: bool = False
    """A retried batch already in the log: these are its original offsets."""


class PartitionFetch(NamedTuple):
    records: list[BytesLike]
    """Stored record batches, as produced (with broker fields rewritten)."""
    next_offset: int
    high_watermark: int
    log_start_offset: int
    last_stable_offset: int = -1
    aborted_transactions: list[AbortedTxn] | None = None
    """read_committed only: aborted transactions overlapping the data."""
    max_inflated: int = native.MAX_INFLATED
    """The most one of the batches may inflate to when decoded (the topic's limit)."""
    read_pending: bool = False
    """No records because the read from object storage had not finished
    when the fetch's wait for it ended (remote_fetch_max_wait_ms): it goes
    on, and a fetch at the same offset soon has them."""


class ProducerInfo(NamedTuple):
    """One producer of a partition, as DescribeProducers lists it."""

    producer_id: int
    producer_epoch: int
    last_sequence: int
    last_timestamp: int
    coordinator_epoch: int
    current_txn_start_offset: int
    """The first offset of its open transaction here, -1 if none."""


class OffsetAndTimestamp(NamedTuple):
    offset: int
    timestamp: int


class _SinceFull:
    """The checkpoints since the last full one (which holds the producer
    table): when the next full one is due (docs/design/0117); and where
    the last checkpoint of either kind left the appends, which decides
    when the next one is due (docs/design/0128). One object on the
    partition, not six attributes: past 29 attributes CPython gives each
    instance a dict of its own instead of one sharing its class's keys
    (1.3 KiB more per partition, idle ones included)."""

    __slots__ = ("appended_at", "bytes", "count", "full_bytes", "table_due", "written_ms")

    def __init__(self) -> None:
        self.appended_at = 0
        """The partition's ``bytes_in`` as of the last checkpoint's end:
        what recovery would replay is the bytes appended since."""
        self.written_ms = 0
        """When the last checkpoint was taken (the partition's clock)."""
        self.count = 0
        """Incremental checkpoints appended since the last full one."""
        self.bytes = 0
        """Their bytes, which recovery reads on top of the full one."""
        self.full_bytes = 0
        """Bytes of the last full checkpoint: the producer table, mostly."""
        self.table_due = False
        """The next checkpoint must hold the whole producer table: the
        changes taken since the last one do not describe it (a leader's
        sequences forgotten, or a checkpoint's append failed)."""

    def full_due(self) -> bool:
        return self.table_due or (
            self.count >= FULL_CHECKPOINT_EVERY and self.bytes >= self.full_bytes
        )

    def full(self, size: int) -> None:
        self.table_due = False
        self.count = self.bytes = 0
        self.full_bytes = size

    def incremental(self, size: int) -> None:
        self.count += 1
        self.bytes += size


class Partition:
    def __init__(
        self,
        store: StreamStore,
        topic: str,
        index: int,
        streams: tuple[int, int],
        config: TopicConfig,
        leader_epoch: int,
        clock: Clock = SYSTEM,
        topic_id: bytes = NO_TOPIC_ID,
    ) -> None:
        self.store = store
        self._clock = clock
        """Stamps log-append times, producer activity and time-index entries."""
        self.topic = topic
        self.topic_id = topic_id
        """The id of the topic this leader serves (NO_TOPIC_ID: not known): a
        topic created again under the same name gets new leaders and id."""
        self.index = index
        self.stream_id, self.state_stream_id = streams
        self.leader_epoch = leader_epoch
        self.lock = threading.Lock()
        self.producers = ProducerStateTable()
        self.time_index = TimeIndex(4096)
        self.leader_epochs: list[tuple[int, int]] = []
        """(epoch, first offset written in it), oldest first."""
        self.cleaned_offset = 0
        """Offsets below this were compacted by the log cleaner."""
        self.compaction_horizon: CompactionHorizon | None = None
        """What the log cleaner removed (None: nothing yet); see engine/compaction_horizon.py."""
        self.checkpointed_end = -1
        self.durable_checkpoint_end = 0
        """The producer table below this offset is in a durable checkpoint: the
        cleaner may drop batches only below it (recovery replays headers after)."""
        self._dirty = False
        """State that only a checkpoint records changed (the cleaned offset)."""
        self._since_full = _SinceFull()
        # The longer interval counts from the leader's start, not the epoch.
        self._since_full.written_ms = clock.time_ms()
        self.txns = PartitionTransactions()
        self.verify_transaction: TransactionVerifier | None = None
        """The transaction coordinator's check for transactional batches."""
        self.schema_source: SchemaSource = NO_REGISTRY
        """Where the topic's schema checks find schemas (the broker's registry)."""
        self.bytes_in = 0
        self.records_in = 0
        """Appended, counted per append from the batch headers (engine/metrics.py)."""
        self.bytes_out = 0
        """Stored batch bytes fetched (engine/metrics.py)."""
        self.largest_batch_appended = 0
        """The largest record batch appended since this leader opened (bytes;
        0: none yet): a consumer's guess at the batches it will read before
        it has seen one (engine/client/poll_steps.py, FetchPlanned)."""
        self.deleted = False
        """Its topic was deleted (TopicRegistry.remove): a client that kept
        this leader looks the partition up again, and finds the topic gone
        or created anew under the same name (another leader)."""
        self.configure(config)

    def __repr__(self) -> str:
        return f"Partition({self.topic}-{self.index})"

    def configure(self, config: TopicConfig) -> None:
        self.config = config
        self.record_check: RecordCheck | None = record_check(
            self.topic, config.key_schema, config.value_schema, config.compact
        )
        """The topic's schema rules (None: records are never decoded for them)."""
        self.time_index.interval_bytes = config.index_interval_bytes
        retention = Retention()
        if config.delete:
            retention = Retention(
                ms=config.retention_ms if config.retention_ms >= 0 else None,
                bytes=config.retention_bytes if config.retention_bytes >= 0 else None,
            )
        self.store.set_retention(self.stream_id, retention)
        names = config.index_headers
        indexer = header_indexer(names, inflation_limit(config)) if names else None
        self.store.set_indexer(self.stream_id, indexer)

    # -- offsets ---------------------------------------------------------------

    @property
    def log_start_offset(self) -> int:
        return self.store.start_offset(self.stream_id)

    @property
    def high_watermark(self) -> int:
        """The end of the durable log: what consumers may read."""
        return self.store.end_offset(self.stream_id)

    @property
    def log_end_offset(self) -> int:
        """The offset the next batch gets (appends not yet durable included)."""
        return self.store.next_offset(self.stream_id)

    @property
    def stored_bytes(self) -> int:
        """The bytes its record batches take as stored, from the log start
        offset (DescribeLogDirs' partition size; StreamStore.stored_bytes)."""
        return self.store.stored_bytes(self.stream_id)

    # -- appending -------------------------------------------------------------

    def submit(
        self,
        data: BytesLike,
        remote: bool | None = None,
        provenance: Provenance | None = None,
        one_batch: bool = False,
    ) -> tuple[AppendResult, Future[int] | None]:
        """Validates and appends; returns the offsets and the store's future
        (None for a duplicate, which is already durable). The future resolves
        once the append is locally durable, or with ``remote`` (the topic's
        ``tidelog.ack.durability`` if None) once it is in a committed object.
        On a ``tidelog.provenance = stamp`` topic the records are stamped
        with ``provenance`` (engine/provenance.py's EMBEDDED if None).
        ``one_batch`` refuses data holding more than one batch (Produce v3+)
        or a batch whose baseOffset is not 0, and drops what follows the one
        batch unframed, as Kafka does."""
        # Accepted under the partition's lock, which Fetch takes on the
        # event loop: the wait for room (the object store slow or down)
        # comes once it is released.
        appended = self._append(data, None, PACED_LATER, remote, provenance, one_batch)
        self.store.wait_for_room()
        return appended

    def submit_then(
        self,
        data: BytesLike,
        then: DurableCall,
        remote: bool | None = None,
        provenance: Provenance | None = None,
        one_batch: bool = False,
    ) -> AppendResult:
        """Like submit, from a running event loop: the store settles
        ``then`` on the loop once the append is durable
        (StreamStore.submit_then). A duplicate (``AppendResult.duplicate``)
        is appended again never, and ``then`` is not settled for it: its
        caller answers it once the original is durable (Acks.submit_then)."""
        return self._append(data, then, PACED, remote, provenance, one_batch)[0]

    def _append(
        self,
        data: BytesLike,
        then: DurableCall | None,
        options: ByRemote,
        remote: bool | None,
        provenance: Provenance | None,
        one_batch: bool,
    ) -> tuple[AppendResult, Future[int] | None]:
        """The append of submit (``then`` None: the store's future is
        returned) or of submit_then (the store settles ``then``)."""
        checked_by = self.record_check
        # One reading of the clock an append, as Kafka's UnifiedLog.append
        # hands LogValidator one ``now`` for the timestamp bounds and the
        # LogAppendTime stamp alike.
        now = self._clock.time_ms()
        buffer, headers = self._validate(data, one_batch, checked_by, now)
        producer_batch = headers[0] if headers[0].producer_id >= 0 else None
        # Any batch of several with a producer id, not only a first one:
        # its sequence and transaction are checked for a lone batch only.
        if len(headers) > 1 and any(header.producer_id >= 0 for header in headers):
            raise InvalidRecord("an idempotent producer sends one batch per partition")
        sent = (buffer, headers, producer_batch)
        stamping = self.config.stamp_provenance
        if stamping:
            # Before offsets and sequences: the stamp keeps every field they
            # read (producer id, epoch, base sequence, record count).
            buffer, headers = self._stamp_provenance(buffer, headers, provenance or EMBEDDED, now)
            producer_batch = headers[0] if producer_batch is not None else None
        stamp = now if self.config.log_append_time else None  # LogAppendTime's broker time
        log_append_time = -1 if stamp is None else stamp
        with self.lock:
            if self.config.stamp_provenance is not stamping:
                # The config changed while this batch was stamped (or not):
                # the governance history says stamping begins or ends at the
                # offset the change found, so the batch follows the config
                # it is stored under (rare: stamped here, under the lock).
                buffer, headers, producer_batch = self._stamped_as_configured(sent, provenance, now)
            if self.record_check is not checked_by and self.record_check is not None:
                # Likewise the schema rules: from the offset a change of
                # them found on, every record stored was checked by them.
                self.record_check.check(buffer, headers, self.schema_source, self.max_inflated)
            if producer_batch is not None:
                duplicate = self.producers.check(producer_batch)
                if duplicate is not None:
                    # Refused as the append would be by a store that can no
                    # longer write (failed, fenced, closed), as Kafka refuses
                    # any write to a failed log dir: the original may never
                    # become durable, and its retry would wait for it to.
                    self.store.check_writable()
                    result = AppendResult(
                        duplicate.first_offset,
                        duplicate.last_offset,
                        -1 if stamp is None else duplicate.timestamp,
                        self.log_start_offset,
                        duplicate=True,
                    )
                    return result, None
                if producer_batch.is_transactional:
                    # Under the lock: a marker for this producer (written
                    # under it too) cannot come between the check and the append.
                    self._verify_transaction(producer_batch)
                elif producer_batch.producer_id in self.txns.ongoing:
                    # Kafka's ProducerAppendInfo: its transaction's abort
                    # could not take such a batch back.
                    raise InvalidTxnState(
                        f"producer {producer_batch.producer_id} has a transaction open on "
                        f"{self.topic}-{self.index}: expected a transactional batch"
                    )
            # One look at the stream for both: an append never moves the
            # start, and a DeleteRecords racing this append may as well
            # land just after its answer was read as just before.
            log_start, base = self.store.append_offsets(self.stream_id)
            offset = base
            max_timestamp = -1
            for header in headers:
                # A CreateTime topic stores a producer's LogAppendTime batch
                # marked CreateTime, as a recompressed one is (Kafka's
                # LogValidator sets the topic's type on every path), and a
                # CreateTime batch with its records' largest timestamp, the
                # header's as validated, whatever the producer claimed.
                # Read once: a NamedTuple field by name is a call of its
                # descriptor on 3.11, and this one was read three times.
                batch_max_timestamp = header.max_timestamp
                native.rewrite_batch(
                    buffer,
                    header.position,
                    offset,
                    self.leader_epoch,
                    stamp,
                    stamp is None,  # create_time, by position: no keyword parsing per batch
                    batch_max_timestamp,
                )
                offset += header.last_offset_delta + 1
                # A compare, not max(): the builtin parses its arguments as
                # keywords, some 700 instructions a call on every append.
                if batch_max_timestamp > max_timestamp:  # noqa: PLR1730
                    max_timestamp = batch_max_timestamp
            last = offset - 1
            wait_remote = self.config.remote_acks if remote is None else remote
            # The batches are checked and their CRCs right (rewrite_batch keeps
            # them so): the WAL's checksum is combined from them, and a large
            # payload is not read a second time for it.
            checksum = (
                native.crc32c_batches(buffer)
                if len(buffer) >= native.CRC_COMBINE_MIN_BYTES
                else None
            )
            # A transaction's first batch is noted open before the store
            # hears of it: stable_offset reads the open transactions without
            # the lock, after the high watermark, and the WAL's thread may
            # move that watermark past this batch as soon as it is submitted.
            opened = (
                producer_batch is not None
                and producer_batch.is_transactional
                and self.txns.on_batch(producer_batch.producer_id, base)
            )
            try:
                # The store's two calls written out, where a partial bound
                # submit_then to ``then``: a partial's call enters the
                # interpreter again from C, and its making is an object more.
                # The buffer is a bytearray where the request's was one: the
                # store keeps it as it is, and nothing writes to it after.
                if then is None:
                    handle = self.store.submit(
                        self.stream_id,
                        base,
                        last,
                        buffer,  # type: ignore[arg-type]
                        options[wait_remote],
                        payload_crc=checksum,
                    )
                else:
                    handle = None
                    self.store.submit_then(
                        then,
                        self.stream_id,
                        base,
                        last,
                        buffer,  # type: ignore[arg-type]
                        options[wait_remote],
                        payload_crc=checksum,
                    )
            except BaseException:
                if opened and producer_batch is not None:
                    self.txns.forget_open(producer_batch.producer_id)
                raise
            if producer_batch is not None:
                self.producers.update(producer_batch, base, now, stamp)
            if not self.leader_epochs or self.leader_epochs[-1][0] != self.leader_epoch:
                self.leader_epochs.append((self.leader_epoch, base))
            self.time_index.note_append(
                base, max_timestamp if stamp is None else stamp, len(buffer)
            )
            self.bytes_in += len(buffer)
            # The batch's length field, not BatchHeader.size: a property,
            # a Python call an append.
            largest = (
                headers[0].batch_length + LENGTH_PREFIX
                if len(headers) == 1
                else max(h.size for h in headers)
            )
            # One compare an append, not a max() call: the produce path's cost.
            if largest > self.largest_batch_appended:  # noqa: PLR1730
                self.largest_batch_appended = largest
            self.records_in += offset - base
        # tuple.__new__ itself, all five fields: the NamedTuple's own
        # __new__ is a Python call, once an append.
        appended = _new(AppendResult, (base, last, log_append_time, log_start, False))
        return appended, handle

    def _stamped_as_configured(
        self,
        sent: tuple[bytearray | memoryview, list[BatchHeader], BatchHeader | None],
        provenance: Provenance | None,
        now: int,
    ) -> tuple[bytearray | memoryview, list[BatchHeader], BatchHeader | None]:
        buffer, headers, producer_batch = sent
        if self.config.stamp_provenance:
            buffer, headers = self._stamp_provenance(buffer, headers, provenance or EMBEDDED, now)
            producer_batch = headers[0] if producer_batch is not None else None
        return buffer, headers, producer_batch

    def _stamp_provenance(
        self, buffer: BytesLike, headers: list[BatchHeader], provenance: Provenance, now: int
    ) -> tuple[bytearray, list[BatchHeader]]:
        stamped = stamp_batches(
            buffer,
            [(header.position, header.size) for header in headers],
            provenance,
            now,
            max_message_bytes=self.config.max_message_bytes,
            max_inflated=self.max_inflated,
        )
        # The stamp keeps every record's timestamp and the header's claimed
        # maxTimestamp: the one validated (its records' largest) is kept.
        rescanned = native.scan_batches(stamped)
        return stamped, [
            header._replace(max_timestamp=validated.max_timestamp)
            for header, validated in zip(rescanned, headers, strict=True)
        ]

    @property
    def max_inflated(self) -> int:
        """The most one of this topic's compressed batches may inflate to."""
        return inflation_limit(self.config)

    def _validate(
        self, data: BytesLike, one_batch: bool, record_check: RecordCheck | None, now: int
    ) -> tuple[bytearray | memoryview, list[BatchHeader]]:
        """Checks the batches against the format and the topic's rules; returns
        a writable buffer (the caller's if it is one) and the headers.

        As Kafka's LogValidator: a compressed batch's records are inflated
        (bounded) and walked in native code, and records breaking the topic's
        rules (a compacted topic's key, the timestamp bounds) are named one by
        one in the error's record_errors."""
        config = self.config
        min_timestamp, max_timestamp = self._timestamp_bounds(now)
        max_inflated = inflation_limit(config)
        try:
            headers = native.validate_batches(
                data,
                max_inflated=max_inflated,
                min_timestamp=min_timestamp,
                max_timestamp=max_timestamp,
                require_keys=config.compact,
                one_batch=one_batch,
            )
        except BatchError as error:
            if one_batch and not isinstance(error, NonZeroBaseOffset):
                too_large = _past_max_message_bytes(data, config.max_message_bytes)
                if too_large is not None:
                    raise too_large from error
            if isinstance(error, RejectedRecords) and config.compact:
                # Keyless records of a batch refused for its timestamp type
                # too: the others' errors are that type's.
                type_refused = self._type_refused_up_to(data, error.position, max_inflated)
                if type_refused is not None:
                    raise type_refused from error
            raise batch_error(error, self.topic, self.index) from error
        if not headers:
            raise InvalidRecord("a produce request must carry at least one record batch")
        if one_batch and headers[0].batch_length + LENGTH_PREFIX < len(data):  # its size
            # Bytes after the one batch too short to be another: Kafka's
            # UnifiedLog.trimInvalidBytes drops them, and so no offset, WAL
            # record or stored byte is ever made of them here either.
            data = memoryview(data)[: headers[0].size]
        max_message_bytes = config.max_message_bytes
        for header in headers:
            if LENGTH_PREFIX + header.batch_length > max_message_bytes:
                raise RecordTooLarge(header.size, max_message_bytes)
            if header.attributes & _REFUSABLE_ATTRIBUTES:  # else none of these applies
                if header.is_control:
                    raise InvalidRecord("clients may not append control batches")
                if header.is_transactional and header.producer_id < 0:
                    raise InvalidRecord("a transactional batch needs a producer id")
                # Kafka's LogValidator.validateTimestamp: a LogAppendTime
                # topic refuses a batch marked LogAppendTime, and so does a
                # CreateTime topic when its records read no time (each reads
                # the batch's maxTimestamp, -1 here); else it is kept and
                # marked CreateTime (rewrite_batch's create_time).
                if self._type_refused(header):
                    batch = memoryview(data)[header.position : header.position + header.size]
                    refused = log_append_time_refused(batch, max_inflated)
                    assert refused is not None  # no record's error is its key's here
                    raise refused
        if record_check is not None:  # governance: between validation and append
            record_check.check(data, headers, self.schema_source, max_inflated)
        codec = self._recompress_to(headers) if config.compression_type in _CODECS else None
        if codec is not None:
            buffer = self._recompress(data, headers, codec)
            return buffer, native.validate_batches(buffer, max_inflated=max_inflated)
        if isinstance(data, bytearray) or (isinstance(data, memoryview) and not data.readonly):
            return data, headers
        # Batches are rewritten in place: bytes, a read-only view or a
        # ByteSlice (native.untracked_view's) is copied first.
        return bytearray(data), headers

    def _type_refused(self, header: BatchHeader) -> bool:
        """Kafka's LogValidator.validateTimestamp refuses a batch marked
        LogAppendTime on a LogAppendTime topic, and on a CreateTime one when
        its records read no time (each reads the batch's maxTimestamp, -1
        here); else it is kept and marked CreateTime (rewrite_batch's
        create_time)."""
        return header.timestamp_type == TimestampType.LOG_APPEND_TIME and (
            self.config.log_append_time or header.max_timestamp == NO_TIMESTAMP
        )

    def _type_refused_up_to(
        self, data: BytesLike, position: int, max_inflated: int
    ) -> InvalidTimestamp | None:
        """The refusal, record by record (keyless ones for their key), of
        the first batch up to the one at ``position`` that its timestamp
        type refuses, as Kafka validates batch after batch; None if none is
        or every record of it is keyless."""
        view = memoryview(data).cast("B")
        # Up to the end of the batch at position: those before it were
        # framed and checked already, those after it not.
        end = position + LENGTH_PREFIX + int.from_bytes(view[position + 8 : position + 12], "big")
        for header in native.scan_batches(view[:end]):
            if self._type_refused(header):
                batch = view[header.position : header.position + header.size]
                return log_append_time_refused(batch, max_inflated, f"{self.topic}-{self.index}")
        return None

    def _timestamp_bounds(self, now: int) -> tuple[int | None, int | None]:
        """The record timestamps the topic accepts at ``now`` (None: no
        bound); LogAppendTime topics overwrite them, so accept any."""
        config = self.config
        before, after = config.timestamp_before_max_ms, config.timestamp_after_max_ms
        if config.log_append_time or (before == LONG_MAX and after == LONG_MAX):
            return None, None
        # Compares, not max() and min(): a topic's defaults bound every
        # append an hour ahead, and each builtin parses its arguments as
        # keywords (some 700 instructions a call).
        low = None if before == LONG_MAX else now - before
        if low is not None and low < -LONG_MAX - 1:
            low = -LONG_MAX - 1
        high = None if after == LONG_MAX else now + after
        if high is not None and high > LONG_MAX:
            high = LONG_MAX
        return low, high

    def _recompress_to(self, headers: Sequence[BatchHeader]) -> int | None:
        wanted = _CODECS.get(self.config.compression_type)
        if wanted is None or all(h.compression == wanted for h in headers):
            return None
        return int(wanted)

    def _recompress(self, data: BytesLike, headers: Sequence[BatchHeader], codec: int) -> bytearray:
        """Re-encodes batches with the topic's compression.type (a Kafka broker
        does the same when a topic names a codec other than 'producer')."""
        view = memoryview(data)
        out = bytearray()
        for header in headers:
            batch = view[header.position : header.position + header.size]
            # Validated already: keys are there if the topic needs them.
            records = native.decode_records(batch, max_inflated=self.max_inflated)
            out += native.encode_batch(
                [RecordSpec(r.timestamp, r.key, r.value, r.headers) for r in records],
                compression=codec,
                producer_id=header.producer_id,
                producer_epoch=header.producer_epoch,
                base_sequence=header.base_sequence,
                is_transactional=header.is_transactional,
                timestamp_type=TimestampType.CREATE_TIME,
            )
        return out

    def _verify_transaction(self, header: BatchHeader) -> None:
        if self.verify_transaction is None:
            raise NotInTransaction(
                f"producer {header.producer_id} has no open transaction on "
                f"{self.topic}-{self.index}"
            )
        self.verify_transaction(self.topic, self.index, header.producer_id, header.producer_epoch)

    # -- transactions --------------------------------------------------------------

    @property
    def last_stable_offset(self) -> int:
        """Where read_committed consumers stop: the first offset of the
        earliest transaction not yet durably ended (or the log start, if
        that is past it), or the high watermark."""
        return self.read_offsets()[2]

    def read_offsets(self) -> tuple[int, int, int]:
        """(log start offset, high watermark, last stable offset), read
        together: one look at the store instead of one per offset (a
        Fetch asks this of every partition it names)."""
        log_start, high_watermark = self.watermarks()
        return log_start, high_watermark, self.stable_offset(log_start, high_watermark)

    def watermarks(self) -> tuple[int, int]:
        """(log start offset, high watermark), read together: one look at
        the store."""
        return self.store.offsets(self.stream_id)

    def stable_offset(self, log_start: int, high_watermark: int) -> int:
        """The last stable offset with the log at these offsets (read by
        watermarks() just before)."""
        txns = self.txns
        if not txns.ongoing and not txns.completing:
            # No transaction open or completing: nothing holds it below the
            # high watermark (what first_unstable_offset answers), read
            # without the lock a Fetch would otherwise take per partition.
            # Sound on another thread's append because the watermark was
            # read first and a writer notes a transaction open before its
            # batch reaches the store (_append), and completing before no
            # longer open (PartitionTransactions.on_marker): a watermark
            # that covers a transactional batch finds its transaction here.
            return high_watermark
        with self.lock:
            return self.txns.first_unstable_offset(high_watermark, log_start)

    def write_marker(
        self, producer_id: int, producer_epoch: int, coordinator_epoch: int, commit: bool
    ) -> Future[int]:
        """Appends a transaction marker for the producer; returns the store's
        future (resolved once the marker is durable)."""
        now = self._clock.time_ms()
        stamp = now if self.config.log_append_time else None
        buffer = bytearray(
            markers.encode(producer_id, producer_epoch, coordinator_epoch, commit, now)
        )
        with self.lock:
            base = self.store.next_offset(self.stream_id)
            native.rewrite_batch(buffer, 0, base, self.leader_epoch, stamp)
            # Never waits: under the lock Fetch takes on the event loop, which
            # a wait for room (the object store down) would hold. Refused past
            # the headroom (NoRoom, nothing changed): the completion is
            # tried again, and writing a marker again is harmless.
            handle = self.store.submit(self.stream_id, base, base, bytes(buffer), UNPACED)
            self.producers.end_transaction(
                producer_id, producer_epoch, now, coordinator_epoch, now if stamp is None else stamp
            )
            self.txns.on_marker(producer_id, base, commit)
            if not self.leader_epochs or self.leader_epochs[-1][0] != self.leader_epoch:
                self.leader_epochs.append((self.leader_epoch, base))
            self.time_index.note_append(base, now, len(buffer))
            # A batch a restart replays like any other (it ends a transaction
            # the last checkpoint holds open): it counts toward the next one.
            self.bytes_in += len(buffer)
        return handle

    def describe_producers(self) -> list[ProducerInfo]:
        with self.lock:
            return [
                ProducerInfo(
                    entry.producer_id,
                    entry.epoch,
                    entry.last_seq,
                    entry.last_timestamp,
                    entry.coordinator_epoch,
                    self.txns.ongoing.get(entry.producer_id, -1),
                )
                for entry in self.producers.producers.values()
            ]

    def aborted_transactions(self, start: int, end: int) -> list[AbortedTxn]:
        with self.lock:
            return self.txns.aborted_between(start, end)

    def forget_aborted(self, entries: set[AbortedTxn]) -> None:
        """Drops aborted-index entries whose markers the log cleaner removes;
        the next checkpoint records it."""
        with self.lock:
            self.txns.forget(entries)
            self._dirty = True

    # -- reading -----------------------------------------------------------------

    def fetch(self, offset: int, max_bytes: int, read_committed: bool = False) -> PartitionFetch:
        """Stored batches from the one holding ``offset``, up to ``max_bytes``
        (at least one batch if there is data at ``offset``); with
        ``read_committed``, only batches below the last stable offset, and
        the aborted transactions among them."""
        stable = self.last_stable_offset
        try:
            result = self.store.fetch(self.stream_id, offset, max_bytes)
        except StreamOffsetOutOfRange as error:
            return self._not_durable_yet(offset, stable, read_committed, error)
        return self._fetched(result, offset, max_bytes, stable, read_committed)

    def fetch_bounded(
        self, offset: int, max_bytes: int, read_committed: bool = False
    ) -> PartitionFetch:
        """fetch, waiting for a read from objects at most
        remote_fetch_max_wait_ms, as fetch_async does: past it, no records
        and ``read_pending`` (Engine.fetch; the engine's own readers, which
        must read on, use fetch)."""
        stable = self.last_stable_offset
        try:
            result = self.store.fetch_bounded(self.stream_id, offset, max_bytes)
        except StreamOffsetOutOfRange as error:
            return self._not_durable_yet(offset, stable, read_committed, error)
        except ReadPending:
            return self._read_pending(offset, stable, read_committed)
        return self._fetched(result, offset, max_bytes, stable, read_committed)

    async def fetch_async(
        self,
        offset: int,
        max_bytes: int,
        read_committed: bool = False,
        last_stable: int | None = None,
        *,
        cold: bool = False,
    ) -> PartitionFetch:
        """``last_stable``: the last stable offset, if the caller read it
        (with read_offsets) since its last await; it only grows, so one
        read before the data's stands for it (see _fetched). ``cold``: the
        caller's fetch_hot has just answered None, so the read goes to the
        object straight away (StreamStore.fetch_cold)."""
        stable = self.last_stable_offset if last_stable is None else last_stable
        read = self.store.fetch_cold if cold else self.store.fetch_async
        try:
            result = await read(self.stream_id, offset, max_bytes)
        except StreamOffsetOutOfRange as error:
            return self._not_durable_yet(offset, stable, read_committed, error)
        except ReadPending:
            return self._read_pending(offset, stable, read_committed)
        return self._fetched(result, offset, max_bytes, stable, read_committed)

    def fetch_hot(
        self, offset: int, max_bytes: int, read_committed: bool, last_stable: int
    ) -> PartitionFetch | None:
        """fetch_async's answer, made at once, if the store needs no object
        read for it (StreamStore.fetch_hot); None if it does. ``last_stable``
        as fetch_async takes it."""
        try:
            result = self.store.fetch_hot(self.stream_id, offset, max_bytes)
        except StreamOffsetOutOfRange as error:
            return self._not_durable_yet(offset, last_stable, read_committed, error)
        if result is None:
            return None
        return self._fetched(result, offset, max_bytes, last_stable, read_committed)

    def _read_pending(self, offset: int, stable: int, read_committed: bool) -> PartitionFetch:
        """Kafka's DelayedRemoteFetch, expired: the partition's local read
        result, which holds no records, error NONE."""
        log_start, high_watermark = self.store.offsets(self.stream_id)
        nothing = self._nothing(offset, high_watermark, log_start, stable, read_committed)
        return nothing._replace(read_pending=True)

    def _not_durable_yet(
        self, offset: int, stable: int, read_committed: bool, error: StreamOffsetOutOfRange
    ) -> PartitionFetch:
        """The answer to a fetch the store found out of its range: nothing,
        if ``offset`` is past the high watermark but not past the log end
        (appended, not yet durable: Kafka's LocalLog.read answers such a
        fetch empty, as one at the high watermark), else OffsetOutOfRange.
        The high watermark may have passed ``offset`` since the store
        looked: still nothing, and the next fetch reads it. The error
        carries the offsets read here, of this partition's stream: the
        Fetch handler answers them, and a lookup by name after it could
        find another topic's (deleted and created again)."""
        log_start, high_watermark = self.store.offsets(self.stream_id)
        if not log_start <= offset <= self.log_end_offset:
            raise OffsetOutOfRange(
                self.topic, self.index, offset, log_start, high_watermark
            ) from error
        return self._nothing(offset, high_watermark, log_start, stable, read_committed)

    def _nothing(
        self, offset: int, high_watermark: int, log_start: int, stable: int, read_committed: bool
    ) -> PartitionFetch:
        """An answer with no records, the next fetch at ``offset``."""
        return PartitionFetch(
            [],
            offset,
            high_watermark,
            log_start,
            min(stable, high_watermark),
            [] if read_committed else None,
            max_inflated=self.max_inflated,
        )

    def _fetched(
        self, result: FetchResult, offset: int, max_bytes: int, stable: int, read_committed: bool
    ) -> PartitionFetch:
        batches, next_offset = whole_batches(result.batches, offset, max_bytes, result.next_offset)
        # The last stable offset is read before the data: it only grows, so
        # every batch below it is settled whenever the data was read.
        if not read_committed:
            payloads = [batch.payload for batch in batches]
            self.bytes_out += sum(map(len, payloads))
            return PartitionFetch(
                payloads,
                next_offset,
                result.end_offset,
                result.start_offset,
                stable,
                max_inflated=self.max_inflated,
            )
        # Cut at a stored batch: the LSO is a transaction's first batch or
        # the high watermark, both where an append begins.
        kept = [batch for batch in batches if batch.end_offset <= stable]
        next_offset = kept[-1].end_offset if kept else offset
        payloads = [batch.payload for batch in kept]
        self.bytes_out += sum(map(len, payloads))
        return PartitionFetch(
            payloads,
            next_offset,
            result.end_offset,
            result.start_offset,
            stable,
            self.aborted_transactions(offset, next_offset),
            max_inflated=self.max_inflated,
        )

    def _out_of_range(self, offset: int) -> OffsetOutOfRange:
        return OffsetOutOfRange(
            self.topic, self.index, offset, self.log_start_offset, self.high_watermark
        )

    def offset_for_timestamp(
        self, timestamp: int, include_control: bool = False
    ) -> OffsetAndTimestamp | None:
        """The first record whose timestamp is >= ``timestamp`` (None: no such
        record yet); transaction markers count only with ``include_control``.
        Starts from the time index, so it reads at most about one index
        interval of batches before the answer."""
        start = self.log_start_offset
        with self.lock:
            hint = self.time_index.start_for(timestamp)
        offset = max(start, hint if hint is not None else start)
        end = self.high_watermark
        while offset < end:
            try:
                fetched = self.fetch(offset, 1024 * 1024)
            except OffsetOutOfRange:
                offset = self.log_start_offset  # retention moved the start meanwhile
                continue
            for payload in fetched.records:
                found = self._first_at_or_after(payload, offset, timestamp, include_control)
                if found is not None:
                    return found
            if fetched.next_offset <= offset:
                break
            offset = fetched.next_offset
        return None

    def delete_records(self, offset: int, expiration_ms: int) -> int:
        """Moves the log start to ``offset`` (-1: the high watermark); returns it.

        Producer state outlives the records (as in Kafka since KIP-360), so a
        checkpoint goes first: recovery replays batch headers only from the
        log start, and the batches being deleted could not be replayed."""
        high_watermark = self.high_watermark
        if offset == -1:
            offset = high_watermark
        if not 0 <= offset <= high_watermark:
            raise self._out_of_range(offset)
        if offset > self.durable_checkpoint_end:
            written = self.checkpoint(expiration_ms)
            if written is not None:
                written.result()
        self.store.trim(self.stream_id, offset)
        with self.lock:
            self.time_index.drop_before(offset)
        return self.log_start_offset

    # -- checkpoints and recovery ------------------------------------------------

    @property
    def unsaved_bytes(self) -> int:
        """Batch bytes appended since the last checkpoint's end (after a
        recovery, the bytes it replayed count too): what a recovery now
        would replay."""
        return self.bytes_in - self._since_full.appended_at

    def checkpoint_pending(self, now_ms: int, max_interval_ms: int) -> int:
        """The bytes appended since the last checkpoint, or CHECKPOINT_NEEDED
        when one is due whatever they are (docs/design/0128): state only a
        checkpoint records changed (the cleaned offset, expired producers,
        a log start moved past the last checkpoint, a refused checkpoint's
        changes), the table must be written whole, or something was
        appended and ``max_interval_ms`` passed since the last checkpoint.
        One call a partition at every look of the engine's thread: plain
        attributes only, no store."""
        since = self._since_full
        if self._dirty or since.table_due:
            return CHECKPOINT_NEEDED
        unsaved = self.bytes_in - since.appended_at
        if unsaved and now_ms - since.written_ms >= max_interval_ms:
            return CHECKPOINT_NEEDED
        return unsaved

    def note_log_start_moved(self) -> None:
        """Retention moved the log start: past the last checkpoint, recovery
        could not replay the producers' sequences from below it, so the
        next look checkpoints. Not under the lock (the store's listener
        calls this, and appends take the store's locks under ours); a
        checkpoint that clears the flag meanwhile ends past the new start."""
        if self.log_start_offset > max(self.checkpointed_end, 0):
            self._dirty = True

    def checkpoint(
        self, expiration_ms: int | None = None, wait_s: float | None = None
    ) -> Future[int] | None:
        """Appends the producer table, new time-index entries and leader epochs
        as of the log end to the state stream, if anything changed; returns
        the store's future (None if there was nothing to write). Producers
        idle longer than ``expiration_ms`` (if given) are forgotten first.
        A full checkpoint is waited for before the stream is trimmed to it:
        ``wait_s`` at most if given (TimeoutError past it, the stream then
        left as it is), for a caller whose own wait is bounded."""
        with self.lock:
            end = self.store.next_offset(self.stream_id)
            if end == 0:
                # Nothing was ever appended: there is no state to record,
                # and a checkpoint per new partition would cost thousands of
                # appends after a large CreateTopics, and again at each start.
                return None
            now = self._clock.time_ms()
            if end == self.checkpointed_end and not self.time_index.unsaved and not self._dirty:
                self._saved_up_to(now)
                return None
            self._dirty = False
            if expiration_ms is not None:
                self.producers.expire(now, expiration_ms, keep=self.txns.ongoing)
            self.time_index.drop_before(self.log_start_offset)
            self.txns.drop_before(self.log_start_offset)
            full = self._since_full.full_due()
            # The producer table's copy and its packing make some six objects
            # per producer, with the lock held that appends and Fetch take on
            # the event loop: collections set off meanwhile would walk the
            # whole heap several times over (gc_pause.py). The copy goes
            # before the collector resumes (reference counting frees it).
            with CollectorPaused():
                record = {
                    "v": CHECKPOINT_VERSION if full else CHANGES_VERSION,
                    "end": end,
                    "full": full,
                    "index": self.time_index.all_entries()
                    if full
                    else self.time_index.unsaved_entries(),
                    "ti": self.time_index.state(),
                    "epochs": [list(e) for e in self.leader_epochs],
                    "cleaned": self.cleaned_offset,
                    "horizon": None
                    if self.compaction_horizon is None
                    else self.compaction_horizon.to_wire(),
                    "txns": self.txns.to_wire(),
                }
                if full:
                    record["producers"] = self.producers.to_wire()
                else:
                    # Only the producers changed since the checkpoint before:
                    # recovery applies every one since the full one in turn,
                    # so the bytes written follow the batches appended, not
                    # the table (docs/design/0117).
                    record[CHANGED], record[GONE] = self.producers.changes_to_wire()
                payload = msgpack.packb(record, use_bin_type=True)
                del record
            offset = self.store.next_offset(self.state_stream_id)
            # Never waits, as a marker: under the lock Fetch takes.
            try:
                try:
                    future = self.store.submit(
                        self.state_stream_id, offset, offset, payload, UNPACED
                    )
                except AppendTooLarge:
                    # Refused before anything changed: past one record (a
                    # producer table without end), it goes in parts.
                    future = self._submit_parts(offset, end, payload)
            except (NoRoom, AppendTooLarge):
                # Refused: what it would record is still to write, and the
                # checkpoint before stays in force (parts appended before a
                # refused one are a run never completed, which no reader
                # takes); a restart replays the batches since that one.
                self._dirty = True
                raise
            self.time_index.mark_saved()
            # Taken only once appended: a refused checkpoint's changes go in
            # the next one, as a refused table did.
            self.producers.take_changes()
            self.checkpointed_end = end
            self._saved_up_to(now)
            if full:
                self._since_full.full(len(payload))
            else:
                self._since_full.incremental(len(payload))
            checkpointed: Future[int] = Future()
            checkpointed.set_running_or_notify_cancel()
            # After the counts above: an append already failed runs this at
            # once, and its call for the table must not be undone by them.
            future.add_done_callback(lambda done: self._checkpoint_durable(done, end, checkpointed))
        if full:
            # Older checkpoints go once the full one is durable (trim needs it
            # below the stream's durable end); not under the lock: it waits.
            checkpointed.result(wait_s)
            self.store.trim(self.state_stream_id, offset)
        return checkpointed

    def _saved_up_to(self, now: int) -> None:
        """Notes (under the lock, so no append in between) that the appends
        so far are checkpointed: the next checkpoint is due by what comes
        after them."""
        self._since_full.appended_at = self.bytes_in
        self._since_full.written_ms = now

    def _submit_parts(self, offset: int, end: int, payload: bytes) -> Future[int]:
        """Appends a checkpoint too large for one record in parts from
        ``offset`` (docs/engine-format.md, "Checkpoints in parts"); the
        future resolves once every part is durable."""
        parts = in_parts(self.state_stream_id, payload, end, self.store.max_append_bytes)
        return all_done(
            [
                self.store.submit(self.state_stream_id, at, at, part, UNPACED)
                for at, part in enumerate(parts, offset)
            ]
        )

    def recover(self) -> int:
        """Rebuilds the leader's state from the state stream and the batches
        after the last checkpoint; returns how many batches were replayed."""
        end = self.high_watermark
        replay_from = self.log_start_offset
        # Bytes of the state stream read so far: the sizes of the full
        # checkpoint and of those after it decide when the next full one is
        # due, as they would have had the leader gone on.
        read = 0

        def unpacked(payload: BytesLike) -> Any:
            nonlocal read
            read += len(payload)
            return msgpack.unpackb(payload, raw=False, strict_map_key=False)

        # One record decoded at a time: a checkpoint of format 4 holds the
        # whole producer table, so the stream may be many times one
        # checkpoint (and one in parts many times one record).
        records = (unpacked(payload) for payload in read_payloads(self.store, self.state_stream_id))
        taken = 0
        for record in checkpoints(records, self):
            if record["end"] > end:
                break  # cannot happen for a prefix of the WAL; never trust it anyway
            self.time_index.load(record["index"], record["full"])
            self.time_index.restore(record["ti"])
            if record["v"] == CHANGES_VERSION:
                self.producers.apply_changes(record[CHANGED], record[GONE])
                self._since_full.incremental(read - taken)
            else:
                self.producers = ProducerStateTable.from_wire(record["producers"])
                self._since_full.full(read - taken)
            taken = read
            self.leader_epochs = [(e, o) for e, o in record["epochs"]]
            self.cleaned_offset = record["cleaned"]
            self.compaction_horizon = horizon_from_checkpoint(record)
            # Format 1 predates transactions: a partition then had none.
            txns = record.get("txns")
            self.txns = (
                PartitionTransactions() if txns is None else PartitionTransactions.from_wire(txns)
            )
            replay_from = max(record["end"], self.log_start_offset)
            self.checkpointed_end = self.durable_checkpoint_end = record["end"]
        self.time_index.mark_saved()
        if self.checkpointed_end < replay_from:
            # Retention dropped batches no checkpoint covers: their producers'
            # last sequences are unknown, so their next batches may start
            # anywhere (Kafka's rule for a producer it has no entry for);
            # epochs still hold.
            self.forget_sequences()
        replayed = replayed_bytes = 0
        offset = replay_from
        now = self._clock.time_ms()
        while offset < end:
            fetched = self.fetch(offset, 4 * 1024 * 1024)
            for payload in fetched.records:
                headers = native.scan_batches(payload)
                if not headers or headers[-1].last_offset < offset:
                    continue
                for header in headers:
                    if header.is_control:
                        self._replay_marker(payload, header, now)
                    elif header.producer_id >= 0:
                        self.producers.update(header, header.base_offset, now)
                        if header.is_transactional:
                            self.txns.on_batch(header.producer_id, header.base_offset)
                    epoch = header.partition_leader_epoch
                    if not self.leader_epochs or self.leader_epochs[-1][0] < epoch:
                        self.leader_epochs.append((epoch, header.base_offset))
                self.time_index.note_append(
                    headers[0].base_offset, max(h.max_timestamp for h in headers), len(payload)
                )
                replayed += len(headers)
                replayed_bytes += len(payload)
            if fetched.next_offset <= offset:
                break
            offset = fetched.next_offset
        # What was replayed is still not in a checkpoint: it counts toward
        # the next one's bytes, so a restart never doubles what the one
        # after it replays (docs/design/0128); the interval counts from now.
        self._since_full.appended_at = self.bytes_in - replayed_bytes
        self._since_full.written_ms = now
        return replayed

    def _replay_marker(self, payload: BytesLike, header: BatchHeader, now: int) -> None:
        batch = memoryview(payload)[header.position : header.position + header.size]
        marker = markers.decode(batch)
        if marker is None:
            return
        self.producers.end_transaction(
            header.producer_id,
            header.producer_epoch,
            now,
            marker.coordinator_epoch,
            header.max_timestamp,
        )
        self.txns.on_marker(header.producer_id, header.base_offset, marker.commit, durable=True)

    def _checkpoint_durable(self, done: Future[int], end: int, checkpointed: Future[int]) -> None:
        """Notes a durable checkpoint before its caller's future resolves, so
        the cleaner sees it as soon as the caller does."""
        error = done.exception()
        if error is None:
            self.durable_checkpoint_end = max(self.durable_checkpoint_end, end)
            checkpointed.set_result(end)
        else:
            # The changes it took may be missing from the stream: the table
            # the next one holds does not depend on them.
            self._since_full.table_due = True
            checkpointed.set_exception(error)

    def forget_sequences(self) -> None:
        """Forgets every producer's batches (their epochs stay): its next
        batch may start at any sequence; the next checkpoint holds the table."""
        for entry in self.producers.producers.values():
            entry.batches.clear()
        self._since_full.table_due = True

    def expire_producers(self, expiration_ms: int) -> int:
        """Forgets producers idle longer than ``expiration_ms`` (but those with
        an open transaction), as a checkpoint does before it is taken, on a
        partition nothing is written to as well (Kafka expires them on a
        timer, not on appends); the next checkpoint records it. Returns how
        many."""
        with self.lock:
            now = self._clock.time_ms()
            expired = self.producers.expire(now, expiration_ms, keep=self.txns.ongoing)
            if expired:
                self._dirty = True
        return expired

    def note_cleaned(self, end_offset: int) -> None:
        """The log cleaner compacted everything below ``end_offset``."""
        with self.lock:
            self.cleaned_offset = end_offset
            self._dirty = True

    def note_compaction_horizon(self, removed: CompactionHorizon) -> Future[int] | None:
        """Widens the compaction horizon by what a cleaning pass is about to
        remove and checkpoints it; the cleaner waits for the returned future
        before it commits the rewrite."""
        with self.lock:
            self.compaction_horizon = widen(self.compaction_horizon, removed)
            self._dirty = True
        return self.checkpoint()

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch: the largest epoch <= ``epoch`` and the end
        offset of that epoch (the start of the next one, or the log end),
        over the history with this leader's own epoch as its latest, as in
        Kafka (engine/leader_epochs.py)."""
        with self.lock:
            end = self.log_end_offset
            epochs = as_a_leader_holds_it(
                self.leader_epochs, self.leader_epoch, self.log_start_offset, end
            )
        return end_offset_for_epoch(epochs, epoch, end)

    def epoch_for_offset(self, offset: int) -> int:
        """The leader epoch that wrote ``offset`` (-1: none), as ListOffsets
        answers it beside an offset it found."""
        with self.lock:
            end = self.log_end_offset
            epochs = as_a_leader_holds_it(
                self.leader_epochs, self.leader_epoch, self.log_start_offset, end
            )
        return epoch_for_offset(epochs, offset)

    def _first_at_or_after(
        self, payload: BytesLike, offset: int, timestamp: int, include_control: bool
    ) -> OffsetAndTimestamp | None:
        view = memoryview(payload)
        for header in native.scan_batches(view):
            if header.last_offset < offset or header.max_timestamp < timestamp:
                continue
            if header.is_control and not include_control:
                continue
            if header.is_control or header.timestamp_type == TimestampType.LOG_APPEND_TIME:
                # A marker batch holds one record; a log-append-time batch's
                # records all carry its max timestamp.
                return OffsetAndTimestamp(max(offset, header.base_offset), header.max_timestamp)
            batch = view[header.position : header.position + header.size]
            try:
                records = native.decode_records(batch, max_inflated=self.max_inflated)
            except BatchError as error:
                # Stored before batches were validated record by record: refuse
                # the search rather than inflate it without bound.
                raise CorruptRecord(
                    f"{self}: the stored batch at offset {header.base_offset} cannot be "
                    f"read: {error}"
                ) from error
            for record in records:
                if record.offset >= offset and record.timestamp >= timestamp:
                    return OffsetAndTimestamp(record.offset, record.timestamp)
        return None


INFLATION_FACTOR = 32
"""A topic's batches may inflate to this many times its max.message.bytes."""

MIN_INFLATION_LIMIT = 1024 * 1024
"""However small max.message.bytes is, a batch may inflate to 1 MiB."""


def inflation_limit(config: TopicConfig) -> int:
    """The most one compressed batch of a topic may inflate to: a budget of
    the topic's, never a size the batch claims (docs/record-batch.md)."""
    limit = INFLATION_FACTOR * config.max_message_bytes
    # A compare, not max(): looked at on every append.
    return limit if limit > MIN_INFLATION_LIMIT else MIN_INFLATION_LIMIT


def _past_max_message_bytes(data: BytesLike, max_message_bytes: int) -> RecordTooLarge | None:
    """The refusal of a Produce partition's framed batch larger than the
    topic's max.message.bytes, which UnifiedLog.analyzeAndValidateRecords
    makes right after the baseOffset's and before the CRC and the
    LogValidator's record walk: so a batch native refused for one of those
    is refused for its size first. Read on that refusal's path alone; None
    where the framing itself refuses the records (its answer stands)."""
    try:
        size = native.produce_batch_size(data)
    except BatchError:
        return None
    return RecordTooLarge(size, max_message_bytes) if size > max_message_bytes else None


def inherited_checkpoint(horizon: CompactionHorizon) -> bytes:
    """A new partition's first checkpoint, holding only the compaction
    horizon it inherits (a fork's, engine/memory/forks.py): written before
    the partition exists, it describes no batch (``end`` 0), so recovery
    still rebuilds everything else by replaying the data stream from its
    log start, as it does for a partition with no checkpoint, and takes
    the horizon from it (docs/engine-format.md)."""
    record = {
        "v": CHECKPOINT_VERSION,
        "end": 0,
        "full": True,
        "index": [],
        "ti": TimeIndex().state(),
        "producers": ProducerStateTable().to_wire(),
        "epochs": [],
        "cleaned": 0,
        "horizon": horizon.to_wire(),
        "txns": PartitionTransactions().to_wire(),
    }
    payload: bytes = msgpack.packb(record, use_bin_type=True)
    return payload


Watched = tuple[Partition, int, int]
"""A partition a wait for data watches (engine/data_waiters.py): the
partition (the one its caller read, not one looked up again by name), the
position waited past (the high watermark the read saw) and the offset the
read was at, which a log start moved past ends the wait (DeleteRecords, retention)."""
