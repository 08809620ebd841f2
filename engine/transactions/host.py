"""What the transaction coordinator needs from the broker core, and no
more: a narrow Protocol that Engine satisfies, so the coordinator never
holds the whole Engine."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from engine.transactions.config import TransactionConfig
from engine.types import TopicPartition

if TYPE_CHECKING:
    from engine.catalog import Catalog
    from engine.clock import Clock
    from engine.groups import GroupCoordinator
    from engine.partition import Partition
    from s3stream import StreamStoreConfig


class TransactionSettings(Protocol):
    """Where the coordinator's settings are (EngineConfig has them)."""

    @property
    def transactions(self) -> TransactionConfig: ...
    @property
    def store(self) -> StreamStoreConfig: ...


class TransactionHost(Protocol):
    """The coordinator's settings, the leader epoch, producer ids, the
    partitions it writes markers to, and the group coordinator that settles
    transactional offsets."""

    @property
    def config(self) -> TransactionSettings: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def leader_epoch(self) -> int: ...
    @property
    def catalog(self) -> Catalog: ...
    @property
    def groups(self) -> GroupCoordinator: ...
    def topic_partitions(self, topics: Iterable[str]) -> list[TopicPartition]: ...
    def partition(
        self,
        topic: str,
        partition: int,
        *,
        auto_create: bool = False,
        may_create: Callable[[str], None] | None = None,
    ) -> Partition: ...
