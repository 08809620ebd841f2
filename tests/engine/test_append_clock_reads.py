"""An append reads the wall clock once: the ``now`` its timestamp bounds
are checked against is the one its LogAppendTime stamp and its producer's
state take, as Kafka's UnifiedLog.append hands LogValidator one ``now``
(engine/partition.py's _append)."""

from __future__ import annotations

from pathlib import Path

import pytest

import engine
import native
from engine.clock import ManualClock
from engine.config import LONG_MAX
from native import RecordSpec

NOW = 1_700_000_000_000


class CountedClock(ManualClock):
    """A manual clock that counts its wall-time reads."""

    def __init__(self) -> None:
        super().__init__(NOW)
        self.reads = 0

    def time_ms(self) -> int:
        self.reads += 1
        return super().time_ms()


@pytest.mark.parametrize(
    "configs",
    [
        {"message.timestamp.before.max.ms": "60000"},
        {"message.timestamp.after.max.ms": "60000"},
        {"message.timestamp.difference.max.ms": "60000"},
        {"message.timestamp.type": "LogAppendTime"},
        # A topic's defaults bound it an hour ahead (Kafka 4.0's
        # message.timestamp.after.max.ms), so only this one has no bound.
        {"message.timestamp.after.max.ms": str(LONG_MAX)},
        {},
    ],
    ids=["before-bound", "after-bound", "difference-bound", "append-time", "unbounded", "defaults"],
)
def test_an_append_reads_the_clock_once(tmp_path: Path, configs: dict[str, str]) -> None:
    clock = CountedClock()
    with engine.open(tmp_path / "node", clock=clock) as opened:
        opened.create_topic("t", 1, configs)
        appended = []
        for sequence in range(3):
            batch = native.encode_batch(
                [RecordSpec(NOW, None, b"v", ())],
                producer_id=5,
                producer_epoch=0,
                base_sequence=sequence,
            )
            before = clock.reads
            future = opened.submit("t", 0, bytes(batch))
            appended.append(clock.reads - before)
            future.result(30)
    assert appended == [1, 1, 1]
