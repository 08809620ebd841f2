"""The consumer's poll over random batch sizes, partitions and budgets:
every record is handed out once, in its partition's order; no poll hands
out more than its record budget; no partition with records to read waits
P fetching polls or more (P partitions: each is the poll's first in
turn); and no poll leaves out a partition whose next batch, its size
known, fits what the poll left of its byte budget (a broker goes on past
a partition whose batch does not fit to the later ones). A poll hands out
records already fetched before it fetches again (as Kafka's fetch buffer
hands out a completed fetch first), so waits and budgets are counted per
fetching poll, with the polls that hand out what it fetched."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine.types import TopicPartition
from s3stream import StreamStoreConfig
from tests.engine.counted_polls import counted_reads, poll
from tests.engine.helpers_records import batch

Runs = list[tuple[int, int, int]]
"""A partition's batches as runs of alike ones: (batches, records a batch,
bytes a record's value)."""

SMALL_SEGMENTS = engine.EngineConfig(store=StreamStoreConfig(wal_segment_bytes=256 * 1024))
"""A close trims the WAL and waits for a spare segment to be zero-filled:
at the default segment size, most of an example's time."""

partition_runs = st.lists(
    st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(0, 700)), max_size=3
)


@settings(max_examples=60, deadline=None)
@given(
    logs=st.lists(partition_runs, min_size=1, max_size=5),
    fetch_max_bytes=st.integers(1, 4000),
    max_partition_fetch_bytes=st.integers(1, 4000),
    max_poll_records=st.integers(1, 8),
    polled=st.sampled_from(["blocking", "async"]),
    reopened=st.booleans(),
)
def test_every_record_once_in_order_within_budgets_and_no_partition_starved(
    logs: list[Runs],
    fetch_max_bytes: int,
    max_partition_fetch_bytes: int,
    max_poll_records: int,
    polled: str,
    reopened: bool,
) -> None:
    shapes = {
        p: [(records, size) for count, records, size in runs for _ in range(count)]
        for p, runs in enumerate(logs)
    }
    if not reopened:
        for shape in shapes.values():  # one more batch, appended once the engine reopened
            shape.extend(shape[-1:])
    batches = {
        p: [
            [b"%d-%d-%d-" % (p, i, j) + bytes(size) for j in range(records)]
            for i, (records, size) in enumerate(alike)
        ]
        for p, alike in shapes.items()
    }
    appended_since_open = 0 if reopened else 1
    with tempfile.TemporaryDirectory() as directory, pytest.MonkeyPatch.context() as patch:
        node = Path(directory) / "node"
        with engine.open(node, config=SMALL_SEGMENTS) as e:
            e.create_topic("t", len(logs))
            for p, values in batches.items():
                for records in values[: len(values) - appended_since_open]:
                    e.produce("t", p, batch(records))
        # Reopened, with nothing appended since: no batch size is known.
        with engine.open(node, config=SMALL_SEGMENTS) as e:
            for p, values in batches.items():
                for records in values[len(values) - appended_since_open :]:
                    e.produce("t", p, batch(records))
            limits = (fetch_max_bytes, max_partition_fetch_bytes, max_poll_records)
            handed = _consume(e, patch, polled, batches, limits)
    assert handed == {
        p: [v for records in values for v in records] for p, values in batches.items()
    }


def _consume(
    e: engine.Engine,
    patch: pytest.MonkeyPatch,
    polled: str,
    batches: dict[int, list[list[bytes]]],
    limits: tuple[int, int, int],
) -> dict[int, list[bytes]]:
    """Polls until every record of ``batches`` is handed out, checking each
    poll's record budget and, per fetching poll, each partition's wait and
    what was left of the byte budget; the values handed out, by partition,
    in the order they came."""
    fetch_max_bytes, max_partition_fetch_bytes, max_poll_records = limits
    sizes = {p: [len(batch(records)) for records in values] for p, values in batches.items()}
    total = sum(len(records) for values in batches.values() for records in values)
    handed: dict[int, list[bytes]] = {p: [] for p in batches}
    taken = dict.fromkeys(batches, 0)
    """Per partition, its batches handed out in full."""
    waited = dict.fromkeys(batches, 0)
    """Per partition with records left: fetching polls since it last had some."""
    fetched: dict[int, set[int]] | None = None
    """What the last fetching poll fetched, by partition: its batches."""
    consumer = e.consumer(
        auto_offset_reset="earliest",
        fetch_max_bytes=fetch_max_bytes,
        max_partition_fetch_bytes=max_partition_fetch_bytes,
        max_poll_records=max_poll_records,
    )
    with consumer, counted_reads(e, patch) as read:
        consumer.assign([TopicPartition("t", p) for p in batches])
        for _ in range(4 * total + 4 * len(batches) + 4):
            if sum(map(len, handed.values())) == total:
                break
            reads_before = len(read)
            got = poll(consumer, polled, 0)
            assert len(got) <= max_poll_records
            if len(read) > reads_before:  # a fetching poll: the last one's records are all out
                if fetched is not None:
                    _check_fetched(fetched, sizes, taken, waited, fetch_max_bytes)
                fetched = {p: set() for p in batches}
            assert fetched is not None
            for record in got:
                handed[record.partition].append(record.value or b"")
                fetched[record.partition].add(int((record.value or b"").split(b"-")[1]))
                taken[record.partition] = len(
                    [r for r in batches[record.partition] if r[-1] in handed[record.partition]]
                )
    return handed


def _check_fetched(
    fetched: dict[int, set[int]],
    sizes: dict[int, list[int]],
    taken: dict[int, int],
    waited: dict[int, int],
    budget: int,
) -> None:
    room = budget - sum(sizes[p][i] for p, indices in fetched.items() for i in indices)
    for p, indices in fetched.items():
        after = taken[p]  # its next batch
        has_more = after < len(sizes[p])
        waited[p] = 0 if indices or not has_more else waited[p] + 1
        assert waited[p] < len(sizes), f"partition {p} waited {waited[p]} fetching polls"
        if indices or not has_more or after == 0:
            continue
        # The size the consumer last saw of it is its batch's: it had room.
        if sizes[p][after] == sizes[p][after - 1]:
            assert sizes[p][after] > room, (p, after, sizes[p][after], room)
