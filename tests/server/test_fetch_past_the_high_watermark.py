"""A Fetch between the high watermark and the log end (an append made and
not yet durable: the WAL's fdatasync is held here, a fault injected) over
a real socket: as Kafka's LocalLog.read answers it, no records and no
error, the high watermark as it is; past the log end, OFFSET_OUT_OF_RANGE.
Once the append is durable, the same fetch reads it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import engine
import native
import wal.segment
from engine.protocol.kafka_code import KafkaCode
from native.records import RecordSpec
from tests.server.in_process import InProcessServer, served_without_uploads
from tests.server.wire import Wire, fetch_each

TIMEOUT = 30.0
BATCH = native.encode_batch([RecordSpec(0, None, b"v")])


class HeldSyncs:
    """Holds every WAL fdatasync while ``holding`` is set, until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.holding = threading.Event()
        self.released = threading.Event()
        original = wal.segment.SegmentWriter.sync

        def held(segment: wal.segment.SegmentWriter) -> None:
            if self.holding.is_set():
                self.released.wait(TIMEOUT)
            original(segment)

        monkeypatch.setattr(wal.segment.SegmentWriter, "sync", held)


@pytest.fixture
def served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[engine.Engine, InProcessServer, HeldSyncs]]:
    syncs = HeldSyncs(monkeypatch)
    with served_without_uploads(tmp_path) as (opened, server):
        opened.create_topic("t", 1)
        opened.produce("t", 0, BATCH)  # offset 0, durable
        try:
            yield opened, server, syncs
        finally:
            syncs.released.set()


def fetch(wire: Wire, offset: int) -> Any:
    return wire.request(fetch_each(12, [("t", 0, offset)])).responses[0].partitions[0]


def test_a_fetch_past_the_high_watermark_within_the_log_is_empty(
    served: tuple[engine.Engine, InProcessServer, HeldSyncs],
) -> None:
    opened, server, syncs = served
    leader = opened.partition("t", 0)
    syncs.holding.set()
    pending = [opened.submit("t", 0, BATCH) for _ in range(2)]  # offsets 1 and 2
    assert (leader.high_watermark, leader.log_end_offset) == (1, 3)
    with Wire(server.bootstrap) as wire:
        for offset in (2, 3):
            within = fetch(wire, offset)
            assert within.error_code == KafkaCode.NONE
            assert not within.records
            assert (within.high_watermark, within.log_start_offset) == (1, 0)
        assert fetch(wire, 4).error_code == KafkaCode.OFFSET_OUT_OF_RANGE
        syncs.holding.clear()
        syncs.released.set()
        for future in pending:
            future.result(TIMEOUT)
        durable = fetch(wire, 2)
        assert durable.error_code == KafkaCode.NONE and durable.records
