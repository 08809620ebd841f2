"""Produce to a topic that checks its records' schemas, off the event loop.

Such a topic's batches are decoded and each record checked in Python
(engine/schemas/record_check.py): a large batch to a ``full`` JSON Schema
topic takes a noticeable time, which on the event loop would stall every
other connection's requests. Those appends run on the server's one
record-check thread instead; one thread, so the batches of a partition are
validated and appended in the order their requests came in (an idempotent
producer's pipelined requests stay in sequence). Every other topic keeps
the produce path on the loop, unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from engine.engine import CreateCheck, Engine
from engine.errors import EngineError
from engine.partition import AppendResult
from engine.provenance import Provenance


def records_checked(engine: Engine, topic: str, partition: int) -> bool:
    """Whether the partition's topic checks its records (False for a topic
    or partition that does not exist: the engine's own answer follows)."""
    try:
        return engine.partition(topic, partition).record_check is not None
    except EngineError:
        return False


def submit_checked(
    engine: Engine,
    pool: ThreadPoolExecutor,
    topic: str,
    partition: int,
    records: bytes | bytearray | memoryview,
    remote: bool | None,
    provenance: Provenance | None = None,
    may_create: CreateCheck | None = None,
) -> Coroutine[Any, Any, AppendResult]:
    """Engine.submit of a Produce partition's data (one batch) on ``pool``,
    queued now (so in request order); what to await for the append's result
    once it is durable, or its refusal."""
    queued = pool.submit(
        engine.submit,
        topic,
        partition,
        records,
        remote=remote,
        provenance=provenance,
        one_batch=True,
        may_create=may_create,
    )

    async def durable() -> AppendResult:
        appended = await asyncio.wrap_future(queued)
        return await asyncio.wrap_future(appended)

    return durable()
