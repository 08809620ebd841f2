"""A Fetch of data that only object storage holds (a catching-up consumer,
past the log cache) asks each question of the read once on its way down:
whether the topic is masked, whether an earlier fetch's read of the same
data can be shared, whether the log cache answers; then it awaits the
object read. The answer is the same as a read of the partition's own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.server import shared_reads
from engine.server.handlers import fetch
from s3stream import StreamStoreConfig
from s3stream.fetcher import Fetcher
from tests.server.fetching import answer, entries_by_partition, fetch_request, send_records

PARTITIONS = 3
RECORDS = 4

COLD = StreamStoreConfig(
    upload_interval_s=3600,
    compaction_interval_s=3600,
    log_cache_bytes=0,  # once uploaded, a read needs an object
    remote_fetch_max_wait_ms=60_000,  # a loaded machine's slow read is still answered
)


@pytest.fixture
def uploaded(tmp_path: Path) -> Iterator[engine.Engine]:
    config = engine.EngineConfig(store=COLD)
    with engine.open(tmp_path / "data", config=config) as opened:
        opened.create_topic("t", PARTITIONS)
        send_records(opened, "t", dict.fromkeys(range(PARTITIONS), RECORDS))
        assert opened.store.flush(30)
        yield opened


def _counted(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[Any]:
    """The calls of ``owner.name`` from now on, each by its first argument
    (after ``self``, for a class's method)."""
    calls: list[Any] = []
    called = getattr(owner, name)

    def counted(*args: Any) -> Any:
        calls.append(args[1] if isinstance(owner, type) else args[0])
        return called(*args)

    monkeypatch.setattr(owner, name, counted)
    return calls


@pytest.mark.parametrize("version", [4, 11, 12, 13, 17])
def test_a_cold_read_asks_each_question_once(
    uploaded: engine.Engine, monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    topic = "t" if version < 13 else uuid.UUID(bytes=uploaded.topic_id("t"))
    own = [b"".join(uploaded.fetch("t", p, 2).records) for p in range(PARTITIONS)]
    hot = _counted(monkeypatch, Fetcher, "_hot")
    cold = _counted(monkeypatch, Fetcher, "fetch_cold")
    shared = _counted(monkeypatch, shared_reads.SharedReads, "get")
    masking = _counted(monkeypatch, fetch, "masking_for")
    # A partition a Fetch, so that each is its topic's run and none is
    # shared with a read before it.
    for partition in range(PARTITIONS):
        alone = fetch_request(version, [(topic, [(partition, 2)])])
        (entry,) = entries_by_partition(answer(uploaded, alone)).values()
        assert (entry.error_code, entry.high_watermark) == (0, RECORDS)
        assert entry.records == own[partition]
    streams = [uploaded.partition("t", p).stream_id for p in range(PARTITIONS)]
    assert hot == streams  # the log cache asked once a read: it has none of them
    assert cold == streams  # then the object read, awaited
    assert len(shared) == PARTITIONS
    assert len(masking) == PARTITIONS
