"""A fetch answers whole record batches up to max_bytes, the first whole
even if larger (Kafka's rule), also when one append stored several
batches as one entry: from the batch holding the offset, never from the
entry's start, and never past max_bytes for a later batch of it. Reads
from the log cache and from objects alike; read_committed too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine.engine import READ_COMMITTED
from tests.engine.appended_together import appended_as_one, batch_offsets, batches_of, split
from tests.engine.conftest import QUIET_STORE


@pytest.fixture(scope="module")
def opened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[engine.Engine]:
    root: Path = tmp_path_factory.mktemp("whole-batches")
    with engine.open(root / "node", config=engine.EngineConfig(store=QUIET_STORE)) as e:
        yield e


def test_a_small_max_bytes_gets_the_first_batch_of_a_multi_batch_append(
    opened: engine.Engine,
) -> None:
    stored = appended_as_one(opened, "small-max", batches_of([3] * 8))
    fetched = opened.fetch("small-max", 0, 0, max_bytes=1)
    assert split(fetched.records) == stored[:1]
    assert fetched.next_offset == 3
    two = len(stored[0]) + len(stored[1])
    fetched = opened.fetch("small-max", 0, 0, max_bytes=two + len(stored[2]) - 1)
    assert split(fetched.records) == stored[:2]
    assert fetched.next_offset == 6


def test_a_fetch_inside_a_multi_batch_append_starts_at_the_batch_holding_its_offset(
    opened: engine.Engine,
) -> None:
    stored = appended_as_one(opened, "inside", batches_of([3] * 8))
    fetched = opened.fetch("inside", 0, 7, max_bytes=1 << 20)  # offset 7: the third batch's
    assert split(fetched.records) == stored[2:]
    assert fetched.next_offset == 24
    fetched = opened.fetch("inside", 0, 7, max_bytes=1)
    assert split(fetched.records) == stored[2:3]
    assert fetched.next_offset == 9


def test_a_read_committed_fetch_is_cut_the_same_way(opened: engine.Engine) -> None:
    stored = appended_as_one(opened, "committed", batches_of([2] * 5))
    fetched = opened.fetch("committed", 0, 3, max_bytes=1, isolation_level=READ_COMMITTED)
    assert split(fetched.records) == stored[1:2]
    assert fetched.next_offset == 4
    assert fetched.aborted_transactions == []


def test_a_read_from_objects_is_cut_the_same_way(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node", config=engine.EngineConfig(store=QUIET_STORE)) as e:
        stored = appended_as_one(e, "uploaded", batches_of([4] * 6))
    with engine.open(tmp_path / "node", config=engine.EngineConfig(store=QUIET_STORE)) as e:
        fetched = e.fetch("uploaded", 0, 9, max_bytes=1)
        assert e.store.log_cache_reads()[0] == 0  # closing uploaded: reads go to objects
        assert split(fetched.records) == stored[2:3]
        assert fetched.next_offset == 12


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=1, max_size=12),
    budget=st.integers(1, 2000),
    start=st.integers(0, 80),
)
def test_fetches_walk_an_append_batch_by_batch_within_max_bytes(
    opened: engine.Engine, sizes: list[int], budget: int, start: int
) -> None:
    """From any offset, fetches of at most ``budget`` bytes return each
    batch once, in order, from the one holding the offset: whole batches,
    the first even if over the budget, the rest within it."""
    topic = f"walk-{len(opened.list_topics())}"
    stored = appended_as_one(opened, topic, batches_of(sizes))
    end = sum(sizes)
    offset = min(start, end - 1)
    holding = next(i for i, b in enumerate(stored) if batch_offsets(b)[1] >= offset)
    seen: list[bytes] = []
    while offset < end:
        fetched = opened.fetch(topic, 0, offset, max_bytes=budget)
        got = split(fetched.records)
        assert got, "a fetch below the end returns at least one batch"
        first_base, first_last = batch_offsets(got[0])
        assert first_base <= offset <= first_last  # the batch holding the offset
        assert len(got) == 1 or sum(len(b) for b in got) <= budget
        assert fetched.next_offset == batch_offsets(got[-1])[1] + 1
        seen += got
        offset = fetched.next_offset
    assert seen == stored[holding:]
