"""The memory API's reads by time and by vector over a topic deleted
before them, under them (at the exact moment, from a hook) and deleted and
created again (engine/memory/deleted_topics.py): a snapshot, a state and a
replay's start end with UnknownTopicId for a vector naming the topic's id
and UnknownTopic for a read by name, never with a storage error, a vector
of two incarnations, an answer from what the deleted stream had left, or
the new topic's records read as the old one's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.client.consumer import Consumer
from engine.errors import UnknownTopic, UnknownTopicId
from engine.memory import snapshot as memory_snapshot
from engine.memory.vector import OffsetVector, Position
from engine.partition import Partition
from engine.topic_id import NO_TOPIC_ID
from s3stream.fetcher import Fetcher
from tests.engine.helpers_records import batch
from tests.server.fetching import before_the_object_read
from tests.server.test_fetch_cold_read import COLD

COMPACT = {"cleanup.policy": "compact"}
RECORDS = 4


def _fill(opened: engine.Engine, value: bytes) -> None:
    """RECORDS records of key ``k`` in each partition, the last ``value``."""
    for partition in range(opened.topic_shape("t")[1]):
        values = [b"old-%d" % i for i in range(RECORDS - 1)] + [value]
        for v in values:
            opened.produce("t", partition, batch([v]))


@pytest.fixture
def uploaded(tmp_path: Path) -> Iterator[engine.Engine]:
    """A compacted topic of two partitions whose records only object
    storage holds: the memory reads of it are object reads."""
    with engine.open(tmp_path / "data", config=engine.EngineConfig(store=COLD)) as opened:
        opened.create_topic("t", 2, COMPACT)
        _fill(opened, b"first")
        assert opened.store.flush(30)
        yield opened


def _created_again(opened: engine.Engine) -> Callable[[], None]:
    """Deletes the topic and creates it again, with records at the same
    offsets (the same key, another last value)."""

    def change() -> None:
        opened.delete_topic("t")
        opened.create_topic("t", 2, COMPACT)
        _fill(opened, b"second")

    return change


def _deleted(opened: engine.Engine) -> Callable[[], None]:
    return lambda: opened.delete_topic("t")


CHANGES = pytest.mark.parametrize("change", [_deleted, _created_again], ids=["deleted", "again"])


def _after_the_first(
    monkeypatch: pytest.MonkeyPatch, owner: object, name: str, change: Callable[[], None]
) -> list[bool]:
    """``change`` made once, after the first call of ``owner.name``."""
    called = getattr(owner, name)
    changed: list[bool] = []

    def then_changed(*args: Any, **kwargs: Any) -> Any:
        found = called(*args, **kwargs)
        if not changed:
            changed.append(True)
            change()
        return found

    monkeypatch.setattr(owner, name, then_changed)
    return changed


# -- snapshot -----------------------------------------------------------------------


def test_a_snapshot_of_a_topic_deleted_before_its_offsets_are_read_raises_unknown_topic(
    uploaded: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The topic's partitions looked up, then their streams gone before the
    cut reads their offsets: not a storage error."""
    changed = _after_the_first(monkeypatch, uploaded, "topic_leaders", _deleted(uploaded))
    with pytest.raises(UnknownTopic):
        uploaded.snapshot(["t"])
    assert changed


def test_a_snapshot_at_a_time_of_a_topic_deleted_before_its_objects_are_read_raises(
    uploaded: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cut by time of the last partition reads its objects
    (offset_for_timestamp), which the topic's deletion leaves none of for
    the read: no cut at the end of what the deleted stream had left."""
    last = uploaded.partition("t", 1).stream_id
    read_objects = Fetcher._read_objects
    deleted: list[bool] = []

    def deleted_first(self: Fetcher, stream_id: int, *args: Any) -> Any:
        if stream_id == last and not deleted:
            deleted.append(True)
            uploaded.delete_topic("t")
        return read_objects(self, stream_id, *args)

    monkeypatch.setattr(Fetcher, "_read_objects", deleted_first)
    with pytest.raises(UnknownTopic):
        uploaded.snapshot(["t"], 2**41)
    assert deleted, "the cut never read the objects"


@CHANGES
def test_a_snapshot_of_a_topic_deleted_between_its_partitions_raises_unknown_topic(
    uploaded: engine.Engine, monkeypatch: pytest.MonkeyPatch, change: Callable[..., Any]
) -> None:
    """Partition 0 cut, then the topic gone (or another of the name): no
    vector of a deleted topic's positions, nor of two incarnations'."""
    changed = _after_the_first(monkeypatch, memory_snapshot, "_cut", change(uploaded))
    with pytest.raises(UnknownTopic):
        uploaded.snapshot(["t"])
    assert changed


@CHANGES
def test_the_earliest_vector_of_a_topic_deleted_between_its_partitions_raises_unknown_topic(
    uploaded: engine.Engine, monkeypatch: pytest.MonkeyPatch, change: Callable[..., Any]
) -> None:
    changed = _after_the_first(monkeypatch, memory_snapshot, "epoch_of", change(uploaded))
    with pytest.raises(UnknownTopic):
        uploaded.earliest(["t"])
    assert changed


# -- state_at -----------------------------------------------------------------------


def _vector(opened: engine.Engine, *, with_id: bool) -> OffsetVector:
    cut = opened.snapshot(["t"])
    return cut if with_id else _vector_by_name(cut)


def _state(opened: engine.Engine, form: str, vector: OffsetVector) -> Any:
    if form == "time":
        return opened.state_at("t", 2**41)
    if form == "time_async":
        return asyncio.run(opened.state_at_async("t", 2**41))
    return opened.state_at("t", vector=vector)


STATE_FORMS = pytest.mark.parametrize(
    ("form", "expected"),
    [
        ("time", UnknownTopic),
        ("time_async", UnknownTopic),
        ("vector_by_name", UnknownTopic),
        ("vector_with_id", UnknownTopicId),
    ],
)


@CHANGES
@STATE_FORMS
def test_a_state_of_a_topic_deleted_before_its_objects_are_read_raises(
    uploaded: engine.Engine,
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[..., Any],
    form: str,
    expected: type[Exception],
) -> None:
    """The read of the deleted stream's objects found none: the state of
    what had been read so far (nothing) is no answer, and the topic of
    the name now (if any) is not the one the read began on."""
    vector = _vector(uploaded, with_id=form == "vector_with_id")
    changed = before_the_object_read(monkeypatch, change(uploaded), "_read_objects")
    with pytest.raises(expected) as raised:
        _state(uploaded, form, vector)
    assert changed, "the state never read the objects"
    if expected is UnknownTopicId:
        assert raised.value.topic_id == vector.topic_id("t")  # type: ignore[attr-defined]


@CHANGES
@STATE_FORMS
def test_a_state_of_a_topic_deleted_between_its_partitions_raises(
    uploaded: engine.Engine,
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[..., Any],
    form: str,
    expected: type[Exception],
) -> None:
    """Partition 0 read whole, then the topic deleted (and maybe created
    again, its records at the same offsets): partition 1 is not read from
    the new topic, and no state of the old one's partition 0 alone."""
    vector = _vector(uploaded, with_id=form == "vector_with_id")
    fetch = "fetch_async" if form == "time_async" else "fetch"
    read = getattr(Partition, fetch)
    changed: list[bool] = []

    def changed_at_partition_1(self: Partition, *args: Any, **kwargs: Any) -> Any:
        if self.index == 1 and not changed:
            changed.append(True)
            change(uploaded)()
        return read(self, *args, **kwargs)

    monkeypatch.setattr(Partition, fetch, changed_at_partition_1)
    with pytest.raises(expected):
        _state(uploaded, form, vector)
    assert changed


def test_a_state_below_a_vector_of_a_topic_deleted_before_the_call_is_unknown_topic_id(
    uploaded: engine.Engine,
) -> None:
    """Whether or not a topic of the name exists again: the vector's
    positions are places in a topic that no longer exists."""
    vector = _vector(uploaded, with_id=True)
    uploaded.delete_topic("t")
    with pytest.raises(UnknownTopicId):
        uploaded.state_at("t", vector=vector)
    with pytest.raises(UnknownTopic):
        uploaded.state_at("t", 2**41)


def test_a_live_topics_state_reads_as_before(uploaded: engine.Engine) -> None:
    state = uploaded.state_at("t", vector=_vector(uploaded, with_id=True))
    assert state.values[b"k"].value == b"first"
    assert state.values[b"k"].ref.topic_id == uploaded.topic_id("t")


# -- replay -------------------------------------------------------------------------


@pytest.mark.parametrize("with_id", [True, False], ids=["vector_with_id", "vector_by_name"])
def test_a_replay_of_a_topic_created_again_under_its_start_raises(
    uploaded: engine.Engine, monkeypatch: pytest.MonkeyPatch, with_id: bool
) -> None:
    """The topic deleted and created again between the replay's look at
    the partition (its topic id checked) and its check of the log's
    offsets: those are the partition's looked at, never the new topic's,
    which a lookup by name would find (and then read its records as the
    vector's)."""
    vector = _vector(uploaded, with_id=with_id)
    changed = _after_the_first(
        monkeypatch, OffsetVector, "check_topic_id", _created_again(uploaded)
    )
    expected = UnknownTopicId if with_id else UnknownTopic
    with pytest.raises(expected):
        uploaded.replay(vector, timeout=5)
    assert changed


def test_a_replay_to_a_vector_of_a_topic_deleted_before_it_is_unknown_topic_id(
    uploaded: engine.Engine,
) -> None:
    vector = _vector(uploaded, with_id=True)
    uploaded.delete_topic("t")
    with pytest.raises(UnknownTopicId) as raised:
        uploaded.replay(vector, timeout=5)
    assert raised.value.topic_id == vector.topic_id("t") != NO_TOPIC_ID
    with pytest.raises(UnknownTopic):
        uploaded.replay(_vector_by_name(vector), timeout=5)


def _vector_by_name(vector: OffsetVector) -> OffsetVector:
    return OffsetVector({tp: Position(p.offset, p.leader_epoch) for tp, p in vector.items()})


# -- a topic created again with fewer partitions ------------------------------------


def _created_again_with_one_partition(opened: engine.Engine) -> None:
    """The two-partition topic deleted and created again with one: the
    vector's partition 1 exists in no topic of the name."""
    opened.delete_topic("t")
    opened.create_topic("t", 1, COMPACT)


def test_a_state_below_a_vector_of_a_topic_created_again_smaller_is_unknown_topic_id(
    uploaded: engine.Engine,
) -> None:
    """The vector's id is checked before its partitions are counted: the
    topic it names is gone, whatever the new one's shape."""
    vector = _vector(uploaded, with_id=True)
    _created_again_with_one_partition(uploaded)
    with pytest.raises(UnknownTopicId) as raised:
        uploaded.state_at("t", vector=vector)
    assert raised.value.topic_id == vector.topic_id("t") != NO_TOPIC_ID


def test_a_replay_to_a_vector_of_a_topic_created_again_smaller_is_unknown_topic_id(
    uploaded: engine.Engine,
) -> None:
    """As its fetches would say, not UnknownPartition for the partition
    the new topic lacks."""
    vector = _vector(uploaded, with_id=True)
    _created_again_with_one_partition(uploaded)
    with pytest.raises(UnknownTopicId) as raised:
        uploaded.replay(vector, timeout=5)
    assert raised.value.topic_id == vector.topic_id("t") != NO_TOPIC_ID


# -- fork ---------------------------------------------------------------------------


def test_a_fork_at_a_vector_of_a_topic_deleted_before_it_is_unknown_topic_id(
    uploaded: engine.Engine,
) -> None:
    """As a replay or a state below the vector: the topic its id names is
    gone (docs/memory.md), and nothing is forked; by name, UnknownTopic."""
    vector = _vector(uploaded, with_id=True)
    uploaded.delete_topic("t")
    with pytest.raises(UnknownTopicId) as raised:
        uploaded.fork("t", vector, name="forked")
    assert raised.value.topic_id == vector.topic_id("t") != NO_TOPIC_ID
    with pytest.raises(UnknownTopic):
        uploaded.fork("t", _vector_by_name(vector), name="forked")
    assert "forked" not in uploaded.list_topics()


@CHANGES
@pytest.mark.parametrize("with_id", [True, False], ids=["vector_with_id", "vector_by_name"])
def test_a_state_of_a_topic_deleted_after_its_lookup_reads_the_partitions_looked_up(
    uploaded: engine.Engine,
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[..., Any],
    with_id: bool,
) -> None:
    """The topic deleted (and maybe created again) between the state's
    look at it and its partitions' reads: the vector's topic is gone,
    UnknownTopicId where it names the id, never UnknownTopic for a
    lookup by name again, nor the new topic's partitions."""
    vector = _vector(uploaded, with_id=with_id)
    registry = uploaded._registry
    changed = _after_the_first(monkeypatch, registry, "topic", change(uploaded))
    with pytest.raises(UnknownTopicId if with_id else UnknownTopic):
        uploaded.state_at("t", vector=vector)
    assert changed


# -- lookup -------------------------------------------------------------------------


@CHANGES
def test_a_lookup_of_a_topic_deleted_between_its_partitions_raises_unknown_topic(
    uploaded: engine.Engine, monkeypatch: pytest.MonkeyPatch, change: Callable[..., Any]
) -> None:
    """Partition 0 scanned whole, then the topic deleted (and maybe created
    again) as partition 1's read begins: partition 1 is not scanned in the
    new topic, and the matches of the old one's partition 0 alone are no
    answer."""
    import engine.engine as engine_module

    damage_at = engine_module.damage_at
    changed: list[bool] = []

    def changed_at_partition_1(topic: str, partition: int, offset: int) -> Any:
        if partition == 1 and not changed:
            changed.append(True)
            change(uploaded)()
        return damage_at(topic, partition, offset)

    monkeypatch.setattr(engine_module, "damage_at", changed_at_partition_1)
    with pytest.raises(UnknownTopic):
        uploaded.lookup("t", "h", b"v")
    assert changed


# -- a topic created again between a snapshot's look and its cuts -------------------


def _created_again_with(partitions: int) -> Callable[[engine.Engine], Callable[[], None]]:
    def changing(opened: engine.Engine) -> Callable[[], None]:
        def change() -> None:
            opened.delete_topic("t")
            opened.create_topic("t", partitions, COMPACT)

        return change

    return changing


SHAPES = pytest.mark.parametrize(
    "change", [_created_again_with(1), _created_again_with(3)], ids=["fewer", "more"]
)


def _cuts(opened: engine.Engine, call: str) -> OffsetVector:
    if call == "snapshot":
        return opened.snapshot(["t"])
    if call == "snapshot_at":
        return opened.snapshot(["t"], 2**41)
    if call == "snapshot_async_at":
        return asyncio.run(opened.snapshot_async(["t"], 2**41))
    return opened.earliest(["t"])


@SHAPES
@pytest.mark.parametrize("call", ["snapshot", "snapshot_at", "snapshot_async_at", "earliest"])
def test_a_snapshot_of_a_topic_created_again_after_its_partitions_are_listed_raises_unknown_topic(
    uploaded: engine.Engine,
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[..., Any],
    call: str,
) -> None:
    """The topic's partitions listed, then the topic deleted and created
    again with fewer (or more) before any is cut: the topic the call named
    is gone, as for a deletion alone; never UnknownPartition for the
    listed partition the new topic lacks, nor a vector of some of the new
    topic's partitions."""
    changed = _after_the_first(monkeypatch, memory_snapshot, "_partitions", change(uploaded))
    with pytest.raises(UnknownTopic) as raised:
        _cuts(uploaded, call)
    assert changed
    assert type(raised.value) is UnknownTopic
    assert raised.value.topic == "t"


@SHAPES
def test_a_state_of_a_topic_created_again_after_its_lookup_raises_unknown_topic(
    uploaded: engine.Engine, monkeypatch: pytest.MonkeyPatch, change: Callable[..., Any]
) -> None:
    """A state by name counts the partitions of the topic it looked up
    (not of one looked up again): the partition the new topic lacks is
    still one of the topic read, which is gone."""
    vector = _vector(uploaded, with_id=False)
    registry = uploaded._registry
    changed = _after_the_first(monkeypatch, registry, "topic", change(uploaded))
    with pytest.raises(UnknownTopic) as raised:
        uploaded.state_at("t", vector=vector, partitions=[1])
    assert changed
    assert type(raised.value) is UnknownTopic


# -- a replay from a vector with ids to one without ---------------------------------


def _replayed(opened: engine.Engine, **options: Any) -> tuple[Any, bytes]:
    """A replay of every record of ``t``, from its earliest vector (with the
    topic's id) to a snapshot by name (no ids); and the id."""
    since = opened.earliest(["t"])
    until = _vector_by_name(opened.snapshot(["t"]))
    assert since.topic_id("t") != NO_TOPIC_ID == until.topic_id("t")
    return opened.replay(until, since, timeout=5, **options), since.topic_id("t")


def _read_all(replay: Any, how: str) -> list[Any]:
    if how == "iter":
        return list(replay)
    if how == "poll":
        records: list[Any] = []
        while not replay.at_end():
            records += replay.poll()
        return records
    if how == "aiter":

        async def iterated() -> list[Any]:
            return [record async for record in replay]

        return asyncio.run(iterated())

    async def polled() -> list[Any]:
        records: list[Any] = []
        while not replay.at_end():
            records += await replay.poll_async()
        return records

    return asyncio.run(polled())


READS = pytest.mark.parametrize("how", ["iter", "poll", "aiter", "poll_async"])


@READS
def test_a_replay_since_a_vector_with_ids_of_a_topic_created_again_after_its_start_raises(
    uploaded: engine.Engine, how: str
) -> None:
    """The start checked the topic ``since`` names by id; the topic
    deleted and created again (records at the same offsets) before the
    first fetch: UnknownTopicId, as where ``until`` names the id, never
    the new topic's records read as the old one's."""
    replay, topic_id = _replayed(uploaded)
    with replay:
        _created_again(uploaded)()
        with pytest.raises(UnknownTopicId) as raised:
            _read_all(replay, how)
    assert raised.value.topic_id == topic_id


@pytest.mark.parametrize("how", ["iter", "aiter"])
def test_a_replay_since_a_vector_with_ids_of_a_topic_created_again_mid_replay_raises(
    uploaded: engine.Engine, how: str
) -> None:
    """One batch a fetch: the topic created again once the first record is
    handed out; every record after it would be the new topic's."""
    replay, topic_id = _replayed(uploaded, fetch_max_bytes=1)
    handed: list[bytes | None] = []
    with replay, pytest.raises(UnknownTopicId) as raised:
        _read_changing(replay, how, _created_again(uploaded), handed)
    assert raised.value.topic_id == topic_id
    assert handed[:1] == [b"old-0"]
    assert b"second" not in handed and len(handed) < 2 * RECORDS


def _read_changing(replay: Any, how: str, change: Callable[[], None], handed: list[Any]) -> None:
    """Reads ``replay`` whole (``iter`` or ``aiter``) into ``handed``,
    ``change`` made once the first record is handed out."""

    def take(record: Any) -> None:
        handed.append(record.value)
        if len(handed) == 1:
            change()

    async def iterated() -> None:
        async for record in replay:
            take(record)

    if how == "iter":
        for record in replay:
            take(record)
    else:
        asyncio.run(iterated())


def test_a_replay_since_a_vector_with_ids_of_a_topic_created_again_smaller_is_unknown_topic_id(
    uploaded: engine.Engine,
) -> None:
    """Before the replay: the topic ``since`` names is gone, whatever the
    new one's shape; not UnknownPartition for the partition it lacks."""
    since = uploaded.earliest(["t"])
    until = _vector_by_name(uploaded.snapshot(["t"]))
    _created_again_with_one_partition(uploaded)
    with pytest.raises(UnknownTopicId) as raised:
        uploaded.replay(until, since, timeout=5)
    assert raised.value.topic_id == since.topic_id("t") != NO_TOPIC_ID


@pytest.mark.parametrize("how", ["iter", "aiter"])
def test_a_replay_by_name_of_a_topic_created_again_mid_replay_raises_unknown_topic(
    uploaded: engine.Engine, how: str
) -> None:
    """Neither vector names an id: the replay reads the topic the name held
    as it began, and the topic created again once the first record is
    handed out ends it as a deletion under a read by name does."""
    until = _vector_by_name(uploaded.snapshot(["t"]))
    replay = uploaded.replay(until, timeout=5, fetch_max_bytes=1)
    handed: list[bytes | None] = []
    with replay, pytest.raises(UnknownTopic) as raised:
        _read_changing(replay, how, _created_again(uploaded), handed)
    assert type(raised.value) is UnknownTopic
    assert handed[:1] == [b"old-0"]
    assert b"second" not in handed and len(handed) < 2 * RECORDS


@pytest.mark.parametrize("with_id", [True, False], ids=["vector_with_id", "vector_by_name"])
def test_a_replay_of_a_topic_created_again_smaller_between_its_partitions_starts_raises(
    uploaded: engine.Engine, monkeypatch: pytest.MonkeyPatch, with_id: bool
) -> None:
    """Partition 0's start checked, then the topic created again with one
    partition before partition 1's: the topic the replay began on is gone,
    not UnknownPartition for the partition the new one lacks."""
    vector = _vector(uploaded, with_id=with_id)
    changed = _after_the_first(
        monkeypatch, Consumer, "seek", lambda: _created_again_with_one_partition(uploaded)
    )
    with pytest.raises(UnknownTopicId if with_id else UnknownTopic) as raised:
        uploaded.replay(vector, timeout=5)
    assert changed
    assert with_id or type(raised.value) is UnknownTopic
