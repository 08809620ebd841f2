"""The asyncio twin of :class:`~engine.memory.agent.AgentMemory`: the same
calls, awaited. Each write waits for durability off the event loop (in the
default executor), so the loop keeps serving while a group commit or a
broker's acknowledgement is awaited.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

from engine.memory.agent import Act, AgentMemory, Cause, Decided, StoredAction
from engine.memory.vector import OffsetVector, RecordRef
from engine.types import Header


class AsyncAgentMemory:
    """``AsyncAgentMemory(target, actor, **options)``: AgentMemory's options;
    every method is a coroutine; ``decide_and_act`` is an async context manager."""

    def __init__(self, *args: Any, **options: Any) -> None:
        self.sync = AgentMemory(*args, **options)
        """The AgentMemory doing the work."""

    async def tool_call(self, *args: Any, **fields: Any) -> RecordRef:
        return await asyncio.to_thread(self.sync.tool_call, *args, **fields)

    async def tool_result(self, *args: Any, **fields: Any) -> RecordRef:
        return await asyncio.to_thread(self.sync.tool_result, *args, **fields)

    async def decision(self, **fields: Any) -> RecordRef:
        return await asyncio.to_thread(self.sync.decision, **fields)

    async def approval(self, **fields: Any) -> RecordRef:
        return await asyncio.to_thread(self.sync.approval, **fields)

    async def denial(self, **fields: Any) -> RecordRef:
        return await asyncio.to_thread(self.sync.denial, **fields)

    async def override(self, **fields: Any) -> RecordRef:
        return await asyncio.to_thread(self.sync.override, **fields)

    async def compensation(self, of: Cause, **fields: Any) -> RecordRef:
        return await asyncio.to_thread(self.sync.compensation, of, **fields)

    async def read(self, ref: RecordRef) -> StoredAction:
        return await asyncio.to_thread(self.sync.read, ref)

    @asynccontextmanager
    async def decide_and_act(
        self,
        *,
        correlation_id: str | None = None,
        context: OffsetVector | None = None,
        causation: Cause | None = None,
        **fields: Any,
    ) -> AsyncIterator[AsyncAct]:
        """As AgentMemory.decide_and_act: committed when the block ends,
        aborted if it raises."""
        manager = self.sync.decide_and_act(
            correlation_id=correlation_id, context=context, causation=causation, **fields
        )
        act = await asyncio.to_thread(manager.__enter__)
        try:
            yield AsyncAct(act)
        except BaseException as error:
            # The transaction is aborted, then the error goes on (as in the sync block).
            await asyncio.to_thread(manager.__exit__, type(error), error, error.__traceback__)
            raise
        await asyncio.to_thread(manager.__exit__, None, None, None)

    async def close(self) -> None:
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> AsyncAgentMemory:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class AsyncAct:
    """An :class:`Act` whose sends are awaited."""

    def __init__(self, act: Act) -> None:
        self.act = act

    @property
    def decision(self) -> RecordRef:
        return self.act.decision

    @property
    def effects(self) -> list[RecordRef]:
        return self.act.effects

    @property
    def result(self) -> Decided | None:
        """The committed refs (a Decided), once the block has ended."""
        return self.act.result

    async def send(
        self,
        topic: str,
        value: bytes | str,
        *,
        key: bytes | str | None = None,
        headers: Sequence[Header] = (),
    ) -> RecordRef:
        return await asyncio.to_thread(self.act.send, topic, value, key=key, headers=headers)
