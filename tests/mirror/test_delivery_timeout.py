"""The target producer's delivery timeout, read as librdkafka reads it: the
mirror's default, message.timeout.ms or its alias delivery.timeout.ms (the
last one set wins), 0 for no limit; the mirror's wait for deliveries
follows it, so a session is never given up while librdkafka may still
deliver its records."""

from __future__ import annotations

import math

import pytest

from engine.mirror.group_offsets import answer_deadline_s
from engine.mirror.kafka import DELIVERY_TIMEOUT_MS, confluent, delivery_timeout_ms
from engine.mirror.target import Target


def test_the_mirrors_own_default_applies_when_no_property_sets_it() -> None:
    assert delivery_timeout_ms({"linger.ms": "5"}) == DELIVERY_TIMEOUT_MS
    assert answer_deadline_s({}) == DELIVERY_TIMEOUT_MS / 1000


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({"delivery.timeout.ms": "2000"}, 2000),
        ({"message.timeout.ms": "3000", "delivery.timeout.ms": "2000"}, 2000),
        ({"delivery.timeout.ms": "2000", "message.timeout.ms": "3000"}, 3000),
        ({"message.timeout.ms": "0"}, 0),
    ],
)
def test_the_last_of_the_two_names_wins(properties: dict[str, str], expected: int) -> None:
    assert delivery_timeout_ms(properties) == expected


def _wait_bound(properties: dict[str, str]) -> float:
    target = Target(confluent(), "127.0.0.1:1", properties)
    try:
        return target._timeout_s
    finally:
        target.close()


def test_deliveries_are_awaited_past_the_timeout_the_producer_was_given() -> None:
    # Given through the alias: the old reading took the mirror's 15 s default
    # (a wait of 25 s) and ignored it.
    assert _wait_bound({"delivery.timeout.ms": "2000"}) == 2 + 10


def test_with_no_delivery_limit_the_wait_has_none_either() -> None:
    # The old reading waited 10 s, then started a new session while the old
    # producer could still deliver its records: twice on the target.
    assert _wait_bound({"message.timeout.ms": "0"}) == math.inf
