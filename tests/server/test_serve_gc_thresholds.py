"""``tidelog serve`` raises the young generation's threshold once started
(and puts it back when it stops), so that the cyclic collector runs some
thirty times less often on the event loop that acknowledges produces
(engine/gc_pause.py, docs/design/0152); an engine embedded in a user's process, with or
without its wire server, leaves every threshold as the application set
it: the interpreter is the application's."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import gc_pause
from engine.cli import serve
from engine.client.producer import Producer
from engine.engine import Engine, EngineConfig
from engine.server.config import ServerConfig
from engine.server.server import Server

WAIT_S = 20.0
"""Bound of each wait: the start (well under a second), then the stop."""

APPLICATIONS_OWN = (1234, 7, 9)
"""Thresholds no release of CPython has as its own: an application's."""


@pytest.fixture
def application_thresholds() -> Iterator[tuple[int, int, int]]:
    """The process's thresholds set to an application's own, and put back after."""
    kept = gc.get_threshold()
    gc.set_threshold(*APPLICATIONS_OWN)
    try:
        yield APPLICATIONS_OWN
    finally:
        gc.set_threshold(*kept)
        gc.unfreeze()


def test_serve_raises_the_young_threshold_once_listening_keeps_the_older_ones_and_restores_them(
    tmp_path: Path, application_thresholds: tuple[int, int, int]
) -> None:
    seen_while_serving: list[tuple[int, int, int]] = []

    async def serve_then_stop() -> int:
        serving = asyncio.create_task(
            serve._serve(
                str(tmp_path / "data"), None, EngineConfig(), ServerConfig(host="127.0.0.1", port=0)
            )
        )
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while gc.get_threshold() == application_thresholds and not serving.done():
            assert asyncio.get_running_loop().time() < deadline, "the thresholds never changed"
            await asyncio.sleep(0.01)
        seen_while_serving.append(gc.get_threshold())
        os.kill(os.getpid(), signal.SIGTERM)  # _serve's own handler: a clean stop
        return await asyncio.wait_for(serving, WAIT_S)

    assert asyncio.run(serve_then_stop()) == 0
    assert seen_while_serving == [(gc_pause.SERVING_GEN0_THRESHOLD, 7, 9)]
    # serve run in a process that lives on (these tests, a script calling
    # the CLI's main) leaves the thresholds as it found them.
    assert gc.get_threshold() == application_thresholds
    assert gc_pause.SERVING_GEN0_THRESHOLD == 20_000


def test_an_embedded_engine_and_its_wire_server_leave_the_thresholds_alone(
    tmp_path: Path, application_thresholds: tuple[int, int, int]
) -> None:
    with Engine.open(tmp_path / "data", None, EngineConfig.small()) as engine:
        engine.create_topic("memory", 2)
        with Producer(engine) as producer:
            for i in range(200):
                producer.send("memory", f"step {i}".encode()).result(WAIT_S)

        async def serve_a_while() -> None:
            server = Server(engine, ServerConfig(host="127.0.0.1", port=0))
            await server.start()
            try:
                await asyncio.sleep(0)
            finally:
                await server.stop()

        asyncio.run(serve_a_while())
        assert gc.get_threshold() == application_thresholds
    assert gc.get_threshold() == application_thresholds
    assert gc.isenabled()
