"""ListOffsets MAX_TIMESTAMP (-3) against a model: for any batches of
timestamps (ties, a log start moved anywhere, a small index interval so
the time index has entries), the answer is the first offset still in the
log holding the largest timestamp there, as Kafka's offsetOfMaxTimestamp."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
import native
from engine.offset_lookup import MAX_TIMESTAMP
from native.records import RecordSpec

T0 = 1_700_000_000_000

batches = st.lists(st.lists(st.integers(0, 40), min_size=1, max_size=6), min_size=1, max_size=12)


@pytest.fixture(scope="module")
def opened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[engine.Engine]:
    root = tmp_path_factory.mktemp("max")
    with engine.open(root / "node", "file://" + str(root / "bucket")) as handle:
        yield handle


@settings(max_examples=60)
@given(batches=batches, cut=st.integers(0, 80))
def test_max_timestamp_is_the_first_offset_of_the_largest_remaining_timestamp(
    opened: engine.Engine, batches: list[list[int]], cut: int
) -> None:
    topic = f"t-{uuid.uuid4().hex[:12]}"
    opened.create_topic(topic, 1, {"index.interval.bytes": "80"})
    for batch in batches:
        specs = [RecordSpec(T0 + ts, b"k", b"v") for ts in batch]
        opened.produce(topic, 0, native.encode_batch(specs))
    stamps = list(itertools.chain.from_iterable(batches))
    start = min(cut, len(stamps))
    if start:
        opened.delete_records(topic, 0, start)
    remaining = stamps[start:]
    found = opened.list_offset(topic, 0, MAX_TIMESTAMP)
    if not remaining:
        assert (found.offset, found.timestamp) == (-1, -1)
    else:
        largest = max(remaining)
        assert (found.offset, found.timestamp) == (
            start + remaining.index(largest),
            T0 + largest,
        )
