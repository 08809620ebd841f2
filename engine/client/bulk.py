"""What a ``send_many`` waits on: the batches one call became, and its future.

A call's records are encoded straight into record batches
(``native.encode_records``), one per ``batch_size``, before they are queued;
each batch reports where it was written, and the call's one future resolves
once every batch has: to the ``SentBatch`` list, in the order the batches
were cut (per partition, the call's record order). No object is made per
record, so a call of ten thousand records costs a few dozen objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import struct
from collections.abc import Callable, Sequence

import native
from engine.client.delivery import DeliveryFuture, run_callbacks
from engine.client.partitioner import KeyPartitioner
from engine.types import SentBatch

BulkResolver = DeliveryFuture[list[SentBatch]] | asyncio.Future[list[SentBatch]]
Values = Sequence[bytes | str | None]
"""A call's values or keys: the caller's list or tuple, read in place."""
PartitionRecords = tuple[int, Values, Values | None]
"""One partition's share of a call: its values and keys, in call order."""

_PRODUCER_FIELDS = struct.Struct(">qhi")
"""producerId, producerEpoch and baseSequence: bytes 43 to 57 of a v2 batch."""
_PRODUCER_FIELDS_AT = 43
_CRC_AT = 17
_CRC_START = 21


def set_producer_fields(
    batch: bytearray, producer_id: int, producer_epoch: int, base_sequence: int
) -> None:
    """Writes the producer's id, epoch and the batch's first sequence into an
    encoded batch, and its CRC again: a batch is encoded when it is queued,
    its sequence is only known when it is sent."""
    _PRODUCER_FIELDS.pack_into(
        batch, _PRODUCER_FIELDS_AT, producer_id, producer_epoch, base_sequence
    )
    struct.pack_into(">I", batch, _CRC_AT, native.crc32c(memoryview(batch)[_CRC_START:]))


def group_by_key(
    values: Values, keys: Values, partitions: int, partitioner: KeyPartitioner, sticky: int
) -> list[PartitionRecords]:
    """Keyed records grouped by the partition ``partitioner`` gives each key
    (records it does not hash go to ``sticky``), as send places them: the
    one per-record step of send_many, since the caller's keys decide."""
    groups: dict[int, tuple[list[bytes | str | None], list[bytes | str | None]]] = {}
    for value, key in zip(values, keys, strict=True):
        chosen = partitioner.partition(key.encode() if isinstance(key, str) else key, partitions)
        group = groups.get(sticky if chosen is None else chosen)
        if group is None:
            group = groups[sticky if chosen is None else chosen] = ([], [])
        group[0].append(value)
        group[1].append(key)
    return [(partition, v, k) for partition, (v, k) in groups.items()]


class BulkDelivery:
    """The outcome of one ``send_many`` call, gathered batch by batch.

    Its producer calls ``add_batch`` while cutting the call's records and
    ``batch_done`` (under the producer's condition) as each batch becomes
    durable or fails; the first failure fails the whole call (batches written
    before it stay written, as with a Kafka client's failed batch)."""

    __slots__ = ("_error", "_pending", "_resolver", "_sealed", "_sent")

    def __init__(self, resolver: BulkResolver) -> None:
        self._resolver = resolver
        self._sent: list[SentBatch | None] = []
        self._pending = 0
        self._error: BaseException | None = None
        self._sealed = False

    def add_batch(self) -> int:
        """A slot for one more batch; returns its index."""
        self._sent.append(None)
        self._pending += 1
        return len(self._sent) - 1

    def seal(self) -> Callable[[], None] | None:
        """Every batch is added (call under the producer's condition); returns
        what settles the future if every batch is already done."""
        self._sealed = True
        return self._settle() if self._pending == 0 else None

    def cut_short(self, error: BaseException) -> None:
        """The call's remaining records were not queued (call under the
        producer's condition): the call fails with ``error`` once the batches
        queued before them are done, which stay written."""
        if self._error is None:
            self._error = error

    @property
    def batches(self) -> int:
        return len(self._sent)

    def batch_done(
        self, slot: int, sent: SentBatch | None, error: BaseException | None
    ) -> Callable[[], None] | None:
        """Records one batch's outcome (under the producer's condition);
        returns what settles the call's future, to run once it is released,
        when this was the last batch."""
        if error is not None and self._error is None:
            self._error = error
        self._sent[slot] = sent
        self._pending -= 1
        if self._pending or not self._sealed:
            return None
        return self._settle()

    def _settle(self) -> Callable[[], None]:
        error = self._error
        outcome = [sent for sent in self._sent if sent is not None]
        resolver = self._resolver
        if isinstance(resolver, asyncio.Future):
            loop = resolver.get_loop()

            def settle_async() -> None:
                if resolver.done():
                    return  # the caller gave up waiting; the records are written anyway
                if error is not None:
                    resolver.set_exception(error)
                else:
                    resolver.set_result(outcome)

            def post() -> None:
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
                    loop.call_soon_threadsafe(settle_async)

            return post
        # A DeliveryFuture is settled under the condition its producer holds
        # here; its callbacks run once the caller released it.
        callbacks = resolver.settle(None if error is not None else outcome, error) or []

        return functools.partial(run_callbacks, [(callback, resolver) for callback in callbacks])
