"""The engine's errors for the stream store's: what a ``StreamStore``
failure becomes when it reaches the engine's callers (Fenced, EngineClosed,
StorageError, StoreWriteFailed for an object-store error under an admin
write, CorruptStoredData naming the partition and offset, StoreUnavailable
naming the partition a read could not be answered for)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING

from engine.errors import (
    AdminTimedOut,
    CoordinatorNotAvailable,
    CorruptStoredData,
    EngineClosed,
    EngineError,
    Fenced,
    RecordListTooLarge,
    StorageError,
    StoreUnavailable,
    StoreWriteFailed,
    UnknownTopic,
)
from s3stream import (
    AppendTooLarge,
    CorruptObject,
    NoRoom,
    ObjectStoreError,
    S3StreamError,
    StoreClosed,
    StoreFailed,
)
from s3stream import Fenced as StoreFenced
from s3stream.errors import DeadlinePassed

if TYPE_CHECKING:
    from engine.partition import Partition

CHECK_THE_STORE = "check its URL, endpoint and credentials, and that it is reachable"
"""The advice for an object-store error that points at them (``misconfigured``)."""


class _StoreErrors:
    """Raises the engine's error for a stream-store error raised inside.

    A class with no state, one instance for every use, rather than a
    generator context manager: every append passes through two of these,
    and a generator's start and finish cost a microsecond each time."""

    __slots__ = ("_caught",)

    def __init__(self, caught: tuple[type[BaseException], ...]) -> None:
        self._caught = caught

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(error, self._caught):
            raise translate(error) from error


_STORE_ERRORS = _StoreErrors((S3StreamError,))
# An object-store error is not an S3StreamError: the manifest's commits
# raise the store's own when it refuses them for good.
_STORE_WRITES = _StoreErrors((S3StreamError, ObjectStoreError))


def store_errors() -> _StoreErrors:
    """Raises the engine's error for a stream-store error raised inside.
    An object store's own error passes: met by a read (opening, verifying)
    it is no refused write, and the caller names it (unanswered_reads, the
    refusal an open is described by)."""
    return _STORE_ERRORS


def store_writes() -> _StoreErrors:
    """store_errors() around the writes an admin change makes on the
    caller's behalf (creating, forking or deleting streams, a cleaned
    object): an object store's own error there is StoreWriteFailed."""
    return _STORE_WRITES


class PartitionRead:
    """damage_at and unanswered_reads in one, as a class: the store's read
    of a partition for every Fetch entry passes through both, and the two
    generators' starts and finishes cost the event loop more than the
    rest of the call (docs/design/0085). What it raises is theirs: an
    object-store error is StoreUnavailable, then damage CorruptStoredData;
    but any error (an Exception, never a cancellation) of a read of a
    partition whose topic was deleted under it is UnknownTopic
    (ReadOfDeleted)."""

    __slots__ = ("leader", "offset")

    def __init__(self, leader: Partition, offset: int) -> None:
        self.leader = leader
        self.offset = offset

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is None:
            return
        leader = self.leader
        _gone_if_deleted(leader, error)
        if isinstance(error, ObjectStoreError):
            raise StoreUnavailable(
                leader.topic,
                leader.index,
                str(error),
                transient=error.transient,
                advice=_advice(error),
            ) from error
        if isinstance(error, CorruptObject):
            raise CorruptStoredData(
                leader.topic, leader.index, self.offset, error.key, error.reason
            ) from error


class ReadOfDeleted:
    """Raises UnknownTopic for any error of a read inside once the
    partition's topic is deleted: its stream deleted between the caller's
    lookup and the read answers StreamNotFound (or an object gone), which
    is no storage failure. Kafka's ReplicaManager answers a partition it no
    longer hosts UNKNOWN_TOPIC_OR_PARTITION (getPartitionOrException), and
    a client refreshes its metadata on it, where KAFKA_STORAGE_ERROR would
    have it retry the same log.

    A class, as PartitionRead is, not a generator context manager: the
    offsets of a partition (Engine.offsets: lag, replay, a consumer's
    reset) pass through it, and a generator's start and finish would
    double their cost."""

    __slots__ = ("leader",)

    def __init__(self, leader: Partition) -> None:
        self.leader = leader

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is not None:
            _gone_if_deleted(self.leader, error)


def answer_over_deletion(leader: Partition, error: BaseException) -> UnknownTopic | None:
    """UnknownTopic when ``error``, met over ``leader`` by a read or an
    append, means its topic was deleted since the caller looked the
    partition up (its stream deleted under it: StreamNotFound, an object
    gone), None when it is the error to answer. The one place the read
    path (ReadOfDeleted, PartitionRead) and the append path (refused_append
    before acceptance, engine/append_settle.py's engine_error after)
    decide it, so a deletion is answered alike on both: Kafka's
    ReplicaManager answers a partition it no longer hosts
    UNKNOWN_TOPIC_OR_PARTITION (getPartitionOrException), on which a client
    refreshes its metadata, where KAFKA_STORAGE_ERROR would have it retry
    the same log (docs/design/0144)."""
    # Exception only: a cancellation (or an interrupt) met over a deleted
    # topic is the caller's, and must reach it as it is.
    if leader.deleted and isinstance(error, Exception):
        return UnknownTopic(leader.topic)
    return None


def refused_append(leader: Partition, error: S3StreamError) -> BaseException:
    """The engine's error for the store's refusal of an append to ``leader``:
    UnknownTopic over a deletion (answer_over_deletion), else the store's error
    translated."""
    return answer_over_deletion(leader, error) or translate(error)


def _gone_if_deleted(leader: Partition, error: BaseException) -> None:
    gone = answer_over_deletion(leader, error)
    if gone is not None:
        raise gone from error


@contextlib.contextmanager
def damage_at(topic: str, partition: int, offset: int) -> Iterator[None]:
    """Raises CorruptStoredData, naming the partition and offset, for a
    damaged object met by a read inside."""
    try:
        yield
    except CorruptObject as error:
        raise CorruptStoredData(topic, partition, offset, error.key, error.reason) from error


@contextlib.contextmanager
def unanswered_reads(topic: str, partition: int) -> Iterator[None]:
    """Raises StoreUnavailable, naming the partition, for an object-store
    error met by a read inside: a transient one a retry may get past, and
    one only the operator can fix (denied access, a missing bucket), as
    Kafka answers a log dir that failed whatever failed it. Damage is
    CorruptObject (damage_at), refused by name instead."""
    try:
        yield
    except ObjectStoreError as error:
        raise StoreUnavailable(
            topic, partition, str(error), transient=error.transient, advice=_advice(error)
        ) from error


def _advice(error: ObjectStoreError) -> str:
    return f" ({CHECK_THE_STORE})" if error.misconfigured else ""


def translate(error: BaseException) -> BaseException:
    """The engine's error for a stream-store error."""
    if isinstance(error, EngineError):
        return error
    if isinstance(error, StoreFenced):
        return Fenced(f"another engine opened this storage: {error}")
    if isinstance(error, StoreClosed):
        return EngineClosed()
    if isinstance(error, DeadlinePassed):
        return AdminTimedOut(str(error))
    if isinstance(error, NoRoom):
        # A record of state past the unuploaded headroom: as Kafka's
        # coordinators answer a write their log could not take in time.
        return CoordinatorNotAvailable(str(error))
    if isinstance(error, AppendTooLarge):
        return RecordListTooLarge(error.size, error.limit, str(error))
    if isinstance(error, StoreFailed) and isinstance(error.cause, ObjectStoreError):
        # The store stopped on a write the object store refused for good (an
        # upload's manifest commit): the refusal's advice, not only its text.
        return StorageError(f"{error}{_advice(error.cause)}")
    if isinstance(error, S3StreamError):
        return StorageError(str(error))
    if isinstance(error, ObjectStoreError):
        return StoreWriteFailed(str(error), transient=error.transient, advice=_advice(error))
    return error
