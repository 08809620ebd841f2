"""The wire server on an engine of this process, for tests that need both
the engine's insides and a real client on a socket."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace

import engine
from engine.server.config import ServerConfig
from engine.server.server import Server


class InProcessServer:
    """The wire server on an engine of this process, its event loop on a thread;
    each start and stop waits at most ``timeout`` seconds."""

    def __init__(
        self, opened: engine.Engine, timeout: float = 30.0, config: ServerConfig | None = None
    ) -> None:
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        config = replace(config or ServerConfig(), host="127.0.0.1", port=0)
        self.server = Server(opened, config)
        self.thread = threading.Thread(target=self.loop.run_forever, name="wire-server")
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(timeout)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(self.timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(self.timeout)
        self.loop.close()
