"""A Kafka broker for tests: in this process, on an ephemeral 127.0.0.1
port, over a temporary directory, gone when the test ends.

``broker()`` (a context manager) and ``async_broker()`` (its asyncio twin)
yield a :class:`TestBroker`; the pytest plugin (engine/testing/pytest_plugin.py,
loaded through the ``pytest11`` entry point) gives the same object as the
``kafka_broker`` and ``kafka_broker_session`` fixtures. docs/testing-broker.md
shows each.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.testing.brokers import TestBroker, async_broker, broker, start

__all__ = ["TestBroker", "async_broker", "broker", "start"]


def __getattr__(name: str) -> Any:
    # pytest imports this package (for its plugin) in every session of every
    # project with tidelog installed: the engine is imported on first use.
    if name not in __all__:
        raise AttributeError(f"module 'engine.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module("engine.testing.brokers"), name)
    globals()[name] = value
    return value
