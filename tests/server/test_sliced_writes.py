"""A large response goes to the transport a slice per turn of the event
loop, whole and in order, with the loop free to run other work between two
slices; a small one is written at once, as it is."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

import engine
import native
from engine.protocol.apis import ApiKey, load_request_schema
from engine.server.sliced_writes import SLICE_BYTES, SlicedWriter
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire, build


class _Transport:
    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.writes: list[list[Any]] = []
        self.events: list[str] = []
        self.loop = loop

    def writelines(self, parts: list[Any]) -> None:
        self.writes.append(list(parts))
        self.events.append("slice")
        if self.loop is not None:  # another connection's request arrives meanwhile
            self.loop.call_soon(self.events.append, "other work")


def _joined(writes: list[list[Any]]) -> bytes:
    return b"".join(bytes(part) for write in writes for part in write)


def test_a_large_response_is_written_a_slice_per_loop_turn_whole_and_in_order() -> None:
    loop = asyncio.new_event_loop()
    try:
        transport = _Transport(loop)
        writer = SlicedWriter(transport.writelines, loop, slice_bytes=1000)
        large = [bytearray(b"head"), bytes(range(256)) * 5, memoryview(b"x" * 1500), b"tail"]
        small = [b"next response"]

        async def scenario() -> None:
            writer.write(large)
            writer.write(small)  # queued behind the large one
            while writer.unsent:
                await asyncio.sleep(0)

        loop.run_until_complete(scenario())
    finally:
        loop.close()
    expected = b"".join(bytes(part) for part in [*large, *small])
    assert _joined(transport.writes) == expected
    assert all(sum(len(part) for part in write) <= 1000 for write in transport.writes)
    assert len(transport.writes) == 3  # 2,788 + 13 bytes, 1,000 a turn
    # the first slice at once, the rest on later turns: work that came
    # meanwhile runs before the next slice
    assert transport.events[:5] == ["slice", "other work"] * 2 + ["slice"]


def test_a_small_response_is_written_at_once_by_reference() -> None:
    loop = asyncio.new_event_loop()
    try:
        transport = _Transport()
        writer = SlicedWriter(transport.writelines, loop)
        record = memoryview(b"r" * 4096)
        writer.write([b"header", record])
    finally:
        loop.close()
    assert len(transport.writes) == 1
    assert transport.writes[0][1] is record  # not copied
    assert writer.unsent == 0


def test_flush_gives_everything_unsent_and_discard_drops_it() -> None:
    loop = asyncio.new_event_loop()
    try:
        transport = _Transport()
        writer = SlicedWriter(transport.writelines, loop, slice_bytes=10)
        writer.write([b"a" * 35])
        assert writer.unsent == 25
        writer.flush()  # before a close
        assert writer.unsent == 0 and _joined(transport.writes) == b"a" * 35
        writer.write([b"b" * 35])
        writer.discard()  # the connection is gone
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    assert _joined(transport.writes) == b"a" * 35 + b"b" * 10


def test_a_fetch_answer_of_several_slices_reaches_the_client_whole(tmp_path: Path) -> None:
    values = [bytes([i]) * (SLICE_BYTES // 2 + 1000) for i in range(7)]  # 3.5 slices
    with engine.open(tmp_path / "data", config=engine.EngineConfig.small()) as opened:
        opened.create_topic("t", 1, {"max.message.bytes": str(SLICE_BYTES)})
        with opened.producer() as producer:
            for value in values:
                producer.send("t", value, partition=0).result(30)
        server = InProcessServer(opened)
        try:
            with Wire(server.bootstrap, timeout=30) as wire:
                answer = wire.request(_fetch_all())
        finally:
            server.stop()
    (topic,) = answer.responses
    (partition,) = topic.partitions
    assert partition.error_code == 0
    assert [record.value for record in native.decode_records(partition.records)] == values


def _fetch_all() -> Any:
    return build(
        load_request_schema(ApiKey.FETCH, 11),
        replica_id=-1,
        max_wait=datetime.timedelta(0),
        min_bytes=0,
        max_bytes=64 << 20,
        isolation_level=0,
        session_epoch=-1,
        topics=[
            {
                "topic": "t",
                "partitions": [
                    {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 64 << 20}
                ],
            }
        ],
    )
