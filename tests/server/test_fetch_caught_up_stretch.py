"""A Fetch's caught-up partitions answered a stretch at a time
(fetch._caught_up_stretch), its partitions named a column at a time
(fetch._named_partitions, fetch_request._partitions) and its watermarks
read in one pass (StreamStore.offsets_many): the answers are byte for
byte those of the path a partition at a time, for every version the
handler serves, read committed or not, sessionless or in a session, over
mixes of caught-up, behind, out-of-range, unknown, fenced and masked
partitions, with an open transaction and a moved log start among them."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine.server.fetch_sessions import FetchPartition
from engine.server.handlers import fetch
from engine.server.shared_decoding import FETCH_BODIES
from s3stream.stream_store import StreamStore
from tests.server.fetching import TIMEOUT, fetch_request
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire

WIDE = 24
"""Partitions of the topic most of a Fetch names, one record each."""
OPEN_TXN = 5
"""The wide topic's partition with a transaction left open: its last
stable offset below its high watermark."""
MOVED_START = 9
"""The wide topic's partition whose log start was moved past its record."""
LONG = 300
"""Partitions of a topic whose stretches outrun the windows that find
their ends (64, then 128...), one record each."""
MASKING = json.dumps([{"path": "/name", "action": "hash"}])
TOPICS = {"wide": WIDE, "masked": 3}


class Served:
    def __init__(self, opened: engine.Engine, server: InProcessServer) -> None:
        self.engine = opened
        self.server = server
        self.topic_ids = {
            name: uuid.UUID(bytes=opened.topic_id(name)) for name in [*TOPICS, "long"]
        }

    def end(self, topic: str, partition: int) -> int:
        return self.engine.partition(topic, partition).high_watermark


def _fill(data: Path) -> None:
    with engine.open(data, config=engine.EngineConfig.small()) as opened:
        opened.create_topic("wide", WIDE)
        opened.create_topic("masked", TOPICS["masked"], {"tidelog.masking.rules": MASKING})
        opened.create_topic("long", LONG)
        with opened.producer() as producer:
            sent = [producer.send("wide", b"w", partition=p) for p in range(WIDE)]
            sent += [producer.send("long", b"l", partition=p) for p in range(LONG)]
            sent += [producer.send("wide", b"x", partition=MOVED_START)]
            sent += [
                producer.send("masked", b'{"name": "n"}', partition=p)
                for p in range(TOPICS["masked"])
            ]
            for record in sent:
                record.result(TIMEOUT)
        opened.delete_records("wide", MOVED_START, 1)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The topics on an engine opened a second time (its leader epoch has
    an older one before it, so a partition can be fenced), a transaction
    open on one partition."""
    data = tmp_path_factory.mktemp("caught-up-stretch") / "data"
    _fill(data)
    with engine.open(data, config=engine.EngineConfig.small()) as opened:
        assert opened.leader_epoch >= 1
        open_txn = opened.producer(transactional_id="open")
        server = InProcessServer(opened)
        try:
            open_txn.init_transactions()
            open_txn.begin_transaction()
            open_txn.send("wide", b"open", partition=OPEN_TXN)
            open_txn.flush(TIMEOUT)
            yield Served(opened, server)
        finally:
            server.stop()
            open_txn.close()


def _one_at_a_time(wanted: list[Any], start: int, looks: list[Any], looks_start: int) -> list[Any]:
    """The stretch of one partition: _caught_up, as the handler answered
    every caught-up partition before."""
    return [fetch._caught_up(wanted[start], looks[start - looks_start])]


def _named_each(name: str | None, topic_id: bytes, partitions: Any) -> Iterator[FetchPartition]:
    """A FetchPartition made a partition at a time, as before."""
    for p in partitions:
        epoch = getattr(p, "current_leader_epoch", -1)
        yield FetchPartition(
            name, topic_id, p.partition, p.fetch_offset, p.partition_max_bytes, epoch
        )


def _offsets_each(store: StreamStore, stream_ids: Iterable[int]) -> list[tuple[int, int]]:
    return [store.offsets(stream_id) for stream_id in stream_ids]


@contextmanager
def _a_partition_at_a_time() -> Iterator[None]:
    """The reference: every step of the look and the answer a partition
    at a time, and the request decoded by kio's general decoder."""
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(fetch, "_caught_up_stretch", _one_at_a_time)
        patched.setattr(fetch, "_named_partitions", _named_each)
        patched.setattr(StreamStore, "offsets_many", _offsets_each)
        patched.setattr(FETCH_BODIES, "first", None)
        yield


WHERE = ["end", "start", "past", "below", "inside"]
"""Where a partition is fetched: at its high watermark (caught up), at 0
(behind, or below a moved log start), past the end, below the log start
(-1), one short of the end."""
EPOCH_SHIFTS = [None, None, 0, -1, 1]
"""The current leader epoch named: unknown (-1, most often), this
engine's, an older one (FENCED_LEADER_EPOCH), a newer one."""

partitions_named = st.lists(
    st.tuples(
        st.integers(0, WIDE + 1),  # past a topic's partitions: UNKNOWN_TOPIC_OR_PARTITION
        st.sampled_from(WHERE),
        st.sampled_from(EPOCH_SHIFTS),
    ),
    min_size=1,
    max_size=WIDE + 2,
    unique_by=lambda named: named[0],
)
topics_named = st.lists(
    st.tuples(st.sampled_from(["wide", "wide", "masked", "gone"]), partitions_named),
    min_size=1,
    max_size=3,
    unique_by=lambda named: named[0],
)


def _named(served: Served, topics: list[Any]) -> list[Any]:
    ours = served.engine.leader_epoch
    named = []
    for name, parts in topics:
        entries = []
        for p, where, shift in parts:
            end = served.end(name, p) if name in TOPICS and p < TOPICS[name] else 1
            offset = {"end": end, "start": 0, "past": end + 5, "below": -1, "inside": end - 1}
            epoch = -1 if shift is None else ours + shift
            entries.append((p, offset[where], epoch))
        named.append((name, entries))
    return named


def _request(served: Served, version: int, isolation: int, named: list[Any], **session: Any) -> Any:
    """By name, or from v13 by id (a made-up one for a topic never made)."""
    if version >= 13:
        named = [(served.topic_ids.get(name, uuid.UUID(int=7)), parts) for name, parts in named]
    return fetch_request(version, named, isolation_level=isolation, **session)


def _raw_answer(served: Served, request: Any) -> bytes:
    with Wire(served.server.bootstrap) as wire:
        wire.send(request, correlation_id=7)
        return wire.read_frame()


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(version=st.integers(4, 17), isolation=st.sampled_from([0, 1]), topics=topics_named)
def test_a_sessionless_fetch_answers_what_a_partition_at_a_time_answers(
    served: Served, version: int, isolation: int, topics: list[Any]
) -> None:
    request = _request(served, version, isolation, _named(served, topics))
    stretched = _raw_answer(served, request)
    with _a_partition_at_a_time():
        assert _raw_answer(served, request) == stretched


def _session_answers(served: Served, version: int, isolation: int, named: list[Any]) -> list[Any]:
    """A session opened by a full Fetch of ``named``, then its incremental
    Fetch naming nothing (quiet partitions left out): both answers, their
    session id (a random one) left out."""
    opening = _request(served, version, isolation, named, session_epoch=0)
    with Wire(served.server.bootstrap) as wire:
        full = wire.request(opening)
        incremental = _request(
            served, version, isolation, [], session_id=full.session_id, session_epoch=1
        )
        after = wire.request(incremental)
    assert full.session_id != 0
    return [dataclasses.replace(answer, session_id=0) for answer in (full, after)]


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(version=st.integers(7, 17), isolation=st.sampled_from([0, 1]), topics=topics_named)
def test_a_sessions_fetches_answer_what_a_partition_at_a_time_answers(
    served: Served, version: int, isolation: int, topics: list[Any]
) -> None:
    """A session (KIP-227, from v7): its full Fetch goes through the
    stretches, its incremental one answers quiet partitions as before."""
    named = _named(served, topics)
    stretched = _session_answers(served, version, isolation, named)
    with _a_partition_at_a_time():
        assert _session_answers(served, version, isolation, named) == stretched


def test_a_caught_up_topic_is_answered_in_stretches_not_a_partition_at_a_time(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Caught-up partitions are answered by the stretch, without a call of
    _caught_up each, but for the stretch holding an open transaction,
    whose partitions are answered one by one (the last stable offset
    below the high watermark where it is open)."""
    calls: list[int] = []
    caught_up = fetch._caught_up

    def counted(wanted: FetchPartition, look: Any) -> Any:
        calls.append(wanted.partition)
        return caught_up(wanted, look)

    named = [(p, served.end("wide", p), -1) for p in range(WIDE) if p != OPEN_TXN]
    monkeypatch.setattr(fetch, "_caught_up", counted)
    with Wire(served.server.bootstrap) as wire:
        answer = wire.request(_request(served, 12, 1, [("wide", named)]))
    entries = answer.responses[0].partitions
    assert calls == []
    assert [e.partition_index for e in entries] == [p for p, _, _ in named]
    assert all(e.last_stable_offset == e.high_watermark for e in entries)
    assert {e.error_code for e in entries} == {0} and not any(e.records for e in entries)

    named = [(p, served.end("wide", p), -1) for p in range(OPEN_TXN - 1, OPEN_TXN + 2)]
    with Wire(served.server.bootstrap) as wire:
        answer = wire.request(_request(served, 12, 1, [("wide", named)]))
    entries = answer.responses[0].partitions
    assert calls == [OPEN_TXN - 1, OPEN_TXN, OPEN_TXN + 1]  # the stretch holds the open one
    stable = {e.partition_index: e.last_stable_offset for e in entries}
    high = {e.partition_index: e.high_watermark for e in entries}
    assert stable[OPEN_TXN] < high[OPEN_TXN]
    assert stable[OPEN_TXN - 1] == high[OPEN_TXN - 1]


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    version=st.sampled_from([11, 12, 16]),
    behind=st.sets(st.integers(0, LONG - 1), max_size=6),
    unknown=st.sets(st.integers(0, LONG - 1), max_size=2),
)
def test_long_stretches_answer_what_a_partition_at_a_time_answers(
    served: Served, version: int, behind: set[int], unknown: set[int]
) -> None:
    """Stretches longer than the windows their ends are looked for in,
    cut by partitions behind (read from the log cache) and by unknown
    ones (no look: past the topic's partitions)."""
    named = [(p + LONG if p in unknown else p, 0 if p in behind else 1, -1) for p in range(LONG)]
    request = _request(served, version, 0, [("long", named)])
    stretched = _raw_answer(served, request)
    with _a_partition_at_a_time():
        assert _raw_answer(served, request) == stretched


def test_named_partitions_are_the_fetch_partitions_made_one_at_a_time() -> None:
    """Each field of FetchPartition given, from kio's partitions of a
    version with a leader epoch and of one without (before v9)."""
    from kio.schema.fetch.v4.request import FetchPartition as PartitionV4
    from kio.schema.fetch.v12.request import FetchPartition as PartitionV12

    with_epoch = [
        PartitionV12(
            partition=p,
            current_leader_epoch=p - 1,
            fetch_offset=10 * p,
            last_fetched_epoch=-1,
            log_start_offset=-1,
            partition_max_bytes=100 + p,
        )
        for p in range(3)
    ]
    without = [PartitionV4(partition=p, fetch_offset=p, partition_max_bytes=7) for p in range(2)]
    for partitions in (with_epoch, without, []):
        made = list(fetch._named_partitions("t", bytes(16), partitions))
        assert made == list(_named_each("t", bytes(16), partitions))
        assert all(type(m) is FetchPartition and len(m) == 6 for m in made)


def test_offsets_many_refuses_a_missing_stream_as_offsets_does(served: Served) -> None:
    store = served.engine.partition("wide", 0).store
    streams = [served.engine.partition("wide", p).stream_id for p in range(3)]
    assert store.offsets_many(streams) == [store.offsets(s) for s in streams]
    assert store.offsets_many(iter(streams)) == [store.offsets(s) for s in streams]
    missing = max(streams) + 10_000
    with pytest.raises(Exception) as raised:
        store.offsets(missing)
    with pytest.raises(type(raised.value)):
        store.offsets_many([*streams, missing])
