"""A Kafka broker for tests: in this process, on an ephemeral 127.0.0.1
port, over a temporary directory, gone when the test ends.

``broker()`` (a context manager) and ``async_broker()`` (its asyncio twin)
yield a :class:`TestBroker`; the pytest plugin (engine/testing/pytest_plugin.py,
loaded through the ``pytest11`` entry point) gives the same object as the
``kafka_broker`` and ``kafka_broker_session`` fixtures. docs/testing-broker.md
shows each.
"""

from __future__ import annotations

from engine.testing.broker import TestBroker, async_broker, broker, start

__all__ = ["TestBroker", "async_broker", "broker", "start"]
