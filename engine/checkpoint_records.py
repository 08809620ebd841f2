"""The records of a partition's state stream: checkpoints, in one append or
in parts (docs/engine-format.md, "Partition state: checkpoints" and
"Checkpoints in parts"); what is in a checkpoint is engine/partition.py's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import msgpack

from engine import state_parts

CHECKPOINT_VERSION = 4
"""A checkpoint holding the producer table. 2 adds the partition's
transactions and producers' coordinator epochs, 3 producers' last
timestamps (their last batch's or transaction marker's), 4 the compaction
horizon."""

PART_VERSION = 5
"""Marks a part of a checkpoint: a tidelog that predates parts refuses it
as a format newer than its own instead of reading it as a checkpoint."""

CHANGES_VERSION = 6
"""A checkpoint holding the producers changed since the checkpoint before
instead of the table (docs/design/0117): a tidelog that predates it
refuses it rather than read a partition with no producers."""

NEWEST_VERSION = CHANGES_VERSION

CHANGED = "changed"
GONE = "gone"


PART = "part"
PARTS = "parts"
CHUNK = "chunk"


def part_packer(end: int) -> state_parts.Pack:
    """The records of a checkpoint's parts: maps of the part's place, the
    run's length and the slice, beside ``v`` 5 and the checkpoint's ``end``."""

    def pack(place: int, count: int, chunk: bytes | memoryview) -> bytes:
        part = {"v": PART_VERSION, "end": end, PART: place, PARTS: count, CHUNK: chunk}
        packed: bytes = msgpack.packb(part, use_bin_type=True)
        return packed

    return pack


def in_parts(stream_id: int, payload: bytes, end: int, limit: int) -> list[bytes]:
    """A packed checkpoint past ``limit`` as its parts (two or more), each
    within it."""
    return state_parts.cut(stream_id, payload, limit, part_packer(end), least=2)


def checkpoints(records: Iterable[Any], where: object) -> Iterator[dict[str, Any]]:
    """Every complete checkpoint of a state stream's ``records``, in order: a
    checkpoint in one append as it is, one in parts once its last part is
    read, a run of parts never completed not at all. Refuses (ValueError)
    a format newer than this tidelog's, naming ``where``."""
    run = state_parts.Join()
    for record in records:
        whole = record
        if record["v"] == PART_VERSION:
            if record[PART] == 0:
                run.begin(record["end"])
            joined = run.take(record[PART], record[PARTS], record[CHUNK], record["end"])
            if joined is None:
                continue
            whole = msgpack.unpackb(joined, raw=False, strict_map_key=False)
            if not isinstance(whole, dict) or whole.get("end") != record["end"]:
                raise ValueError(
                    f"{where}: a checkpoint in parts up to {record['end']} does not "
                    "hold the checkpoint its parts name"
                )
        else:
            run.end()
        if whole["v"] > NEWEST_VERSION or whole["v"] == PART_VERSION:
            raise ValueError(f"{where}: checkpoint format {whole['v']} is newer than this tidelog")
        yield whole


def last_part(record: Any) -> int:
    """How many parts end at ``record`` if it is a run's last part, else 0."""
    if isinstance(record, dict) and record.get("v") == PART_VERSION:
        count = record[PARTS]
        if record[PART] == count - 1:
            return int(count)
    return 0
