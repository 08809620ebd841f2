"""tidelog under the distribution's own name: ``import tidelog`` gives the
engine's public API (the ``engine`` package's, name for name) and
``tidelog.testing`` (``engine.testing``: a Kafka broker for tests).

Nothing lives here: every name is the engine's own object, found on first
use, so ``import tidelog`` is as quick as ``import engine`` and the two
spellings never disagree (docs/testing-broker.md says why both exist).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import engine

if TYPE_CHECKING:
    from engine import *  # noqa: F403 - the same names, for type checkers
    from tidelog import testing

__all__ = [*engine.__all__, "testing"]  # noqa: PLE0604 - engine's names, found on first use


def __getattr__(name: str) -> Any:
    if name == "testing":
        return importlib.import_module("tidelog.testing")
    if name not in engine.__all__:
        raise AttributeError(f"module 'tidelog' has no attribute {name!r}")
    value = getattr(engine, name)
    globals()[name] = value
    return value
