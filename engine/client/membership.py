"""What an embedded consumer and its group membership say to each other:
the member's state, the steps it hands the consumer (revoke, assigned,
rebalancing), the consumer's place in its group, and the typed error of a
group error code the coordinator answered."""

from __future__ import annotations

from concurrent.futures import Future
from enum import Enum
from typing import NamedTuple

from engine.errors import (
    CoordinatorNotAvailable,
    EngineError,
    GroupError,
    NotCoordinator,
    error_class,
)
from engine.protocol.kafka_code import KafkaCode
from engine.types import TopicPartition

CLIENT_HOST = "in-process"
"""What the group's description shows as an embedded member's host."""


def group_error(code: int, message: str) -> EngineError:
    """The typed error of a group error code the coordinator answered."""
    known = KafkaCode.for_value(code)
    if known == KafkaCode.COORDINATOR_NOT_AVAILABLE:
        # The group's write refused for room (the store past its unuploaded
        # headroom, docs/design/0099): retriable, and told apart from the
        # group's own refusals, as the store's NoRoom is everywhere else. A
        # closed coordinator raises GroupCoordinatorClosed before this.
        return CoordinatorNotAvailable(f"{message} (COORDINATOR_NOT_AVAILABLE)")
    cls = error_class(known)
    # NotCoordinator is shared with the transaction coordinator, so it is
    # no GroupError, but a group's answer all the same.
    if cls is not None and issubclass(cls, GroupError | NotCoordinator):
        return cls(message)
    name = known.name if known == code else str(code)
    return GroupError(f"{message} ({name})")


class ConsumerGroupMetadata(NamedTuple):
    """A consumer's place in its group, as Kafka's ConsumerGroupMetadata:
    what a transactional producer commits a consumer's offsets with."""

    group_id: str
    generation_id: int
    member_id: str
    group_instance_id: str | None


class MemberState(Enum):
    UNJOINED = "unjoined"
    JOINING = "joining"
    """JoinGroup sent, not answered yet."""
    SYNCING = "syncing"
    """In the new generation, waiting for its assignment."""
    STABLE = "stable"


class Revoke(NamedTuple):
    """The consumer gives these partitions up (commits their positions
    first, unless they are lost) and calls on_revoke, or on_lost."""

    partitions: list[TopicPartition]
    lost: bool


class Assigned(NamedTuple):
    """A rebalance completed: the consumer's assignment is ``partitions``;
    it revokes ``revoked`` (cooperative) and then adds ``added``."""

    partitions: list[TopicPartition]
    added: list[TopicPartition]
    revoked: list[TopicPartition]


class Rebalancing(NamedTuple):
    """A rebalance is under way; ``done`` resolves when there is something
    for the consumer to do again (or the member failed)."""

    done: Future[None]


Step = Revoke | Assigned | Rebalancing | None
