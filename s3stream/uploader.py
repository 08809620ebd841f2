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
from typing import NamedTuple

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
    data: list[bytes | memoryview]
    """The object's bytes, in parts (see EncodedObject)."""


class ObjectIds:
    """Allocates object ids; shared by the uploader and the compactor."""

    def __init__(self, first: int) -> None:
        self._next = itertools.count(first)
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            return next(self._next)


class Run(NamedTuple):
    """Offsets ``[start_offset, end_offset)`` of one stream that an object's
    range covers, and the batches it holds of them, in offset order. Usually
    the batches fill the range; a replaced range (``StreamStore.replace_range``)
    may have gaps: offsets whose records were removed."""

    start_offset: int
    end_offset: int
    batches: Sequence[StoredBatch]


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
    return prepare_runs(
        (
            (stream_id, [Run(r[0].base_offset, r[-1].end_offset, r) for r in runs_of(batches)])
            for stream_id, batches in streams
        ),
        epoch=epoch,
        ids=ids,
        now_ms=now_ms,
        block_bytes=block_bytes,
        stream_object_bytes=stream_object_bytes,
    )


def prepare_runs(
    streams: Iterable[tuple[int, Sequence[Run]]],
    *,
    epoch: int,
    ids: ObjectIds,
    now_ms: int,
    block_bytes: int,
    stream_object_bytes: int,
) -> list[PreparedObject]:
    """Lays out runs (non-empty, not overlapping) as one stream-set object
    plus a stream object for each run of at least ``stream_object_bytes``."""
    shared: list[tuple[int, Run]] = []
    objects: list[PreparedObject] = []
    for stream_id, runs in streams:
        for run in runs:
            size = sum(len(b.payload) for b in run.batches)
            if size >= stream_object_bytes:
                objects.append(
                    prepare_object(
                        ObjectKind.STREAM, [(stream_id, run)], epoch, ids, now_ms, block_bytes
                    )
                )
            else:
                shared.append((stream_id, run))
    if shared:
        objects.append(
            prepare_object(ObjectKind.STREAM_SET, shared, epoch, ids, now_ms, block_bytes)
        )
    return objects


def prepare_object(
    kind: ObjectKind,
    runs: Sequence[tuple[int, Run]],
    epoch: int,
    ids: ObjectIds,
    now_ms: int,
    block_bytes: int,
) -> PreparedObject:
    """One object holding ``runs``; each becomes one range of the object's
    metadata, spanning the run's offsets whatever gaps its batches leave."""
    ordered = sorted(runs, key=lambda r: (r[0], r[1].start_offset))
    encoded: EncodedObject = encode_object(
        kind,
        [(stream_id, part) for stream_id, run in ordered for part in runs_of(run.batches)],
        block_bytes,
    )
    # encode_object reports each stretch of consecutive batches; a run with
    # gaps is several of them, in the same (stream, offset) order.
    sizes = [0] * len(ordered)
    i = 0
    for part in encoded.ranges:
        while not (
            ordered[i][0] == part.stream_id
            and ordered[i][1].start_offset <= part.start_offset < ordered[i][1].end_offset
        ):
            i += 1
        sizes[i] += part.size
    object_id = ids.take()
    meta = ObjectMeta(
        object_id,
        object_key(epoch, object_id, kind),
        kind,
        encoded.size,
        now_ms,
        tuple(
            RangeMeta(stream_id, run.start_offset, run.end_offset, size)
            for (stream_id, run), size in zip(ordered, sizes, strict=True)
        ),
    )
    return PreparedObject(meta, encoded.parts)


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
