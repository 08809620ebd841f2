"""What the memory API's reads by time and by vector (a snapshot, a state
as of T or below a vector, a replay's start) answer of a topic deleted
under them, and of one deleted and created again.

Each read looks a topic's partitions up once and reads those partitions
(their streams), never a partition looked up again by name: a topic
deleted and created again under the name is another log, starting again
at offset 0 in the same leader epoch, whose records at a vector's offsets
are not the ones it names. So a read whose partition's topic is deleted
under it ends with the error for a topic that does not exist, whatever
its read of the deleted stream raised (a stream not found, an object
gone), and never answers from what the deleted stream had left or from
the new topic's records:

- ``UnknownTopicId`` (Kafka's UNKNOWN_TOPIC_ID) for a read below a vector
  that names the topic's id (one cut embedded): Kafka's answer for an
  offset of a topic id that no longer exists;
- ``UnknownTopic`` (UNKNOWN_TOPIC_OR_PARTITION) for a read that names the
  topic by name (a snapshot, a state as of a time, a vector without ids),
  as Kafka's ReplicaManager answers a partition it no longer hosts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from engine.errors import EngineError, UnknownTopic, UnknownTopicId
from engine.partition import Partition
from engine.topic_id import NO_TOPIC_ID


def gone(topic: str, topic_id: bytes = NO_TOPIC_ID) -> EngineError:
    """The error for ``topic`` deleted: UnknownTopicId if the read named
    its id, else UnknownTopic."""
    if topic_id != NO_TOPIC_ID:
        return UnknownTopicId(topic, topic_id)
    return UnknownTopic(topic)


def _gone_of(read: Sequence[Partition], topic_ids: dict[str, bytes]) -> EngineError | None:
    """``gone`` for the first partition of ``read`` whose topic was
    deleted (None: none was). ``topic_ids``: the id each topic was named
    by (absent: by name)."""
    for leader in read:
        if leader.deleted:
            return gone(leader.topic, topic_ids.get(leader.topic, NO_TOPIC_ID))
    return None


@contextmanager
def deleted_under(read: Sequence[Partition], topic_ids: dict[str, bytes]) -> Iterator[None]:
    """Raises ``gone`` for any error (an Exception, never a cancellation,
    which is the caller's) raised inside once one of the partitions of
    ``read`` (which the caller may add to inside) is deleted; and for a
    read that ends with one deleted, raising nothing: what it read holds
    positions or records of a topic that no longer exists, or of two
    incarnations of one name."""
    try:
        yield
    except Exception as error:
        deleted = _gone_of(read, topic_ids)
        if deleted is None:
            raise
        raise deleted from error
    deleted = _gone_of(read, topic_ids)
    if deleted is not None:
        raise deleted
