"""The pytest plugin (entry point ``pytest11: tidelog``): Kafka brokers as
fixtures.

``kafka_broker``: a fresh broker for each test. ``kafka_broker_session``: one
broker for the whole session (faster; tests share its topics, so they name
theirs uniquely). Both yield an engine.testing.TestBroker.

pytest loads this module in every session of every project that has
tidelog installed, so it imports the engine only when a fixture is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from engine.testing.brokers import TestBroker


@pytest.fixture
def kafka_broker() -> Iterator[TestBroker]:
    """A broker of this test's own, removed after it."""
    from engine.testing.brokers import broker  # noqa: PLC0415

    with broker() as started:
        yield started


@pytest.fixture(scope="session")
def kafka_broker_session() -> Iterator[TestBroker]:
    """One broker for the session, removed at its end."""
    from engine.testing.brokers import broker  # noqa: PLC0415

    with broker() as started:
        yield started
