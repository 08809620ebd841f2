"""The fetch session cache on its own, on virtual time: Kafka's eviction
order (stale sessions first, then a consumer's for a follower's, then the
smallest old one for a larger one), the slots and the per-session cap,
epochs, the check of a session answered twice, and, as a property against
a plain model, the bookkeeping of a session's partitions (adds, updates,
forgets, the order of turns) and which partitions a response carries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.protocol.kafka_code import KafkaCode
from engine.server.config import ServerConfig
from engine.server.fetch_sessions import (
    FINAL_EPOCH,
    INVALID_SESSION_ID,
    FetchPartition,
    FetchSessionCache,
    IncrementalContext,
    PartitionKey,
    PartitionOutcome,
    SessionErrorContext,
    SessionlessContext,
    next_epoch,
)

MiB = 1024 * 1024
EVICTION_MS = 1000
QUIET = PartitionOutcome(0, 0, 0, KafkaCode.NONE)


def part(index: int, topic: str = "t", offset: int = 0) -> FetchPartition:
    return FetchPartition(topic, bytes(16), index, offset, MiB, -1)


def exists(wanted: FetchPartition) -> bool:
    return wanted.topic != "missing"


def full_fetch(
    cache: FetchSessionCache,
    partitions: Sequence[FetchPartition],
    now_ms: int,
    *,
    privileged: bool = False,
    session_id: int = 0,
) -> int:
    """The session id a full fetch (epoch 0) of ``partitions`` is answered with."""
    context = cache.new_context(
        version=12,
        session_id=session_id,
        epoch=0,
        requested=partitions,
        forgotten=[],
        privileged=privileged,
        exists=exists,
        now_ms=now_ms,
    )
    return context.answer([QUIET] * len(partitions), now_ms).session_id


def incremental(
    cache: FetchSessionCache,
    session_id: int,
    epoch: int,
    now_ms: int,
    requested: Sequence[FetchPartition] = (),
    forgotten: Sequence[PartitionKey] = (),
) -> object:
    return cache.new_context(
        version=12,
        session_id=session_id,
        epoch=epoch,
        requested=requested,
        forgotten=forgotten,
        privileged=False,
        exists=exists,
        now_ms=now_ms,
    )


def sized(size: int, topic: str = "t") -> list[FetchPartition]:
    return [part(i, topic) for i in range(size)]


def test_a_full_cache_takes_a_larger_session_only_in_place_of_an_old_one() -> None:
    cache = FetchSessionCache(slots=1, eviction_ms=EVICTION_MS, max_partitions=100)
    first = full_fetch(cache, sized(2), now_ms=0)
    assert first != INVALID_SESSION_ID
    # Larger, but the session in the slot is newer than the eviction time.
    assert full_fetch(cache, sized(3), now_ms=500) == INVALID_SESSION_ID
    # Used when older than the eviction time, it becomes evictable by size...
    assert isinstance(incremental(cache, first, 1, now_ms=1500), IncrementalContext)
    # ...by a strictly larger session only.
    assert full_fetch(cache, sized(2), now_ms=1600) == INVALID_SESSION_ID
    second = full_fetch(cache, sized(3), now_ms=1700)
    assert second not in {INVALID_SESSION_ID, first}
    assert list(cache.sessions) == [second]
    assert (cache.stats.created, cache.stats.evicted) == (2, 1)


def test_a_stale_session_gives_way_to_any_new_one() -> None:
    cache = FetchSessionCache(slots=1, eviction_ms=EVICTION_MS, max_partitions=100)
    big = full_fetch(cache, sized(50), now_ms=0)
    assert full_fetch(cache, sized(1), now_ms=EVICTION_MS) == INVALID_SESSION_ID
    small = full_fetch(cache, sized(1), now_ms=EVICTION_MS + 1)
    assert list(cache.sessions) == [small]
    error = incremental(cache, big, 1, now_ms=EVICTION_MS + 2)
    assert error == SessionErrorContext(KafkaCode.FETCH_SESSION_ID_NOT_FOUND)


def test_a_followers_session_evicts_a_consumers_at_once_and_not_the_reverse() -> None:
    cache = FetchSessionCache(slots=1, eviction_ms=EVICTION_MS, max_partitions=100)
    full_fetch(cache, sized(50), now_ms=0)
    follower = full_fetch(cache, sized(1), now_ms=10, privileged=True)
    assert follower != INVALID_SESSION_ID
    assert full_fetch(cache, sized(100), now_ms=20) == INVALID_SESSION_ID
    assert list(cache.sessions) == [follower]


def test_no_session_without_slots_or_over_the_partition_cap() -> None:
    off = FetchSessionCache(slots=0, eviction_ms=EVICTION_MS, max_partitions=100)
    assert full_fetch(off, sized(3), now_ms=0) == INVALID_SESSION_ID
    capped = FetchSessionCache(slots=10, eviction_ms=EVICTION_MS, max_partitions=2)
    assert full_fetch(capped, sized(3), now_ms=0) == INVALID_SESSION_ID
    assert full_fetch(capped, sized(2), now_ms=0) != INVALID_SESSION_ID
    assert capped.cached_partitions == 2


def test_a_session_keeps_only_partitions_that_exist() -> None:
    cache = FetchSessionCache(slots=1, eviction_ms=EVICTION_MS, max_partitions=100)
    session = full_fetch(cache, [part(0), part(0, "missing"), part(1, "missing")], now_ms=0)
    assert list(cache.sessions[session].partitions) == [("t", 0)]


def test_a_session_answered_twice_is_refused_the_second_time() -> None:
    """Two requests of one session in flight (the second sent with the
    epoch the first led to): the older one's answer is refused."""
    cache = FetchSessionCache(slots=1, eviction_ms=EVICTION_MS, max_partitions=100)
    session = full_fetch(cache, sized(1), now_ms=0)
    older = incremental(cache, session, 1, now_ms=1)
    newer = incremental(cache, session, 2, now_ms=2)
    assert isinstance(older, IncrementalContext) and isinstance(newer, IncrementalContext)
    assert newer.answer([QUIET], 3).error == KafkaCode.NONE
    refused = older.answer([QUIET], 4)
    assert (refused.error, refused.session_id) == (KafkaCode.INVALID_FETCH_SESSION_EPOCH, session)


def test_epochs_wrap_past_the_int32_maximum_to_one() -> None:
    assert next_epoch(0) == 1
    assert next_epoch(2**31 - 1) == 1
    assert next_epoch(FINAL_EPOCH) == FINAL_EPOCH


def test_a_partition_that_sent_records_waits_for_the_others_next_time() -> None:
    cache = FetchSessionCache(slots=1, eviction_ms=EVICTION_MS, max_partitions=100)
    session = full_fetch(cache, sized(3), now_ms=0)
    context = incremental(cache, session, 1, now_ms=1)
    assert isinstance(context, IncrementalContext)
    context.answer([PartitionOutcome(10, 1, 0, KafkaCode.NONE), QUIET, QUIET], 2)
    assert list(cache.sessions[session].partitions) == [("t", 1), ("t", 2), ("t", 0)]


# -- the session's bookkeeping against a model ------------------------------------------------

UNIVERSE = 6
CAP = 5


@dataclass
class Modelled:
    request: FetchPartition
    high_watermark: int = -1
    log_start: int = -1


requested_partitions = st.lists(
    st.builds(
        part,
        st.integers(0, UNIVERSE - 1),
        st.sampled_from(["t", "missing"]),
        st.integers(0, 3),
    ),
    max_size=4,
)
outcomes = st.builds(
    PartitionOutcome,
    st.sampled_from([0, 0, 10]),
    st.integers(0, 2),
    st.integers(0, 1),
    st.sampled_from([KafkaCode.NONE, KafkaCode.NONE, KafkaCode.UNKNOWN_LEADER_EPOCH]),
)
steps = st.lists(
    st.tuples(
        requested_partitions,
        st.lists(st.integers(0, UNIVERSE - 1), max_size=2),
        st.lists(outcomes, min_size=UNIVERSE + 4, max_size=UNIVERSE + 4),
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(steps)
def test_a_sessions_partitions_and_answers_follow_the_model(
    run: list[tuple[list[FetchPartition], list[int], list[PartitionOutcome]]],
) -> None:
    cache = FetchSessionCache(slots=1, eviction_ms=EVICTION_MS, max_partitions=CAP)
    start = sized(2)
    session = full_fetch(cache, start, now_ms=0)
    model = {("t", w.partition): Modelled(w, 0, 0) for w in start}
    epoch = 1
    for now_ms, (requested, forgotten_indexes, drawn) in enumerate(run, start=1):
        forgotten: list[PartitionKey] = [("t", i) for i in forgotten_indexes]
        context = incremental(cache, session, epoch, now_ms, requested, forgotten)
        unkept: list[FetchPartition] = []
        for wanted in requested:
            key = ("t" if wanted.topic == "t" else "missing", wanted.partition)
            if key in model:
                model[key].request = wanted
            elif exists(wanted):
                model[key] = Modelled(wanted)
            else:
                unkept.append(wanted)
        for key in forgotten:
            model.pop(key, None)
        expected = [m.request for m in model.values()] + unkept
        if not model or len(model) > CAP:
            assert context == SessionlessContext(expected)
            assert session not in cache.sessions
            return
        assert isinstance(context, IncrementalContext)
        assert list(context.partitions) == expected
        # A partition the handler may skip is exactly one whose read would
        # find nothing and whose response the model leaves out.
        for index, (m, outcome) in enumerate(zip(model.values(), drawn, strict=False)):
            unchanged = m.request.offset == outcome.high_watermark == m.high_watermark
            skippable = unchanged and outcome.log_start_offset == m.log_start
            quiet = context.is_quiet(index, outcome.high_watermark, outcome.log_start_offset)
            assert quiet == skippable
        assert not any(context.is_quiet(len(model) + i, w.offset, 0) for i, w in enumerate(unkept))
        answer = context.answer(drawn[: len(expected)], now_ms)
        keep: list[bool] = []
        for key, outcome in zip(list(model), drawn, strict=False):
            m = model[key]
            keep.append(
                outcome.records_bytes > 0
                or outcome.high_watermark != m.high_watermark
                or outcome.log_start_offset != m.log_start
                or outcome.error != KafkaCode.NONE
            )
            m.high_watermark = -1 if outcome.error else outcome.high_watermark
            m.log_start = outcome.log_start_offset
            if outcome.records_bytes > 0:
                model[key] = model.pop(key)
        keep += [True] * len(unkept)
        assert answer.keep == keep
        assert (answer.error, answer.session_id) == (KafkaCode.NONE, session)
        held = cache.sessions[session].partitions
        assert list(held) == list(model)
        assert [c.request for c in held.values()] == [m.request for m in model.values()]
        assert [(c.high_watermark, c.log_start_offset) for c in held.values()] == [
            (m.high_watermark, m.log_start) for m in model.values()
        ]
        epoch = next_epoch(epoch)


def test_the_server_config_refuses_negative_session_limits() -> None:
    ServerConfig(max_incremental_fetch_session_cache_slots=0)
    for name in (
        "max_incremental_fetch_session_cache_slots",
        "min_incremental_fetch_session_eviction_ms",
        "max_incremental_fetch_session_partitions",
    ):
        with pytest.raises(ValueError, match=name.replace("_", ".")):
            ServerConfig(**{name: -1})
