"""Hedged object-store requests against moto's S3 server on loopback.

A request that stalls is the one thing a real server cannot be told to do,
so the S3 client is wrapped: a held request waits (before it is sent, or
after its answer came back) until the test releases it, then goes on as
sent. Everything else is the real store, the real manifest and the real
stream store. No test measures time: a hedge is sent because its first copy
is held, whatever the machine's speed.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3stream import REMOTE, StreamStore, StreamStoreConfig
from s3stream.errors import Fenced
from s3stream.manifest import Manifest, load_state
from s3stream.manifest_records import delta_key
from s3stream.store import LocalStore, S3Store
from s3stream.store.hedged import _MIN_SAMPLES as MIN_SAMPLES
from s3stream.store.hedged import _WINDOW as WINDOW
from s3stream.store.hedged import _WORKERS as WORKERS
from s3stream.store.hedged import HedgedStore, HedgePolicy, _Latencies, hedged
from s3stream.uploader import OBJECT_PREFIX
from tests.s3stream.conftest import S3Endpoint
from wal.thread_priority import lower_own_priority, own_priority

TIMEOUT = 30.0
FAST = HedgePolicy(after=3.0, floor_s=0.001, max_share=1.0)
"""Hedges as soon as a held request passes its median (and every time)."""


HELD_METHODS = {"put_object", "head_object", "get_object"}


def released_to_fail() -> Exception:
    """What a held request raises when released to fail: its answer never came."""
    return botocore.exceptions.ReadTimeoutError(endpoint_url="(held)")


@dataclass
class Hold:
    method: str
    matches: Callable[[dict[str, Any]], bool]
    after: bool
    """Held once the server has answered (the request took effect)."""
    fail: bool = False
    """Fail once released (as a connection reset would), instead of going on."""
    release: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    outcome: object = None


class HoldingClient:
    """An S3 client whose next request matching a hold waits for its release."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.holds: list[Hold] = []
        self.gate: Callable[[str, dict[str, Any]], None] | None = None
        """Called before every request (the cap test's stall)."""
        self._lock = threading.Lock()

    def hold(
        self, method: str, matches: Callable[[dict[str, Any]], bool], *, after: bool = False
    ) -> Hold:
        held = Hold(method, matches, after)
        with self._lock:
            self.holds.append(held)
        return held

    def __getattr__(self, name: str) -> Any:
        sent = getattr(self.client, name)
        if name not in HELD_METHODS:
            return sent

        def call(**request: Any) -> Any:
            if self.gate is not None:
                self.gate(name, request)
            with self._lock:
                held = next(
                    (h for h in self.holds if h.method == name and h.matches(request)), None
                )
                if held is not None:
                    self.holds.remove(held)
            if held is None:
                return sent(**request)
            try:
                held.started.set()
                if not held.after:
                    assert held.release.wait(TIMEOUT), "the held request was never released"
                    if held.fail:
                        raise released_to_fail()
                try:
                    answer = sent(**request)
                except Exception as error:
                    held.outcome = error
                    raise
                held.outcome = answer
                if held.after:
                    assert held.release.wait(TIMEOUT), "the held request was never released"
                    if held.fail:
                        raise released_to_fail()
                return answer
            finally:
                held.finished.set()

        return call


@pytest.fixture
def s3(s3_endpoint: S3Endpoint) -> Iterator[tuple[S3Store, HoldingClient]]:
    store = s3_endpoint.store(f"test-{uuid.uuid4().hex}")
    client = HoldingClient(store._client)
    store._client = client
    yield store, client
    store.close()


def key_is(key: str) -> Callable[[dict[str, Any]], bool]:
    return lambda request: str(request["Key"]).endswith(key)


def opened(data_dir: Path, store: S3Store, **config: Any) -> StreamStore:
    settings = dict(
        upload_interval_s=3600.0,
        compaction_interval_s=3600.0,
        wal_segment_bytes=1024 * 1024,
        wal_preallocate=False,
        hedge_after=3.0,
        hedge_floor_ms=1.0,
        hedge_max_share=1.0,
    )
    return StreamStore.open(data_dir, store, StreamStoreConfig(**(settings | config)))


def test_a_stalled_object_put_is_answered_by_its_hedge(
    tmp_path: Path, s3: tuple[S3Store, HoldingClient]
) -> None:
    store, client = s3
    stream_store = opened(tmp_path / "one", store)
    try:
        stream = stream_store.create_stream()
        stream_store.open_stream(stream, 1)
        for offset in range(10):  # each upload teaches the store a PUT's median
            assert stream_store.submit(stream, offset, offset, b"warm", REMOTE).result(TIMEOUT) == (
                offset + 1
            )
        assert stream_store.hedges is not None
        before = stream_store.hedges.snapshot()
        held = client.hold("put_object", lambda r: str(r["Key"]).count(OBJECT_PREFIX) > 0)
        ack = stream_store.submit(stream, 10, 10, b"while the first PUT stalls", REMOTE)
        assert ack.result(TIMEOUT) == 11  # acknowledged while the first copy is held
        assert held.started.is_set() and not held.finished.is_set()
        sent, won = stream_store.hedges.snapshot()
        # One object PUT in the upload: the held one, answered by its hedge.
        assert sent.get("put", 0) - before[0].get("put", 0) == 1
        assert won.get("put", 0) - before[1].get("put", 0) == 1
        objects = {info.key: info.version for info in store.list(OBJECT_PREFIX)}
        held.release.set()  # the stalled copy lands the same bytes under the same key
        assert held.finished.wait(TIMEOUT)
        assert not isinstance(held.outcome, Exception)
        assert {info.key: info.version for info in store.list(OBJECT_PREFIX)} == objects
    finally:
        stream_store.close()
    fresh = opened(tmp_path / "two", store)  # a new machine: only the bucket
    try:
        batches = fresh.fetch(stream, 0, 1 << 20).batches
        assert [bytes(b.payload) for b in batches] == [b"warm"] * 10 + [
            b"while the first PUT stalls"
        ]
    finally:
        fresh.close()


def test_a_stalled_first_copy_that_fails_later_does_not_fail_the_put(
    s3: tuple[S3Store, HoldingClient],
) -> None:
    store, client = s3
    hedging = HedgedStore(store, FAST)
    try:
        for i in range(8):  # the medians are learnt first: none of these is hedged
            hedging.put(f"objects/warm-{i}", b"x" * 100)
        held = client.hold("put_object", key_is("objects/held"))
        held.fail = True
        version = hedging.put("objects/held", b"y" * 100)
        held.release.set()
        assert held.finished.wait(TIMEOUT)
        assert store.get_versioned("objects/held") == (b"y" * 100, version)
        assert hedging.stats.snapshot() == ({"put": 1}, {"put": 1})
    finally:
        hedging.stop()


def test_a_first_copy_that_fails_while_its_hedge_is_out_waits_for_the_hedge(
    s3: tuple[S3Store, HoldingClient],
) -> None:
    store, client = s3
    hedging = HedgedStore(store, FAST)
    try:
        for i in range(8):
            hedging.put(f"objects/warm-{i}", b"x" * 100)
        first = client.hold("put_object", key_is("objects/held"))
        hedge = client.hold("put_object", key_is("objects/held"))
        first.fail = True
        answers: list[str] = []
        answer = threading.Thread(target=lambda: answers.append(hedging.put("objects/held", b"y")))
        answer.start()
        assert hedge.started.wait(TIMEOUT)  # the hedge is out, both held
        first.release.set()
        assert first.finished.wait(TIMEOUT)  # the first copy failed...
        hedge.release.set()
        answer.join(TIMEOUT)
        assert not answer.is_alive()
        assert answers == [store.head("objects/held").version]  # ...and the hedge answered
        assert hedging.stats.snapshot() == ({"put": 1}, {"put": 1})
    finally:
        hedging.stop()


def test_requests_go_on_while_stalled_losers_hold_every_hedging_thread(
    s3: tuple[S3Store, HoldingClient],
) -> None:
    store, client = s3
    hedging = HedgedStore(store, FAST)
    losers = []
    try:
        for i in range(8):
            hedging.put(f"objects/warm-{i}", b"x")
        # Each first copy stalls and its hedge answers, until the losers
        # leave no room for a first copy and its hedge.
        for i in range(WORKERS - 1):
            losers.append(client.hold("put_object", key_is(f"objects/stalled-{i}")))
            hedging.put(f"objects/stalled-{i}", b"y")
        assert hedging.stats.snapshot()[1]["put"] == WORKERS - 1
        senders: list[str] = []
        client.gate = lambda method, request: senders.append(threading.current_thread().name)
        answered: list[str] = []
        late = threading.Thread(
            target=lambda: answered.append(hedging.put("objects/late", b"z")), name="late"
        )
        late.start()
        late.join(TIMEOUT)
        assert answered == [store.head("objects/late").version]
        assert senders[0] == "late"  # sent by its caller, not queued behind the losers
        assert not any(loser.finished.is_set() for loser in losers)
    finally:
        for loser in losers:
            loser.release.set()
        hedging.stop()


def test_a_hedge_that_loses_the_race_gets_412_and_the_version_is_still_ours(
    s3: tuple[S3Store, HoldingClient], caplog: pytest.LogCaptureFixture
) -> None:
    store, client = s3
    hedging = HedgedStore(store, FAST)
    try:
        manifest = Manifest.open(hedging)
        for stream_id in range(10):  # teaches the store the medians of its commits
            manifest.commit([["create_stream", stream_id + 1, 0]])
        seq = manifest.state.seq + 1
        sent = hedging.stats.snapshot()[0].get("put_if_absent", 0)
        # The first copy creates the version, and its answer is held: the
        # hedge meets the first copy's object and gets 412.
        held = client.hold("put_object", key_is(delta_key(seq)), after=True)
        with caplog.at_level(logging.INFO, "tidelog.manifest"):
            state = manifest.commit([["create_stream", 11, 0]])
        assert state.seq == seq
        assert held.started.is_set() and not held.finished.is_set()
        assert hedging.stats.snapshot()[0]["put_if_absent"] == sent + 1
        assert "found its own record" in caplog.text  # settled by reading it back
        held.release.set()
        assert held.finished.wait(TIMEOUT)
        manifest.commit([["create_stream", 12, 0]])  # and the manifest goes on
        assert set(load_state(store).streams) == set(range(1, 13))
    finally:
        hedging.stop()


def test_a_real_other_writer_still_fences_a_hedged_commit(
    s3: tuple[S3Store, HoldingClient],
) -> None:
    store, client = s3
    hedging = HedgedStore(store, FAST)
    try:
        ours = Manifest.open(hedging)
        for stream_id in range(10):
            ours.commit([["create_stream", stream_id + 1, 0]])
        seq = ours.state.seq + 1
        newer = Manifest.open(store)  # writes version seq: its fence
        sent = hedging.stats.snapshot()[0].get("put_if_absent", 0)
        theirs = store.get(delta_key(seq))
        held = client.hold("put_object", key_is(delta_key(seq)))  # held before it is sent
        with pytest.raises(Fenced):
            ours.commit([["create_stream", 11, 0]])
        # The hedge was sent while the first copy was held, and got the 412.
        assert hedging.stats.snapshot()[0]["put_if_absent"] == sent + 1
        held.release.set()
        assert held.finished.wait(TIMEOUT)  # the first copy lands late: 412 too
        assert store.get(delta_key(seq)) == theirs
        assert load_state(store).epoch == newer.epoch
    finally:
        hedging.stop()


def test_hedges_are_capped_at_their_share_of_requests(
    s3: tuple[S3Store, HoldingClient],
) -> None:
    store, client = s3
    store.put("probe", b"p")
    # At 1x the median: each slow request's own latency (about the delay)
    # then keeps the median, so the delay, where it was.
    policy = HedgePolicy(after=1.0, floor_s=0.002, max_share=0.1)
    hedging = HedgedStore(store, policy)
    asked = 0

    def decisions() -> int:
        return sum(hedging.stats.snapshot()[0].values()) + hedging.stats.capped

    def slow_until_decided(method: str, request: dict[str, Any]) -> None:
        """Every request is slow: its first copy waits until the store has
        decided whether to hedge it (a hedge sent, or held back by the cap)."""
        if method != "head_object":
            return
        deadline = time.monotonic() + TIMEOUT
        while decisions() < asked:
            assert time.monotonic() < deadline, "no decision to hedge or not"
            time.sleep(0.0005)

    try:
        warm_up = 8
        for _ in range(warm_up):
            hedging.head("probe")
        client.gate = slow_until_decided
        slow = 60
        for _ in range(slow):
            asked += 1
            hedging.head("probe")
        sent = hedging.stats.snapshot()[0].get("head", 0)
        assert sent + hedging.stats.capped == slow  # every one was slow enough to hedge
        total = warm_up + slow
        assert sent <= 1 + policy.max_share * total  # the share, and one to start with
        assert sent >= policy.max_share * total - 1
    finally:
        hedging.stop()


def test_hedging_off(tmp_path: Path, s3: tuple[S3Store, HoldingClient]) -> None:
    store, client = s3
    assert hedged(store, HedgePolicy(after=0)) is None
    assert hedged(store, HedgePolicy(max_share=0)) is None
    assert hedged(LocalStore(tmp_path / "objects"), FAST) is None  # a disk's queue
    for bad in ({"hedge_after": 0.5}, {"hedge_floor_ms": -1.0}, {"hedge_max_share": 1.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):  # refused with the config
            StreamStoreConfig(**bad)  # type: ignore[arg-type]
    stream_store = opened(tmp_path / "data", store, hedge_after=0.0)
    try:
        assert stream_store.hedges is None
        stream = stream_store.create_stream()
        stream_store.open_stream(stream, 1)
        for offset in range(10):
            stream_store.submit(stream, offset, offset, b"warm", REMOTE).result(TIMEOUT)
        held = client.hold("put_object", lambda r: str(r["Key"]).count(OBJECT_PREFIX) > 0)
        ack = stream_store.submit(stream, 10, 10, b"held", REMOTE)
        assert held.started.wait(TIMEOUT)
        with pytest.raises(TimeoutError):  # nothing but the held PUT can answer it
            ack.result(0.5)
        held.release.set()
        assert ack.result(TIMEOUT) == 11
    finally:
        stream_store.close()


@pytest.mark.skipif(own_priority() is None, reason="threads have no OS priority of their own")
def test_hedging_threads_keep_the_openers_priority_whoever_asks_first(
    s3: tuple[S3Store, HoldingClient],
) -> None:
    store, client = s3
    opener = own_priority()
    hedging = HedgedStore(store, FAST)
    priorities: list[int | None] = []

    def note_priority(method: str, request: dict[str, Any]) -> None:
        if method == "put_object":
            priorities.append(own_priority())

    def lower_priority_writer() -> None:
        assert opener is not None
        lower_own_priority(opener + 5)  # as a read thread does: it cannot go back
        for i in range(8):
            hedging.put(f"objects/warm-{i}", b"x")
        client.gate = note_priority
        held = client.hold("put_object", key_is("objects/held"))
        hedging.put("objects/held", b"y")  # sent from a hedging thread, then hedged
        held.release.set()
        assert held.finished.wait(TIMEOUT)

    try:
        writer = threading.Thread(target=lower_priority_writer)
        writer.start()
        writer.join(TIMEOUT)
        assert not writer.is_alive()
        assert hedging.stats.snapshot()[0] == {"put": 1}
        assert priorities == [opener, opener]  # the first copy and its hedge
    finally:
        hedging.stop()


@given(st.lists(st.floats(min_value=0, max_value=60, allow_nan=False), max_size=200))
def test_the_median_is_of_the_recent_window(latencies: list[float]) -> None:
    window = _Latencies()
    for seconds in latencies:
        window.observe(seconds)
    recent = sorted(latencies[-WINDOW:])
    assert window.ordered == recent
    assert window.median() == (recent[len(recent) // 2] if len(recent) >= MIN_SAMPLES else None)
