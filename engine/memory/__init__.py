"""Agent memory on the engine: points in time as offset vectors, bounded
replay, typed agent records, lookups and forks, and references carried over
to a cluster the records were mirrored to (docs/memory.md).

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
    from engine.memory.translate import (
        BelowFirstSync,
        NoOffsetSyncs,
        NotMirrored,
        NotTranslated,
        translate_offset,
        translate_position,
        translate_ref,
        translate_vector,
    )
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
    "BelowFirstSync": "engine.memory.translate",
    "NoOffsetSyncs": "engine.memory.translate",
    "NotMirrored": "engine.memory.translate",
    "NotTranslated": "engine.memory.translate",
    "translate_offset": "engine.memory.translate",
    "translate_position": "engine.memory.translate",
    "translate_ref": "engine.memory.translate",
    "translate_vector": "engine.memory.translate",
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
    "BelowFirstSync",
    "Decided",
    "InvalidAction",
    "NoOffsetSyncs",
    "NotMirrored",
    "NotTranslated",
    "OffsetVector",
    "Policy",
    "Position",
    "RecordRef",
    "StoredAction",
    "Tool",
    "translate_offset",
    "translate_position",
    "translate_ref",
    "translate_vector",
]
