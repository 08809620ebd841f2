"""``tidelog.testing``: engine.testing under the distribution's name (the
broker context managers and TestBroker; the pytest fixtures come from the
plugin pytest loads by itself)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import engine.testing

if TYPE_CHECKING:
    from engine.testing import TestBroker, async_broker, broker, start

__all__ = ["TestBroker", "async_broker", "broker", "start"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'tidelog.testing' has no attribute {name!r}")
    return getattr(engine.testing, name)
