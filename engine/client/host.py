"""What the embedded clients need from the broker core: the ``ClientHost``
protocol. ``Engine`` satisfies it; the clients import this, never the
engine, so the core can build clients without an import cycle."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Protocol

from engine.authorization import Authorizer
from engine.clock import Clock
from engine.types import TopicPartition

if TYPE_CHECKING:
    from engine.groups import GroupCoordinator
    from engine.partition import (
        AppendResult,
        OffsetAndTimestamp,
        Partition,
        PartitionFetch,
        Watched,
    )
    from engine.provenance import Provenance
    from engine.transactions.coordinator import TransactionCoordinator


class ClientHost(Protocol):
    """Topics and partitions, appends and reads, waits for new data, and the
    two coordinators, spoken to in process."""

    authorizer: Authorizer
    """What the clients' principals may do (engine/client/access.py)."""

    @property
    def clock(self) -> Clock:
        """What the clients' timeouts run on: poll, delivery, flush, linger,
        and a group member's session, heartbeat and poll interval."""
        ...

    @property
    def closed(self) -> bool: ...
    @property
    def groups(self) -> GroupCoordinator: ...
    @property
    def transactions(self) -> TransactionCoordinator: ...
    def partition(
        self,
        topic: str,
        partition: int,
        *,
        auto_create: bool = False,
        may_create: Callable[[str], None] | None = None,
    ) -> Partition:
        """``may_create`` raises if the asker may not create the unknown
        topic auto-creation would create (Engine.partition)."""
        ...

    def partition_count(
        self, name: str, may_create: Callable[[str], None] | None = None
    ) -> int: ...
    def topic_partitions(self, topics: Iterable[str]) -> list[TopicPartition]: ...
    def topic_leaders(self, name: str) -> Sequence[Partition] | None:
        """A topic's partitions from one look at it (None: no such topic)."""
        ...

    def offsets(self, topic: str, partition: int) -> tuple[int, int]: ...
    def init_producer_id(self) -> tuple[int, int]: ...
    def submit(
        self,
        topic: str,
        partition: int,
        records: bytes | bytearray | memoryview,
        *,
        remote: bool | None = None,
        provenance: Provenance | None = None,
        may_create: Callable[[str], None] | None = None,
    ) -> Future[AppendResult]:
        """``may_create`` as for partition: a topic deleted since the send
        looked it up is created again only if it allows (Engine.submit)."""
        ...

    def fetch_from(
        self, leader: Partition, offset: int, max_bytes: int, isolation_level: str
    ) -> PartitionFetch: ...
    async def fetch_from_async(
        self, leader: Partition, offset: int, max_bytes: int, isolation_level: str
    ) -> PartitionFetch: ...
    def masked_fetch(
        self, topic: str, fetched: PartitionFetch, principal: str
    ) -> PartitionFetch: ...
    def list_offset(
        self,
        topic: str,
        partition: int,
        timestamp: int,
        isolation_level: str = ...,
    ) -> OffsetAndTimestamp: ...
    def wait_for_data(self, positions: Mapping[TopicPartition, int], timeout: float) -> bool: ...
    async def wait_for_data_async(
        self, positions: Mapping[TopicPartition, int], timeout: float
    ) -> bool: ...
    def wait_for_reads(self, watched: Mapping[int, Watched], timeout: float) -> bool: ...
    async def wait_for_reads_async(
        self, watched: Mapping[int, Watched], timeout: float
    ) -> bool: ...
