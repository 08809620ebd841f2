"""A block whose bytes fail their checks when read is read once more
before it is called damaged: bytes flipped on the way (a proxy, a NIC,
plain HTTP to a store on the same network, where botocore checks no
checksum of a GET) pass the second time, and the read is answered with
the stored records, not CORRUPT_MESSAGE and a log line blaming an object
that is whole. Damage in the store fails both reads and is refused by
name, as before (test_damaged_block.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

import engine
import native
from s3stream.store import ObjectStore, open_store
from tests.engine.conftest import QUIET_STORE
from tests.s3stream.faults import FaultyStore

TOPIC = "history"
MARKER = b"marker-on-the-way"


class GarblingStore(FaultyStore):
    """Flips a byte of MARKER in the next ``garbled`` GET answers holding it."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.garbled = 0

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        data = super().get(key, start, end)
        at = data.find(MARKER)
        if at < 0 or self.garbled <= 0:
            return data
        self.garbled -= 1
        flipped = bytearray(data)
        flipped[at] ^= 0x01
        return bytes(flipped)


@pytest.fixture
def garbling(tmp_path: Path) -> Iterator[tuple[engine.Engine, GarblingStore]]:
    """An engine whose one partition's records (MARKER among them) are in
    an object, read with no log cache or block cache to answer instead."""
    store = GarblingStore(open_store("file://" + str(tmp_path / "bucket")))
    config = engine.EngineConfig(
        store=replace(QUIET_STORE, log_cache_bytes=0, block_cache_bytes=1, readahead_bytes=0),
        cleaner_interval_s=3600,
    )
    with engine.open(tmp_path / "node", store, config) as opened:
        opened.create_topic(TOPIC, 1)
        with opened.producer(linger_ms=0) as producer:
            for value in (b"before", MARKER, b"after"):
                producer.send(TOPIC, value, partition=0).result(30)
        assert opened.flush(30)
        yield opened, store


def fetched_values(opened: engine.Engine) -> list[bytes | None]:
    fetched = opened.fetch(TOPIC, 0, 0)
    return [
        record.value for batch in fetched.records for record in native.decode_records(bytes(batch))
    ]


def test_a_block_damaged_on_the_way_is_read_again_and_served(
    garbling: tuple[engine.Engine, GarblingStore], caplog: pytest.LogCaptureFixture
) -> None:
    opened, store = garbling
    caplog.set_level(logging.WARNING)
    store.garbled = 2  # the whole-object read, then the block's own
    assert fetched_values(opened) == [b"before", MARKER, b"after"]
    assert store.garbled == 0
    assert not [r for r in caplog.records if "is damaged" in r.getMessage()]
    assert [r for r in caplog.records if "passed when read again" in r.getMessage()]


def test_a_block_damaged_in_the_store_is_still_refused(
    garbling: tuple[engine.Engine, GarblingStore],
) -> None:
    opened, store = garbling
    store.garbled = 1_000  # every read of it
    with pytest.raises(engine.CorruptStoredData):
        opened.fetch(TOPIC, 0, 0)
