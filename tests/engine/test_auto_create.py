"""Which calls create a topic when ``auto_create_topics`` is on: a produce
(and a partition count, which Metadata and the producer ask for), as in
Kafka; never a fetch, an offset lookup or a consumer, so a consumer reading
during a deletion does not bring the topic back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import engine
from engine import TopicPartition
from tests.engine.conftest import QUIET_STORE
from tests.engine.helpers_records import batch

CONFIG = engine.EngineConfig(auto_create_topics=True, store=QUIET_STORE, cleaner_interval_s=3600)

READS: dict[str, Callable[[engine.Engine], Any]] = {
    "fetch": lambda e: e.fetch("ghost", 0, 0),
    "fetch_async": lambda e: asyncio.run(e.fetch_async("ghost", 0, 0)),
    "list_offset earliest": lambda e: e.list_offset("ghost", 0, engine.engine.EARLIEST),
    "list_offset latest": lambda e: e.list_offset("ghost", 0, engine.engine.LATEST),
    "list_offset by time": lambda e: e.list_offset("ghost", 0, 1_700_000_000_000),
    "offsets": lambda e: e.offsets("ghost", 0),
    "delete_records": lambda e: e.delete_records("ghost", 0, 0),
    "consumer assign": lambda e: e.consumer().assign([TopicPartition("ghost", 0)]),
}


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
def test_reading_an_unknown_topic_raises_and_creates_nothing(
    tmp_path: Path, read: Callable[[engine.Engine], Any]
) -> None:
    with engine.open(tmp_path, None, CONFIG) as e:
        with pytest.raises(engine.UnknownTopic):
            read(e)
        assert e.list_topics() == []


def test_produce_and_partition_count_still_create_the_topic(tmp_path: Path) -> None:
    with engine.open(tmp_path, None, CONFIG) as e:
        e.produce("made-by-produce", 0, batch([b"x"]))
        assert e.partition_count("made-by-count") == 1
        with e.producer() as producer:
            producer.send("made-by-producer", b"y", partition=0).result(30)
        assert e.list_topics() == ["made-by-count", "made-by-produce", "made-by-producer"]


def test_a_consumer_polling_across_a_deletion_does_not_recreate_the_topic(tmp_path: Path) -> None:
    with engine.open(tmp_path, None, CONFIG) as e:
        e.create_topic("doomed")
        e.produce("doomed", 0, batch([b"a", b"b"]))
        subscribed = e.consumer("doomed", auto_offset_reset="earliest")
        assigned = e.consumer(auto_offset_reset="earliest")
        assigned.assign([TopicPartition("doomed", 0)])
        assert len(subscribed.poll(timeout=5)) == 2
        assert len(assigned.poll(timeout=5)) == 2
        e.delete_topic("doomed")
        assert subscribed.poll(timeout=0.2) == []  # the subscription follows the deletion
        with pytest.raises(engine.UnknownTopic):
            assigned.poll(timeout=0.2)
        assert e.list_topics() == []
