"""A locally durable append (acks=all on the fsynced WAL) is called back
on its loop by the WAL itself: it never looks up the handoff that brings
a remote acknowledgement back from the uploader's thread
(s3stream/appender.py's DurableCall). A remote append still does, and both
are acknowledged. (A local append's wait for room, which looks the loop
up when it needs it, is held by test_faults.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from s3stream import LOCAL, REMOTE
from s3stream.appender import Appender
from s3stream.store import MemoryStore
from tests.s3stream.test_remote_cadence import TIMEOUT, opened

APPENDS = 16


def test_only_a_remote_append_looks_up_the_loops_handoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up: list[asyncio.AbstractEventLoop] = []
    handoff = Appender.handoff

    def counted(self: Appender, loop: asyncio.AbstractEventLoop) -> object:
        looked_up.append(loop)
        return handoff(self, loop)

    monkeypatch.setattr(Appender, "handoff", counted)
    # A remote append's wait starts its upload (remote_linger_s).
    stream_store = opened(tmp_path / "data", MemoryStore())
    try:
        stream = stream_store.create_stream()
        stream_store.open_stream(stream, 1)

        async def appends() -> tuple[list[int], int, int]:
            local = [stream_store.submit_async(stream, i, i, b"r", LOCAL) for i in range(APPENDS)]
            ends = list(await asyncio.wait_for(asyncio.gather(*local), TIMEOUT))
            after_local = len(looked_up)
            remote = stream_store.submit_async(stream, APPENDS, APPENDS, b"r", REMOTE)
            ends.append(await asyncio.wait_for(remote, TIMEOUT))
            return ends, after_local, len(looked_up)

        ends, after_local, after_remote = asyncio.run(appends())
    finally:
        stream_store.close()
    assert ends == list(range(1, APPENDS + 2))
    assert after_local == 0
    assert after_remote == 1
