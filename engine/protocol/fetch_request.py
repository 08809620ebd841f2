"""The Fetch request of a consumer (v11 to v16, as kafkajs and librdkafka
send it, without a fetch session), decoded with a struct read per
partition; anything else (other versions, forgotten topics, tagged fields,
anything malformed) is left to the general decoder (codec.py), which
answers it or names what is wrong with it. A session's Fetch that forgets
no partition (its session id and epoch are two numbers of the head) is
decoded here too.

librdkafka, kafkajs and aiokafka open no fetch session, so each of their
Fetches names every partition the consumer reads: at 10,000 partitions the
general decoder's shape check and kio's reader cost the event loop some
13 ms a request, a field at a time. A partition's entry here is of fixed
size, so the bounds of all of a topic's entries are checked once, against
the bytes received, before any is made; and the values are kio's own
classes, made without their generated ``__init__`` (the frozen dataclass's
checks and keyword handling were most of the cost). A request this decoder
accepts decodes to a value equal to kio's (tests/server/
test_fetch_request.py holds it to that, for well-formed requests of every
version it takes and for damaged ones); it never refuses anything itself.
"""

from __future__ import annotations

import struct
import uuid
from datetime import timedelta
from functools import cache
from importlib import import_module
from typing import Any, NamedTuple

from engine.protocol.produce_single import NotDecodedHere, read_uvarint

FIRST_VERSION = 11
LAST_VERSION = 16
"""The versions decoded here: kafkajs sends v11, librdkafka 2.x up to v16."""
_FIRST_FLEXIBLE = 12
_FIRST_TOPIC_ID = 13
_FIRST_REPLICA_STATE = 15
"""From v15 the replica id is a tagged field (ReplicaState), absent here."""

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_HEAD_V11 = struct.Struct(">iiiibii")  # replica, max_wait, min, max bytes, isolation, session
_HEAD_V15 = struct.Struct(">iiibii")  # no replica id
_PARTITION_V11 = struct.Struct(">iiqqi")
_PARTITION_FLEXIBLE = struct.Struct(">iiqiqiB")  # with last_fetched_epoch, then no tags
_ZERO_UUID = bytes(16)
_new: Any = object.__new__


class _Classes(NamedTuple):
    request: type
    topic: type
    partition: type
    replica_state: Any
    """v15 on: the request's default ReplicaState (immutable, shared)."""
    setters: tuple[Any, ...]
    """The partition's slot setters, in the order its struct unpacks."""


@cache
def _classes(version: int) -> _Classes:
    """kio's classes of a version, imported on first use (a server start
    imports no Fetch version it is never sent)."""
    module = import_module(f"kio.schema.fetch.v{version}.request")
    partition = module.FetchPartition
    fields = ["partition", "current_leader_epoch", "fetch_offset"]
    if version >= _FIRST_FLEXIBLE:
        fields.append("last_fetched_epoch")
    fields += ["log_start_offset", "partition_max_bytes"]
    # A slot's own setter: frozen dataclasses refuse setattr, but the slot
    # descriptor is what their generated __init__ itself ends up writing.
    setters = tuple(getattr(partition, name).__set__ for name in fields)
    replica_state = module.ReplicaState() if version >= _FIRST_REPLICA_STATE else None
    return _Classes(module.FetchRequest, module.FetchTopic, partition, replica_state, setters)


def decode_fetch(frame: memoryview, offset: int, version: int) -> Any | None:
    """The request (kio's FetchRequest of ``version``) read from ``offset``
    to the frame's end, if it is of a version and shape decoded here; None
    for anything else."""
    if not FIRST_VERSION <= version <= LAST_VERSION:
        return None
    try:
        if version >= _FIRST_FLEXIBLE:
            return _flexible(frame, offset, version)
        return _legacy(frame, offset)
    except (struct.error, IndexError, UnicodeDecodeError, NotDecodedHere):
        return None  # the general decoder says what is wrong


def _legacy(frame: memoryview, at: int) -> Any:
    classes = _classes(FIRST_VERSION)
    end = len(frame)
    replica, max_wait, min_bytes, max_bytes, isolation, session, epoch = _HEAD_V11.unpack_from(
        frame, at
    )
    at += _HEAD_V11.size
    (count,) = _INT32.unpack_from(frame, at)
    at += 4
    if count < 0 or count > end - at:  # every topic takes bytes: a larger count is a lie
        return None
    topics = []
    for _ in range(count):
        (size,) = _INT16.unpack_from(frame, at)
        at += 2
        if size < 0 or at + size > end:
            return None
        name = str(frame[at : at + size], "utf-8")
        at += size
        (partitions,) = _INT32.unpack_from(frame, at)
        at += 4
        width = _PARTITION_V11.size
        if partitions < 0 or at + partitions * width > end:
            return None
        entries = _partitions(classes, frame[at : at + partitions * width], _PARTITION_V11)
        at += partitions * width
        topics.append(classes.topic(topic=name, partitions=entries))
    (forgotten,) = _INT32.unpack_from(frame, at)
    (size,) = _INT16.unpack_from(frame, at + 4)
    at += 6
    if forgotten != 0 or size < 0 or at + size != end:
        return None  # forgotten topics (a session's), a null rack, or bytes left over
    rack = str(frame[at:end], "utf-8")
    head = (max_wait, min_bytes, max_bytes, isolation, session, epoch)
    return _request(classes, head, topics, rack, {"replica_id": replica})


def _flexible(frame: memoryview, at: int, version: int) -> Any:
    classes = _classes(version)
    end = len(frame)
    replica = -1
    if version >= _FIRST_REPLICA_STATE:
        max_wait, min_bytes, max_bytes, isolation, session, epoch = _HEAD_V15.unpack_from(frame, at)
        at += _HEAD_V15.size
    else:
        replica, max_wait, min_bytes, max_bytes, isolation, session, epoch = _HEAD_V11.unpack_from(
            frame, at
        )
        at += _HEAD_V11.size
    count, at = read_uvarint(frame, at)
    count -= 1  # a compact array's length + 1; 0 is null
    if count < 0 or count > end - at:
        return None
    by_id = version >= _FIRST_TOPIC_ID
    width = _PARTITION_FLEXIBLE.size
    topics = []
    for _ in range(count):
        if by_id:
            raw = bytes(frame[at : at + 16])
            if len(raw) != 16:
                return None
            at += 16
            topic_id = None if raw == _ZERO_UUID else uuid.UUID(bytes=raw)
        else:
            size, at = read_uvarint(frame, at)
            if size < 1 or at + size - 1 > end:
                return None
            name = str(frame[at : at + size - 1], "utf-8")
            at += size - 1
        partitions, at = read_uvarint(frame, at)
        partitions -= 1
        if partitions < 0 or at + partitions * width > end:
            return None
        entries = _partitions(classes, frame[at : at + partitions * width], _PARTITION_FLEXIBLE)
        at += partitions * width
        if frame[at] != 0:  # the topic's tagged fields
            return None
        at += 1
        if by_id:
            topics.append(classes.topic(topic_id=topic_id, partitions=entries))
        else:
            topics.append(classes.topic(topic=name, partitions=entries))
    if frame[at] != 1:  # forgotten topics: an empty compact array, else a session's
        return None
    size, at = read_uvarint(frame, at + 1)
    if size < 1 or at + size - 1 > end:  # a null rack is the general decoder's to refuse
        return None
    rack = str(frame[at : at + size - 1], "utf-8")
    at += size - 1
    if at + 1 != end or frame[at] != 0:  # the request's tagged fields, or bytes left over
        return None
    fields: dict[str, Any] = {"cluster_id": None}
    if version >= _FIRST_REPLICA_STATE:
        fields["replica_state"] = classes.replica_state
    else:
        fields["replica_id"] = replica
    head = (max_wait, min_bytes, max_bytes, isolation, session, epoch)
    return _request(classes, head, topics, rack, fields)


def _request(
    classes: _Classes,
    head: tuple[int, int, int, int, int, int],
    topics: list[Any],
    rack: str,
    fields: dict[str, Any],
) -> Any:
    """The request of ``head`` (max_wait, min_bytes, max_bytes, isolation
    level, session id and epoch) and ``fields`` of its version, no
    forgotten topics."""
    max_wait, min_bytes, max_bytes, isolation, session, epoch = head
    return classes.request(
        max_wait=timedelta(milliseconds=max_wait),
        min_bytes=min_bytes,
        max_bytes=max_bytes,
        isolation_level=isolation,
        session_id=session,
        session_epoch=epoch,
        topics=tuple(topics),
        forgotten_topics_data=(),
        rack_id=rack,
        **fields,
    )


def _partitions(classes: _Classes, data: memoryview, layout: struct.Struct) -> tuple[Any, ...]:
    """A topic's partition entries, ``data`` their bytes (already checked
    to be all there: iter_unpack makes one entry per ``layout.size``)."""
    cls = classes.partition
    entries: list[Any] = []
    append = entries.append
    if layout is _PARTITION_V11:
        s_partition, s_epoch, s_offset, s_start, s_max = classes.setters
        for partition, epoch, offset, start, most in layout.iter_unpack(data):
            entry = _new(cls)
            s_partition(entry, partition)
            s_epoch(entry, epoch)
            s_offset(entry, offset)
            s_start(entry, start)
            s_max(entry, most)
            append(entry)
        return tuple(entries)
    s_partition, s_epoch, s_offset, s_fetched, s_start, s_max = classes.setters
    for partition, epoch, offset, fetched, start, most, tags in layout.iter_unpack(data):
        if tags:  # a partition's tagged fields
            raise NotDecodedHere
        entry = _new(cls)
        s_partition(entry, partition)
        s_epoch(entry, epoch)
        s_offset(entry, offset)
        s_fetched(entry, fetched)
        s_start(entry, start)
        s_max(entry, most)
        append(entry)
    return tuple(entries)
