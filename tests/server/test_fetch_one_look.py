"""A Fetch looks at each partition it names once: its leader looked up once
and its watermarks read with one look at the stream store,
whether it is caught up, has records to read or is quiet in a session. The
answers are those of the general path, which looks again at each step."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pytest

import engine
from engine.partition import Partition
from engine.server.handlers import fetch
from s3stream.stream_store import StreamStore
from tests.server.fetching import (
    answer,
    engine_with_records,
    fetch_request,
    transactions_aborted_and_open,
)
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire

PARTITIONS = 6


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[engine.Engine]:
    """Partitions in every state a Fetch meets: empty, with records, with a
    log start moved past some, with an aborted transaction, with an open
    one (its last stable offset below its high watermark)."""
    data = tmp_path_factory.mktemp("one-look") / "data"
    with engine_with_records(data, PARTITIONS, dict.fromkeys(range(1, PARTITIONS), 3)) as opened:
        opened.delete_records("t", 2, 2)
        with transactions_aborted_and_open(opened, "t", aborted_partition=3, open_partition=4):
            yield opened


def _request(offsets: list[int], isolation_level: int, epoch: int = -1, session: int = 0) -> Any:
    return fetch_request(
        12,
        [("t", enumerate(offsets))],
        isolation_level=isolation_level,
        session_id=session,
        session_epoch=epoch,
    )


def _entries(response: Any) -> list[tuple[Any, ...]]:
    return [
        (
            p.partition_index,
            p.error_code,
            p.high_watermark,
            p.last_stable_offset,
            p.log_start_offset,
            p.aborted_transactions,
            p.records,
        )
        for topic in response.responses
        for p in topic.partitions
    ]


OFFSETS = [0, 1, 2, 3, 4, 5]
"""Each partition is fetched at each of these: below its log start, at it,
inside its records, at its high watermark (3, or 4 with a marker), past it."""


@pytest.mark.parametrize("isolation_level", [0, 1])
def test_the_answers_are_the_general_paths(
    served: engine.Engine, isolation_level: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    combos = [
        [OFFSETS[(seed + p * 2) % len(OFFSETS)] for p in range(PARTITIONS)]
        for seed in range(len(OFFSETS))
    ]
    looked = [_entries(answer(served, _request(c, isolation_level))) for c in combos]
    monkeypatch.setattr(fetch, "_look", lambda *_: None)
    monkeypatch.setattr(
        fetch, "_run_looks", lambda _context, _wanted, start, _most: ([None], start + 1)
    )
    general = [_entries(answer(served, _request(c, isolation_level))) for c in combos]
    assert looked == general
    assert any(records for entries in looked for *_, records in entries)  # reads were made


def _counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts lookups of a partition's leader and of a topic's partition
    table, and looks at the stream store for a stream's offsets (one at a
    time, or a topic's together under one hold of the store's lock)."""
    counts = dict.fromkeys(["leaders", "topics", "store looks"], 0)
    lookup = engine.Engine.partition
    topic_lookup = engine.Engine.topic_leaders
    together = StreamStore.offsets_many

    def counted_lookup(self: engine.Engine, *args: Any, **kwargs: Any) -> Partition:
        counts["leaders"] += 1
        return lookup(self, *args, **kwargs)

    def counted_topic(self: engine.Engine, name: str) -> Any:
        counts["topics"] += 1
        return topic_lookup(self, name)

    def counted_together(self: StreamStore, stream_ids: Iterable[int]) -> Any:
        named = list(stream_ids)
        counts["store looks"] += len(named)
        return together(self, named)

    monkeypatch.setattr(engine.Engine, "partition", counted_lookup)
    monkeypatch.setattr(engine.Engine, "topic_leaders", counted_topic)
    monkeypatch.setattr(StreamStore, "offsets_many", counted_together)
    for name in ("offsets", "start_offset", "end_offset"):
        look = getattr(StreamStore, name)

        def counted_look(self: StreamStore, stream_id: int, _look: Any = look) -> Any:
            counts["store looks"] += 1
            return _look(self, stream_id)

        monkeypatch.setattr(StreamStore, name, counted_look)
    return counts


@pytest.mark.parametrize("isolation_level", [0, 1])
def test_a_partition_with_records_is_looked_at_once(
    served: engine.Engine, isolation_level: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = InProcessServer(served)
    try:
        with Wire(server.bootstrap) as wire:
            request = _request([0, 1, 2, 0, 0, 0], isolation_level)
            counts = _counted(monkeypatch)
            entries = _entries(wire.request(request))
    finally:
        server.stop()
    assert sum(1 for *_, records in entries if records) == PARTITIONS - 1  # all but the empty one
    assert counts == {"leaders": 0, "topics": 1, "store looks": PARTITIONS}


def test_a_quiet_session_partition_is_looked_at_once(
    served: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    ends = [served.partition("t", p).high_watermark for p in range(PARTITIONS)]
    server = InProcessServer(served)
    try:
        with Wire(server.bootstrap) as wire:
            opened = wire.request(_request(ends, 0, epoch=0))
            assert opened.session_id != 0
            counts = _counted(monkeypatch)
            quiet = wire.request(_request([], 0, epoch=1, session=opened.session_id))
    finally:
        server.stop()
    assert quiet.error_code == 0 and _entries(quiet) == []  # nothing new: left out
    assert counts == {"leaders": 0, "topics": 1, "store looks": PARTITIONS}
