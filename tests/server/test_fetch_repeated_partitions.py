"""A Fetch that names a partition more than once, over a real socket: as
in Kafka (FetchRequest.fetchData is a map by topic and partition), the
partition is read and answered once, first in its topic's entry,
from the offset it was named with last, by name (v12) and by topic id
(v13); a fetch session keeps it once too, at that offset."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import engine
import native
from native.records import RecordSpec
from tests.server.in_process import InProcessServer, served_without_uploads
from tests.server.wire import Wire, fetch_each, fetch_from_start

TOPIC = "twice"
OTHER = "once"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[engine.Engine, InProcessServer]]:
    with served_without_uploads(tmp_path) as (opened, server):
        for name in (TOPIC, OTHER):
            opened.create_topic(name, 2)
            for value in (b"a", b"b", b"c"):  # one batch per record: offsets 0, 1, 2
                opened.produce(name, 0, native.encode_batch([RecordSpec(0, None, value)]))
        yield opened, server


def answered(response: Any) -> list[tuple[Any, int, int]]:
    """(topic key, partition, first batch's base offset or -1) of each entry, in order."""
    entries = []
    for topic in response.responses:
        key = getattr(topic, "topic_id", None) or topic.topic
        for partition in topic.partitions:
            batches = list(native.scan_batches(memoryview(partition.records or b"")))
            entries.append(
                (key, partition.partition_index, batches[0].base_offset if batches else -1)
            )
    return entries


@pytest.mark.parametrize("version", [12, 13])
def test_a_partition_named_twice_is_answered_once_from_its_last_offset(
    served: tuple[engine.Engine, InProcessServer], version: int
) -> None:
    opened, server = served
    ids = {name: opened.topic_id(name) for name in (TOPIC, OTHER)}
    if version >= 13:
        key = {name: uuid.UUID(bytes=ids[name]) for name in ids}
    else:
        key = {name: name for name in ids}
    request = fetch_each(
        version,
        [(key[TOPIC], 0, 0), (key[OTHER], 0, 1), (key[TOPIC], 1, 0), (key[TOPIC], 0, 2)],
    )
    with Wire(server.bootstrap) as wire:
        response = wire.request(request)
    assert response.error_code == 0
    entries = answered(response)
    assert sorted(entries, key=str) == sorted(
        [(key[TOPIC], 0, 2), (key[OTHER], 0, 1), (key[TOPIC], 1, -1)], key=str
    )
    assert entries[0] == (key[TOPIC], 0, 2)  # in the place it was first named


def test_a_partition_named_twice_in_one_topic_entry_is_answered_once(
    served: tuple[engine.Engine, InProcessServer],
) -> None:
    _, server = served
    with Wire(server.bootstrap) as wire:
        response = wire.request(fetch_from_start(TOPIC, 12, repeats=3))
    assert answered(response) == [(TOPIC, 0, 0)]


def test_a_fetch_session_keeps_a_partition_named_twice_once_at_its_last_offset(
    served: tuple[engine.Engine, InProcessServer],
) -> None:
    """Kafka's session cache is a map by partition as well: an incremental
    Fetch that names nothing reads it from the offset the session holds,
    and one that names it twice again moves it to the last."""
    _, server = served
    twice = [(TOPIC, 0, 0), (TOPIC, 0, 2)]
    with Wire(server.bootstrap) as wire:
        created = wire.request(fetch_each(12, twice, session_epoch=0))
        session = created.session_id
        assert session != 0
        assert answered(created) == [(TOPIC, 0, 2)]
        again = wire.request(fetch_each(12, [], session_id=session, session_epoch=1))
        assert again.error_code == 0
        assert answered(again) == [(TOPIC, 0, 2)]
        moved = wire.request(
            fetch_each(12, [(TOPIC, 0, 2), (TOPIC, 0, 1)], session_id=session, session_epoch=2)
        )
        assert answered(moved) == [(TOPIC, 0, 1)]
        after = wire.request(fetch_each(12, [], session_id=session, session_epoch=3))
        assert answered(after) == [(TOPIC, 0, 1)]
