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
"""2 adds the partition's transactions and producers' coordinator epochs, 3
producers' last timestamps (their last batch's or transaction marker's), 4
the compaction horizon."""

PART_VERSION = 5
"""Marks a part of a checkpoint: a tidelog that predates parts refuses it
as a format newer than its own instead of reading it as a checkpoint."""


def in_parts(stream_id: int, payload: bytes, end: int, limit: int) -> list[bytes]:
    """A packed checkpoint past ``limit`` as its parts, each within it."""
    return state_parts.split(stream_id, payload, limit, {"v": PART_VERSION, "end": end})


def checkpoints(records: Iterable[Any], where: object) -> Iterator[dict[str, Any]]:
    """Every complete checkpoint of a state stream's ``records``, in order: a
    checkpoint in one append as it is, one in parts once its last part is
    read, a run of parts never completed not at all. Refuses (ValueError)
    a format newer than this tidelog's, naming ``where``."""
    run = state_parts.Run()
    for record in records:
        whole = record
        if record["v"] == PART_VERSION:
            joined = run.add(record)
            if joined is None:
                continue
            whole = msgpack.unpackb(joined, raw=False, strict_map_key=False)
            if not isinstance(whole, dict) or whole.get("end") != record["end"]:
                raise ValueError(
                    f"{where}: a checkpoint in parts up to {record['end']} does not "
                    "hold the checkpoint its parts name"
                )
        else:
            run.drop()
        if whole["v"] > CHECKPOINT_VERSION:
            raise ValueError(f"{where}: checkpoint format {whole['v']} is newer than this tidelog")
        yield whole


def last_part(record: Any) -> int:
    """How many parts end at ``record`` if it is a run's last part, else 0."""
    if isinstance(record, dict) and record.get("v") == PART_VERSION:
        count = record[state_parts.PARTS]
        if record[state_parts.PART] == count - 1:
            return int(count)
    return 0
