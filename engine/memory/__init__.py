"""Agent memory on the engine: points in time as offset vectors, bounded
replay, typed agent records, lookups and forks (docs/memory.md)."""

from engine.memory.actions import Actor, InvalidAction, Policy, Tool
from engine.memory.agent import AgentMemory, Decided, StoredAction
from engine.memory.agent_async import AsyncAgentMemory
from engine.memory.vector import OffsetVector, Position, RecordRef

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
