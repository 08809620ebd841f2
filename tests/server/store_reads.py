"""The stream store's reads a Fetch makes, counted: by offset, whether
awaited (``fetch_async``, or ``fetch_cold`` after ``fetch_hot`` found
the read needs an object) or made at once (``fetch_hot``, a read the log
cache answers or one out of range)."""

from __future__ import annotations

from typing import Any

import pytest


def count_store_reads(monkeypatch: pytest.MonkeyPatch, store: Any) -> list[int]:
    """The offsets ``store`` is read at from now on, in order."""
    reads: list[int] = []
    fetch_async, fetch_cold, fetch_hot = store.fetch_async, store.fetch_cold, store.fetch_hot

    async def counted(stream_id: int, offset: int, max_bytes: int = 1 << 20) -> Any:
        reads.append(offset)
        return await fetch_async(stream_id, offset, max_bytes)

    async def counted_cold(stream_id: int, offset: int, max_bytes: int = 1 << 20) -> Any:
        reads.append(offset)
        return await fetch_cold(stream_id, offset, max_bytes)

    def counted_hot(stream_id: int, offset: int, max_bytes: int = 1 << 20) -> Any:
        reads.append(offset)
        answer = fetch_hot(stream_id, offset, max_bytes)
        if answer is None:  # fetch_async or fetch_cold reads it, and counts it
            reads.pop()
        return answer

    monkeypatch.setattr(store, "fetch_async", counted)
    monkeypatch.setattr(store, "fetch_cold", counted_cold)
    monkeypatch.setattr(store, "fetch_hot", counted_hot)
    return reads
