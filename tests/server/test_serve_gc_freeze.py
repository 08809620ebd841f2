"""``tidelog serve`` keeps what its start made (modules, classes, the
engine's and the server's state, all living as long as the process) out
of the garbage collector's later collections: a full collection, which
holds the GIL and so the event loop that acknowledges produces, then
walks only what was made since (engine/gc_pause.py)."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from pathlib import Path

from engine import gc_pause
from engine.cli import serve
from engine.engine import EngineConfig
from engine.server.config import ServerConfig

WAIT_S = 20.0
"""Bound of each wait: the start (well under a second), then the stop."""


def test_what_the_start_made_is_frozen_once_the_server_listens(tmp_path: Path) -> None:
    gc.unfreeze()
    frozen_while_serving: list[int] = []

    async def serve_then_stop() -> int:
        serving = asyncio.create_task(
            serve._serve(
                str(tmp_path / "data"), None, EngineConfig(), ServerConfig(host="127.0.0.1", port=0)
            )
        )
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while gc.get_freeze_count() == 0 and not serving.done():
            assert asyncio.get_running_loop().time() < deadline, "the server never froze"
            await asyncio.sleep(0.01)
        frozen_while_serving.append(gc.get_freeze_count())
        os.kill(os.getpid(), signal.SIGTERM)  # _serve's own handler: a clean stop
        return await asyncio.wait_for(serving, WAIT_S)

    try:
        assert asyncio.run(serve_then_stop()) == 0
        assert gc.get_freeze_count() == 0  # given back to the collections once stopped
    finally:
        gc.unfreeze()
    # Everything alive then: thousands of objects (modules, functions, the engine).
    assert frozen_while_serving[0] > 10_000


def test_freezing_moves_every_tracked_object_out_of_the_collections_until_left() -> None:
    gc.unfreeze()
    try:
        kept: list[list[int]] = [[] for _ in range(1000)]  # tracked containers
        with gc_pause.what_start_made_frozen():
            assert gc.get_freeze_count() >= len(kept)
            walked = {id(found) for found in gc.get_objects()}  # what a collection walks
            assert not walked & {id(kept), *map(id, kept)}
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()


def test_what_an_application_froze_before_stays_frozen() -> None:
    """The permanent generation cannot be given back in part: what the
    application froze is left as it asked, with what the start made."""
    gc.unfreeze()
    try:
        gc.freeze()
        frozen = gc.get_freeze_count()
        with gc_pause.what_start_made_frozen():
            pass
        assert gc.get_freeze_count() >= frozen
    finally:
        gc.unfreeze()
