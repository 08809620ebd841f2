"""Polls of an embedded consumer, blocking or async, with the store reads
they make counted (bytes per read), for the tests of what a poll reads."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import engine
from engine import Engine
from engine.partition import Partition, PartitionFetch
from engine.types import ConsumerRecord


@contextmanager
def counted_reads(e: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The bytes of each store read a consumer of ``e`` makes, in order."""
    read: list[int] = []
    fetch_from, fetch_from_async = e.fetch_from, e.fetch_from_async

    def counted(fetched: PartitionFetch) -> PartitionFetch:
        read.append(sum(len(b) for b in fetched.records))
        return fetched

    def blocking(leader: Partition, offset: int, max_bytes: int, level: str) -> Any:
        return counted(fetch_from(leader, offset, max_bytes, level))

    async def together(leader: Partition, offset: int, max_bytes: int, level: str) -> Any:
        return counted(await fetch_from_async(leader, offset, max_bytes, level))

    with monkeypatch.context() as patched:
        patched.setattr(e, "fetch_from", blocking)
        patched.setattr(e, "fetch_from_async", together)
        yield read


def poll(consumer: engine.Consumer, polled: str, timeout: float = 5.0) -> list[ConsumerRecord]:
    """One ``poll`` (blocking) or ``poll_async`` (async) of ``consumer``."""
    if polled == "async":
        return asyncio.run(consumer.poll_async(timeout))
    return consumer.poll(timeout)
