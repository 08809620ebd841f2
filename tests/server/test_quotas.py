"""The byte-rate quotas' arithmetic (engine/server/quotas.py): Kafka's
precedence of entities, against a model written from Kafka's documented
order; the rate over its sampled window; the throttle times it answers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import engine
from engine.protocol.apis import ApiKey
from engine.quota_entities import ClientQuotas, Entity, InvalidClientQuota
from engine.server.quotas import (
    MAX_REQUEST_THROTTLE_MS,
    MAX_THROTTLE_MS,
    SWEEP_AT,
    WINDOW_SAMPLES,
    WINDOW_SECONDS,
    QuotaManager,
    Rate,
    resolve,
    throttle_time_ms,
)

NAMES = st.sampled_from(["alice", "bob", "app", "ANONYMOUS"])
DEFAULT = "<default>"

KAFKA_ORDER = [
    "/users/{u}/clients/{c}",
    "/users/{u}/clients/<default>",
    "/users/{u}",
    "/users/<default>/clients/{c}",
    "/users/<default>/clients/<default>",
    "/users/<default>",
    "/clients/{c}",
    "/clients/<default>",
]
"""Kafka's documented precedence (docs: Quotas), most specific first."""


def path(entity: Entity) -> str:
    parts = dict(entity)
    text = ""
    if "user" in parts:
        text += f"/users/{parts['user'] or DEFAULT}"
    if "client-id" in parts:
        text += f"/clients/{parts['client-id'] or DEFAULT}"
    return text


def entities() -> st.SearchStrategy[Entity]:
    part = st.one_of(st.none(), NAMES)
    return st.one_of(
        st.tuples(st.tuples(st.just("user"), part)),
        st.tuples(st.tuples(st.just("client-id"), part)),
        st.tuples(st.tuples(st.just("client-id"), part), st.tuples(st.just("user"), part)),
    )


@given(
    configured=st.dictionaries(entities(), st.integers(1, 10**9).map(float), max_size=12),
    user=NAMES,
    client=NAMES,
)
def test_the_most_specific_entity_gives_the_quota_as_kafka_orders_them(
    configured: Mapping[Entity, float], user: str, client: str
) -> None:
    by_path = {path(entity): rate for entity, rate in configured.items()}
    expected = None
    for pattern in KAFKA_ORDER:
        wanted = pattern.format(u=user, c=client)
        if wanted in by_path:
            shared_user = user if wanted.startswith("/users/") else ""
            shared_client = client if "/clients/" in wanted else ""
            expected = ((shared_user, shared_client), by_path[wanted])
            break
    quotas = {entity: {"producer_byte_rate": rate} for entity, rate in configured.items()}
    assert resolve(quotas, "producer_byte_rate", user, client) == expected
    assert resolve(quotas, "consumer_byte_rate", user, client) is None


def test_a_rate_is_measured_over_at_least_the_full_window_less_one_sample() -> None:
    rate = Rate()
    # one burst: measured over (samples - 1) windows, not over no time at all
    assert rate.record(100.0, 1000) == 1000 / ((WINDOW_SAMPLES - 1) * WINDOW_SECONDS)
    # samples older than the whole window no longer count
    later = 100.0 + (WINDOW_SAMPLES + 1) * WINDOW_SECONDS
    assert rate.record(later, 10) == 10 / ((WINDOW_SAMPLES - 1) * WINDOW_SECONDS)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _manager(quotas: dict[Entity, dict[str, float]]) -> tuple[QuotaManager, _Clock]:
    store = ClientQuotas(lambda: quotas, lambda alterations: None)
    clock = _Clock()
    return QuotaManager(store, now=clock), clock


def test_a_client_within_its_quota_is_never_throttled() -> None:
    manager, clock = _manager({(("client-id", "slow"),): {"producer_byte_rate": 1000.0}})
    for _ in range(100):
        assert manager.throttle_ms(ApiKey.PRODUCE, "User:ANONYMOUS", "slow", 900) == 0
        clock.now += 1.0
    # another client id, and Fetch, are not under this quota
    assert manager.throttle_ms(ApiKey.PRODUCE, "User:ANONYMOUS", "other", 10**9) == 0
    assert manager.throttle_ms(ApiKey.FETCH, "User:ANONYMOUS", "slow", 10**9) == 0


def test_throttle_times_add_up_to_what_brings_the_rate_back_to_the_quota() -> None:
    """A client that waits each throttle out sends at about its quota: its
    bytes over the time spent (sending and waiting) stay near the quota."""
    quota = 1000.0
    manager, clock = _manager({(("user", None),): {"producer_byte_rate": quota}})
    sent, throttled_ms = 0, 0
    for _ in range(400):
        delay = manager.throttle_ms(ApiKey.PRODUCE, "User:alice", "any", 500)
        assert 0 <= delay <= MAX_THROTTLE_MS
        sent += 500
        throttled_ms += delay
        clock.now += 0.01 + delay / 1000
    elapsed = 400 * 0.01 + throttled_ms / 1000
    assert throttled_ms / 1000 >= sent / quota - WINDOW_SAMPLES * WINDOW_SECONDS
    assert sent / elapsed <= quota * 1.1


@given(size=st.integers(20_000, 10**6), quota=st.integers(1, 100))
def test_a_client_sending_more_than_a_window_of_its_quota_at_once_is_held_to_it(
    size: int, quota: int
) -> None:
    """Kafka's byte-rate throttle is the whole time owed, uncapped: a client
    whose every request is larger than its quota allows in a window, and
    who waits each throttle out, still sends at about its quota. (A
    throttle capped at the window would let one such request through
    every 11 s, whatever its size.)"""
    manager, clock = _manager({(("user", None),): {"producer_byte_rate": float(quota)}})
    sent, started = 0, clock.now
    for _ in range(20):
        delay = manager.throttle_ms(ApiKey.PRODUCE, "User:alice", "any", size)
        sent += size
        clock.now += 0.01 + delay / 1000
    assert sent / (clock.now - started) <= quota * 1.1


def test_a_request_quota_throttle_is_at_most_one_sample_as_in_kafka() -> None:
    """Kafka's ClientRequestQuotaManager caps the request quota's throttle
    at quota.window.size.seconds; a byte rate's throttle has no such cap."""
    manager, _ = _manager(
        {(("user", None),): {"request_percentage": 5e-324, "producer_byte_rate": 1.0}}
    )
    assert manager.request_throttle_ms("User:alice", "any", 0.5) == MAX_REQUEST_THROTTLE_MS
    assert MAX_REQUEST_THROTTLE_MS == WINDOW_SECONDS * 1000
    # 100 bytes over 10 s at 1 byte a second: 90 s owed
    assert manager.throttle_ms(ApiKey.PRODUCE, "User:alice", "any", 100) == 90_000


def test_throttle_times_are_rounded_as_kafka_rounds_them_and_bounded_by_an_int32() -> None:
    """Kafka's Math.round; an infinite or undefined time (a quota as small
    as 5e-324) is the longest throttle the answer's int32 can carry, which
    keeps the client throttled where Kafka's cast to an int wraps."""
    assert [throttle_time_ms(t) for t in (0.4, 0.5, 1.5, 2.49)] == [0, 1, 2, 2]
    for endless in (float("inf"), float("nan"), 1e300):
        assert throttle_time_ms(endless) == MAX_THROTTLE_MS == 2**31 - 1
    assert throttle_time_ms(1e300, MAX_REQUEST_THROTTLE_MS) == MAX_REQUEST_THROTTLE_MS


def test_a_changed_quota_is_measured_afresh() -> None:
    entity: Entity = (("user", None),)
    quotas: dict[Entity, dict[str, float]] = {entity: {"consumer_byte_rate": 10.0}}

    def write(alterations: list[tuple[Entity, dict[str, float | None]]]) -> None:
        for changed, changes in alterations:
            quotas[changed] = {k: v for k, v in changes.items() if v is not None}

    manager = QuotaManager(ClientQuotas(lambda: quotas, write), now=lambda: 5.0)
    # the default user's quota applies to the anonymous principal too
    assert manager.throttle_ms(ApiKey.FETCH, "User:ANONYMOUS", None, 10_000) > 0
    manager.quotas.alter(entity, {"consumer_byte_rate": 10.0**9})
    assert manager.throttle_ms(ApiKey.FETCH, "User:ANONYMOUS", None, 10_000) == 0


def test_the_embedded_api_refuses_what_kafka_refuses(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node") as opened:
        for entity, changes in (
            ((("group", "x"),), {"producer_byte_rate": 1.0}),
            ((), {"producer_byte_rate": 1.0}),
            ((("user", "x"),), {"producer_byte_rate": 0.5}),
            ((("user", "x"),), {"unknown": 1.0}),
        ):
            with pytest.raises(InvalidClientQuota):
                opened.client_quotas.alter(entity, changes)  # type: ignore[arg-type]
        # pairs in any order name the same entity
        opened.client_quotas.alter((("user", "x"), ("client-id", None)), {"consumer_byte_rate": 8})
        assert opened.client_quotas.entities() == {
            (("client-id", None), ("user", "x")): {"consumer_byte_rate": 8.0}
        }


def test_byte_rates_are_java_longs_as_kafka_checks_them(tmp_path: Path) -> None:
    """Kafka's ClientQuotaControlManager: a byte rate above Long.MAX_VALUE
    (infinity too) is refused, and one within 1e-6 of a whole number is
    whole; a double quota takes any positive value, and a NaN is refused."""
    entity: Entity = (("user", "x"),)
    with engine.open(tmp_path / "node") as opened:
        for refused in (float("inf"), 2.0**63 * 2, 10.5, float("nan")):
            with pytest.raises(InvalidClientQuota):
                opened.client_quotas.alter(entity, {"producer_byte_rate": refused})
        with pytest.raises(InvalidClientQuota):
            opened.client_quotas.alter(entity, {"request_percentage": float("nan")})
        opened.client_quotas.alter(
            entity, {"producer_byte_rate": 1000.0000001, "request_percentage": float("inf")}
        )
        assert opened.client_quotas.entities()[entity] == {
            "producer_byte_rate": 1000.0000001,
            "request_percentage": float("inf"),
        }


def test_the_embedded_api_refuses_a_quota_that_is_no_double(tmp_path: Path) -> None:
    """Over the wire a quota is a double; the embedded API's caller may pass
    anything, and what is not a number, or an int past every double, is
    InvalidClientQuota, not an error of Python's."""
    entity: Entity = (("user", "x"),)
    with engine.open(tmp_path / "node") as opened:
        for refused in (10**400, "5", True, [1.0]):
            with pytest.raises(InvalidClientQuota):
                opened.client_quotas.alter(entity, {"request_percentage": refused})  # type: ignore[dict-item]
        opened.client_quotas.alter(entity, {"request_percentage": 5})
        assert opened.client_quotas.entities() == {entity: {"request_percentage": 5.0}}


def test_idle_client_ids_are_forgotten_so_their_count_stays_bounded() -> None:
    manager, clock = _manager({(("client-id", None),): {"producer_byte_rate": 10.0**9}})
    for i in range(20_000):
        manager.throttle_ms(ApiKey.PRODUCE, "User:ANONYMOUS", f"client-{i}", 100)
        if i % 50 == 0:
            clock.now += WINDOW_SECONDS  # fifty new client ids a second
    # a window's worth are live; a sweep keeps them and waits for twice as many
    live = 50 * (WINDOW_SAMPLES + 1)
    assert manager.buckets <= max(SWEEP_AT, 2 * live)
    assert manager.rate("producer_byte_rate", "", "client-19999") > 0


def test_a_fetch_asks_for_the_quota_over_the_window_less_one_sample() -> None:
    manager, _ = _manager({(("user", "alice"),): {"consumer_byte_rate": 1000.0}})
    assert manager.window_bytes(ApiKey.FETCH, "User:alice", "any") == 1000 * (
        WINDOW_SAMPLES - 1
    ) * int(WINDOW_SECONDS)
    # no quota, and Produce (never cut), have no such bound
    assert manager.window_bytes(ApiKey.FETCH, "User:bob", "any") is None
    assert manager.window_bytes(ApiKey.PRODUCE, "User:alice", "any") is None


def test_an_unrecorded_answer_leaves_the_rate_as_it_was() -> None:
    """A throttled Fetch is answered empty: its bytes are taken back, so a
    client that waits its throttle out is served within the quota again."""
    manager, clock = _manager({(("client-id", "c"),): {"consumer_byte_rate": 1000.0}})
    limit = manager.window_bytes(ApiKey.FETCH, "User:ANONYMOUS", "c")
    assert limit is not None
    assert manager.throttle_ms(ApiKey.FETCH, "User:ANONYMOUS", "c", limit) == 0
    before = manager.rate("consumer_byte_rate", "", "c")
    delay = manager.throttle_ms(ApiKey.FETCH, "User:ANONYMOUS", "c", limit)
    assert delay > 0
    manager.unrecord(ApiKey.FETCH, "User:ANONYMOUS", "c", limit)
    assert manager.rate("consumer_byte_rate", "", "c") == pytest.approx(before)
    clock.now += delay / 1000
    assert manager.rate("consumer_byte_rate", "", "c") <= 1000.0


def test_a_request_quota_is_a_share_of_the_servers_time_in_percent() -> None:
    """Kafka's request quota: request_percentage 50 is half of one thread's
    time; a client that takes more is throttled what brings it back."""
    manager, clock = _manager({(("user", "alice"),): {"request_percentage": 50.0}})
    # 4 s of the server's time in 10 s: 40 %, within the quota
    for _ in range(10):
        assert manager.request_throttle_ms("User:alice", "any", 0.4) == 0
        clock.now += 1.0
    # then 2 s in one second: 6 s in the 10 s window is 60 %: 20 % over,
    # about 2 s owed, answered as Kafka caps it: one sample of the window
    delay = manager.request_throttle_ms("User:alice", "any", 2.0)
    assert delay == MAX_REQUEST_THROTTLE_MS
    # another user, and a byte-rate API's bytes, are not under this quota
    assert manager.request_throttle_ms("User:bob", "any", 100.0) == 0
    assert manager.throttle_ms(ApiKey.FETCH, "User:alice", "any", 10**9) == 0
