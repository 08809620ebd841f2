"""Agent memory on the engine: points in time as offset vectors, bounded
replay, typed agent records, lookups and forks (docs/memory.md).

The names below are imported on first use (PEP 562): the engine and the
server import a module of this package (vector, snapshot) without paying
for the rest (the agent records' JSON Schema validator among them)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.memory.actions import Actor, InvalidAction, Policy, Tool
    from engine.memory.agent import AgentMemory, Decided, StoredAction
    from engine.memory.agent_async import AsyncAgentMemory
    from engine.memory.vector import OffsetVector, Position, RecordRef

_EXPORTS = {
    "Actor": "engine.memory.actions",
    "InvalidAction": "engine.memory.actions",
    "Policy": "engine.memory.actions",
    "Tool": "engine.memory.actions",
    "AgentMemory": "engine.memory.agent",
    "Decided": "engine.memory.agent",
    "StoredAction": "engine.memory.agent",
    "AsyncAgentMemory": "engine.memory.agent_async",
    "OffsetVector": "engine.memory.vector",
    "Position": "engine.memory.vector",
    "RecordRef": "engine.memory.vector",
}
"""Where each public name lives."""


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine.memory' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # found once; later lookups are plain attribute reads
    return value


__all__ = [
    "Actor",
    "AgentMemory",
    "AsyncAgentMemory",
    "Decided",
    "InvalidAction",
    "OffsetVector",
    "Policy",
    "Position",
    "RecordRef",
    "StoredAction",
    "Tool",
]
