"""A producer batch: the records a producer has queued for one partition's
next record batch (Kafka's ProducerBatch), and the futures they resolve."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engine.client.delivery import DeliveryFuture
from engine.types import RecordMetadata
from native import RecordSpec

if TYPE_CHECKING:
    from engine.client.bulk import BulkDelivery

Resolver = DeliveryFuture[RecordMetadata] | asyncio.Future[RecordMetadata]
"""What a queued record resolves once it is durable: a send's future, or a
send_async's asyncio future."""


@dataclass(slots=True)
class ProducerBatch:
    """Records bound for one record batch, cut at ``batch_size`` as they are
    sent (parallel lists: no object per record beyond its spec and future)."""

    since: float
    """When the batch was opened (monotonic seconds), for linger.ms."""
    specs: list[RecordSpec] = field(default_factory=list)
    resolvers: list[Resolver] = field(default_factory=list)
    size: int = 0
    encoded: bytearray | None = None
    """A ``send_many`` batch, encoded when queued (its producer fields are
    written when it is sent); it takes no more records."""
    count: int = 0
    """The records of an encoded batch."""
    bulk: BulkDelivery | None = None
    """The ``send_many`` call an encoded batch belongs to, and its slot there."""
    slot: int = 0

    @property
    def records(self) -> int:
        return self.count if self.encoded is not None else len(self.specs)
