"""The uploader: turns sealed log-cache blocks into committed objects.

One block becomes one stream-set object holding every stream's data from
it, except streams with at least ``stream_object_bytes`` of data, which get
a stream object each. The objects are put first, then committed to the
manifest in one version, and only then may the WAL be trimmed: at every
moment each acknowledged append is in the WAL, in a committed object, or
both. Blocks are uploaded strictly in order, so the WAL trim point only
moves forward.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from s3stream.manifest_state import ObjectMeta, Op, RangeMeta
from s3stream.objects import EncodedObject, ObjectKind, StoredBatch, encode_object
from s3stream.store import ObjectStore, ObjectStoreError

OBJECT_PREFIX = "objects/"
_SUFFIX = {ObjectKind.STREAM_SET: "sso", ObjectKind.STREAM: "so"}


def object_key(epoch: int, object_id: int, kind: ObjectKind) -> str:
    """Keys carry the writer's epoch, so a fenced writer's leftovers are
    recognisable as orphans without asking anyone."""
    return f"{OBJECT_PREFIX}{epoch:010d}/{object_id:016d}.{_SUFFIX[kind]}"


def epoch_of_key(key: str) -> int | None:
    parts = key.split("/")
    if len(parts) != 3 or parts[0] + "/" != OBJECT_PREFIX or not parts[1].isdigit():
        return None
    return int(parts[1])


@dataclass
class PreparedObject:
    meta: ObjectMeta
    data: bytes


class ObjectIds:
    """Allocates object ids; shared by the uploader and the compactor."""

    def __init__(self, first: int) -> None:
        self._next = itertools.count(first)
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            return next(self._next)


def runs_of(batches: Sequence[StoredBatch]) -> list[list[StoredBatch]]:
    """Splits batches in offset order into runs of consecutive offsets."""
    runs: list[list[StoredBatch]] = []
    for batch in batches:
        if runs and runs[-1][-1].end_offset == batch.base_offset:
            runs[-1].append(batch)
        else:
            runs.append([batch])
    return runs


def prepare_objects(
    streams: Iterable[tuple[int, Sequence[StoredBatch]]],
    *,
    epoch: int,
    ids: ObjectIds,
    now_ms: int,
    block_bytes: int,
    stream_object_bytes: int,
) -> list[PreparedObject]:
    """Lays out streams' runs of batches as one stream-set object plus a
    stream object for each run of at least ``stream_object_bytes``."""
    shared: list[tuple[int, Sequence[StoredBatch]]] = []
    objects: list[PreparedObject] = []
    for stream_id, batches in streams:
        for run in runs_of(batches):
            size = sum(len(b.payload) for b in run)
            if size >= stream_object_bytes:
                objects.append(
                    _prepare(ObjectKind.STREAM, [(stream_id, run)], epoch, ids, now_ms, block_bytes)
                )
            else:
                shared.append((stream_id, run))
    if shared:
        objects.append(_prepare(ObjectKind.STREAM_SET, shared, epoch, ids, now_ms, block_bytes))
    return objects


def _prepare(
    kind: ObjectKind,
    streams: list[tuple[int, Sequence[StoredBatch]]],
    epoch: int,
    ids: ObjectIds,
    now_ms: int,
    block_bytes: int,
) -> PreparedObject:
    encoded: EncodedObject = encode_object(kind, streams, block_bytes)
    object_id = ids.take()
    meta = ObjectMeta(
        object_id,
        object_key(epoch, object_id, kind),
        kind,
        len(encoded.data),
        now_ms,
        tuple(RangeMeta(r.stream_id, r.start_offset, r.end_offset, r.size) for r in encoded.ranges),
    )
    return PreparedObject(meta, encoded.data)


def put_objects(
    store: ObjectStore,
    objects: Sequence[PreparedObject],
    stop: threading.Event,
    on_error: Callable[[ObjectStoreError], None],
) -> bool:
    """Puts every object, retrying with backoff until it works; False if stopped."""
    for prepared in objects:
        attempt = 0
        while True:
            try:
                store.put(prepared.meta.key, prepared.data)
                break
            except ObjectStoreError as error:
                on_error(error)
                if stop.wait(min(5.0, 0.05 * 2 ** min(attempt, 7))):
                    return False
                attempt += 1
    return True


def add_ops(objects: Sequence[PreparedObject]) -> list[Op]:
    return [["add_object", o.meta.to_wire()] for o in objects]


def now_ms() -> int:
    return int(time.time() * 1000)
