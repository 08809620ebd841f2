"""What each open of an engine replayed of one partition, for tests that
check a restart replays no batch a checkpoint covers."""

from __future__ import annotations

import pytest

from engine.partition import Partition


def count_replays(monkeypatch: pytest.MonkeyPatch, topic: str, index: int) -> list[int]:
    """A list to which every later recovery of ``topic``-``index`` adds the
    number of WAL batches it replayed, in the order the opens ran."""
    replayed: list[int] = []
    recover = Partition.recover

    def counted(partition: Partition) -> int:
        count = recover(partition)
        if (partition.topic, partition.index) == (topic, index):
            replayed.append(count)
        return count

    monkeypatch.setattr(Partition, "recover", counted)
    return replayed
