"""A producer batch: the records a producer has queued for one partition's
next record batch (Kafka's ProducerBatch), and the futures they resolve."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from engine.client.delivery import DeliveryFuture
from engine.types import RecordMetadata
from native import RecordSpec

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
