"""A produce request for many partitions is one WAL write and one sync:
the handler holds the WAL's writer while it appends the request's batches
(``Engine.appends_gathered``), so they form one group instead of the first
batch going alone and the rest following in the next."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import engine
import native
from engine.protocol.apis import ApiKey, request_schema
from native import RecordSpec
from tests.server.in_process import InProcessServer, served_without_uploads
from tests.server.wire import Wire, build
from wal import WriteAheadLog, group_commit

TIMEOUT = 30.0
PARTITIONS = 6


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[engine.Engine, InProcessServer]]:
    with served_without_uploads(tmp_path / "node") as both:
        yield both


def _batch(value: bytes) -> bytes:
    return native.encode_batch([RecordSpec(1_700_000_000_000, None, value, ())])


def test_a_produce_for_many_partitions_is_one_wal_group(
    served: tuple[engine.Engine, InProcessServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    opened, server = served
    opened.create_topic("wide", PARTITIONS)
    monkeypatch.setattr(group_commit, "HOLD_LIMIT_S", TIMEOUT)  # the request ends the hold
    wal = opened.store.wal
    # The appender's own way into the WAL (Appender._append): slowed there,
    # each batch would go alone unless the request holds the writer.
    submit = WriteAheadLog.submit_to
    slowed: list[object] = []

    def slow_submit_to(self: WriteAheadLog, *args: object, **kwargs: object) -> None:
        submit(self, *args, **kwargs)  # type: ignore[arg-type]
        # submit_to(waiter, payload, stream_id, ...): the appender passes it by position
        slowed.append(kwargs["stream_id"] if "stream_id" in kwargs else args[2])
        time.sleep(0.002)  # time enough for an unheld writer to take each batch alone

    monkeypatch.setattr(WriteAheadLog, "submit_to", slow_submit_to)
    produce = build(
        request_schema(ApiKey.PRODUCE, 9),
        transactional_id=None,
        acks=-1,
        timeout_ms=int(TIMEOUT * 1000),
        topic_data=[
            {
                "name": "wide",
                "partition_data": [
                    {"index": p, "records": _batch(b"value %d" % p)} for p in range(PARTITIONS)
                ],
            }
        ],
    )
    groups = wal.stats.groups
    with Wire(server.bootstrap, timeout=TIMEOUT) as wire:
        answer = wire.request(produce)
    codes = [p.error_code for t in answer.responses for p in t.partition_responses]
    assert codes == [0] * PARTITIONS
    # every batch went the slowed way, each partition's to its own stream
    assert len(slowed) == len(set(slowed)) == PARTITIONS
    assert wal.stats.groups - groups == 1
    for partition in range(PARTITIONS):
        assert opened.offsets("wide", partition) == (0, 1)
