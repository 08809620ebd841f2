"""A sessionless Fetch looks at a topic's run of partitions in one pass
(fetch._run_looks: the topic and its partition table once, every
partition's watermarks under one hold of the store's lock) and writes a
caught-up topic's entries into one buffer. Its answers are byte for byte
those of a look at each partition on its own, for every version the
handler serves, over mixes of caught-up, behind, out-of-range, unknown and
fenced partitions, read committed or not, sessionless or in a session
(its full Fetch and its incremental one)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine.server.handlers import fetch
from s3stream.stream_store import StreamStore
from tests.server.fetching import TIMEOUT, fetch_request, send_records
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire

PARTITIONS = {"t": 4, "u": 2}
OFFSETS = [0, 1, 2, 3, 4, 7]
"""Below a moved log start, at it, inside the records, at the high
watermark (3, or 4 past an open transaction's batch), past it."""


WIDE = 100
"""Partitions of a topic of one record each."""


class Served:
    def __init__(self, opened: engine.Engine, server: InProcessServer) -> None:
        self.engine = opened
        self.server = server
        self.topic_ids = {
            name: uuid.UUID(bytes=opened.topic_id(name)) for name in [*PARTITIONS, "wide"]
        }


def _fill(data: Path) -> None:
    with engine.open(data, config=engine.EngineConfig.small()) as opened:
        for name, count in PARTITIONS.items():
            opened.create_topic(name, count)
            send_records(opened, name, dict.fromkeys(range(1, count), 3))
        opened.delete_records("t", 2, 2)
        opened.create_topic("wide", WIDE)
        with opened.producer() as producer:
            sent = [producer.send("wide", b"w", partition=p) for p in range(WIDE)]
            for record in sent:
                record.result(TIMEOUT)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Partitions empty, with records, with a moved log start and with an
    open transaction, on an engine opened a second time (its leader epoch
    has an older one before it, so a partition can be fenced)."""
    data = tmp_path_factory.mktemp("batch-looks") / "data"
    _fill(data)
    with engine.open(data, config=engine.EngineConfig.small()) as opened:
        assert opened.leader_epoch >= 1
        open_txn = opened.producer(transactional_id="open")
        server = InProcessServer(opened)
        try:
            open_txn.init_transactions()
            open_txn.begin_transaction()
            open_txn.send("t", b"open", partition=3)
            open_txn.flush(TIMEOUT)
            yield Served(opened, server)
        finally:
            server.stop()
            open_txn.close()


def _request(served: Served, version: int, isolation: int, topics: list[Any]) -> Any:
    """A Fetch of ``topics`` by name, or from v13 by id (a made-up one
    for a topic never created)."""
    if version >= 13:
        topics = [(served.topic_ids.get(name, uuid.UUID(int=7)), parts) for name, parts in topics]
    return fetch_request(version, topics, isolation_level=isolation)


def _raw_answer(served: Served, request: Any) -> bytes:
    with Wire(served.server.bootstrap) as wire:
        wire.send(request, correlation_id=7)
        return wire.read_frame()


def _one_at_a_time(
    context: Any, wanted: list[Any], start: int, _most: int
) -> tuple[list[Any], int]:
    return [fetch._look(context, wanted[start])], start + 1


EPOCH_SHIFTS = [None, 0, -1, 1]
"""The partition's current leader epoch as the request names it: unknown
(-1), this engine's, an older one (FENCED_LEADER_EPOCH), a newer one
(UNKNOWN_LEADER_EPOCH)."""

partitions_named = st.lists(
    st.tuples(
        st.integers(0, 5),  # past a topic's partitions: UNKNOWN_TOPIC_OR_PARTITION
        st.sampled_from(OFFSETS),
        st.sampled_from(EPOCH_SHIFTS),
    ),
    min_size=1,
    max_size=6,
)
topics_named = st.lists(
    st.tuples(st.sampled_from(["t", "u", "gone"]), partitions_named), min_size=1, max_size=4
)


def _no_looks(_context: Any, _wanted: list[Any], start: int, _most: int) -> tuple[list[Any], int]:
    return [None], start + 1


@pytest.mark.parametrize("other_looks", [_one_at_a_time, _no_looks], ids=["each", "none"])
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(version=st.integers(4, 17), isolation=st.sampled_from([0, 1]), topics=topics_named)
def test_the_batch_look_answers_what_a_look_at_each_partition_answers(
    served: Served, other_looks: Any, version: int, isolation: int, topics: list[Any]
) -> None:
    """The batched looks answer as a look at each partition does (each)
    and as the read path does without any look (none): the looks' checks
    (_current_leaders, one code for both looks) keep their own copy of
    the rules that path asks of a partition (leader_or_error: its index,
    then the KIP-320 leader epoch), which only the second holds them to."""
    ours = served.engine.leader_epoch
    named = [
        (name, [(p, offset, -1 if shift is None else ours + shift) for p, offset, shift in parts])
        for name, parts in topics
    ]
    request = _request(served, version, isolation, named)
    batched = _raw_answer(served, request)
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(fetch, "_run_looks", other_looks)
        other = _raw_answer(served, request)
    assert batched == other


def test_a_caught_up_topic_is_answered_from_one_look_at_it(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mix above meets caught-up topics; this one asks only that: one
    lookup of the topic for all its partitions, the same bytes as before."""
    lookups: list[str] = []
    topic_leaders = engine.Engine.topic_leaders

    def counted(self: engine.Engine, name: str) -> Any:
        lookups.append(name)
        return topic_leaders(self, name)

    ends = [served.engine.partition("u", p).high_watermark for p in range(2)]
    request = _request(served, 12, 0, [("u", [(p, end, -1) for p, end in enumerate(ends)])])
    monkeypatch.setattr(engine.Engine, "topic_leaders", counted)
    batched = _raw_answer(served, request)
    assert lookups == ["u"]
    monkeypatch.setattr(fetch, "_run_looks", _one_at_a_time)
    assert _raw_answer(served, request) == batched


def test_a_topic_whose_every_read_waits_is_not_looked_at_whole_after_each(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that is awaited ends the looks made before it; the partitions
    after it are looked at again in passes of 1, 2, 4... so that a topic
    whose every read is awaited (a masked one, one read from objects) costs
    looks in proportion to its partitions, not to their square."""
    looked: list[int] = []
    run_looks = fetch._run_looks

    def counted(*args: Any) -> Any:
        looks, end = run_looks(*args)
        looked.append(len(looks))
        return looks, end

    monkeypatch.setattr(fetch, "_run_looks", counted)
    monkeypatch.setattr(fetch, "_read_at_once", lambda *_: None)  # every read awaited
    request = _request(served, 12, 0, [("wide", [(p, 0, -1) for p in range(WIDE)])])
    with Wire(served.server.bootstrap) as wire:
        answer = wire.request(request)
    assert all(p.records for topic in answer.responses for p in topic.partitions)
    assert sum(looked) <= 3 * WIDE


def test_a_long_run_reads_its_offsets_a_bounded_number_at_a_time(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's lock is held for at most STREAMS_PER_HOLD streams at a
    time (the WAL's and the uploader's threads wait it out), and the
    answer is the same as a look at each partition."""
    held: list[int] = []
    offsets_many = StreamStore.offsets_many

    def counted(self: StreamStore, stream_ids: Iterable[int]) -> Any:
        named = list(stream_ids)
        held.append(len(named))
        return offsets_many(self, named)

    ends = [served.engine.partition("wide", p).high_watermark for p in range(WIDE)]
    named = [(p, 0 if p % 3 else end, -1) for p, end in enumerate(ends)]
    request = _request(served, 16, 1, [("wide", named)])
    monkeypatch.setattr(fetch, "STREAMS_PER_HOLD", 7)
    monkeypatch.setattr(StreamStore, "offsets_many", counted)
    batched = _raw_answer(served, request)
    # at least each partition once (again after an awaited read), 7 at most a hold
    assert sum(held) >= WIDE and max(held) == 7
    monkeypatch.setattr(fetch, "_run_looks", _one_at_a_time)
    assert _raw_answer(served, request) == batched


def _session_answers(served: Served, isolation: int, named: list[Any]) -> list[Any]:
    """A session opened by a full Fetch v12 of ``named``, then its
    incremental Fetch naming nothing (quiet partitions left out): both
    answers, their session id (a random one) left out."""
    opening = dataclasses.replace(_request(served, 12, isolation, named), session_epoch=0)
    with Wire(served.server.bootstrap) as wire:
        full = wire.request(opening)
        incremental = fetch_request(
            12, [], isolation_level=isolation, session_id=full.session_id, session_epoch=1
        )
        after = wire.request(incremental)
    assert full.session_id != 0
    return [dataclasses.replace(answer, session_id=0) for answer in (full, after)]


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(isolation=st.sampled_from([0, 1]), topics=topics_named)
def test_a_sessions_batch_look_answers_what_a_look_at_each_partition_answers(
    served: Served, isolation: int, topics: list[Any]
) -> None:
    """A session's partitions go through the same runs: its full Fetch and
    its incremental one (whose quiet partitions the looks decide) answer
    as a look at each partition on its own does."""
    named = [(name, [(p, offset, -1) for p, offset, _ in parts]) for name, parts in topics]
    batched = _session_answers(served, isolation, named)
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(fetch, "_run_looks", _one_at_a_time)
        each = _session_answers(served, isolation, named)
    assert batched == each


@pytest.mark.parametrize("version", [9, 12, 13, 17])  # the current leader epoch from v9
def test_a_looks_rule_changed_in_its_one_place_changes_both_paths(
    served: Served, monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    """The batched looks and the look at one partition check a partition
    by the same functions (_looked_topic, _current_leaders), so a rule
    changed there is changed for both: here the leader epoch's, made to
    let an older epoch through, answers the partitions named with it by
    both paths alike, with no FENCED_LEADER_EPOCH."""
    older = served.engine.leader_epoch - 1
    request = _request(served, version, 0, [("u", [(0, 0, older), (1, 1, older)])])
    with Wire(served.server.bootstrap) as wire:
        fenced = wire.request(request)
    assert {p.error_code for t in fenced.responses for p in t.partitions} == {74}
    current_leaders = fetch._current_leaders

    def any_epoch(run: list[Any], leaders: Any, ours: int) -> Any:
        return current_leaders([w._replace(current_leader_epoch=-1) for w in run], leaders, ours)

    monkeypatch.setattr(fetch, "_current_leaders", any_epoch)
    batched = _raw_answer(served, request)
    with Wire(served.server.bootstrap) as wire:
        let_through = wire.request(request)
    entries = [p for t in let_through.responses for p in t.partitions]
    assert [p.error_code for p in entries] == [0, 0]
    assert [bool(p.records) for p in entries] == [False, True]  # caught up; records
    monkeypatch.setattr(fetch, "_run_looks", _one_at_a_time)
    assert _raw_answer(served, request) == batched
