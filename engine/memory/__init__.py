"""Agent memory on the engine: points in time as offset vectors, bounded
replay, typed agent records, lookups and forks, and references carried over
to a cluster the records were mirrored to (docs/memory.md)."""

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
