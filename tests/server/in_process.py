"""The wire server on an engine of this process, for tests that need both
the engine's insides and a real client on a socket."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import pytest
from confluent_kafka.admin import AdminClient

import engine
from engine.server.config import ServerConfig
from engine.server.context import Identity
from engine.server.server import Server
from tests.server.conftest import quiet_librdkafka

T = TypeVar("T")


class InProcessServer:
    """The wire server on an engine of this process, its event loop on a thread;
    each start and stop waits at most ``timeout`` seconds."""

    def __init__(
        self,
        opened: engine.Engine,
        timeout: float = 30.0,
        config: ServerConfig | None = None,
        principal: str | None = None,
        port: int = 0,
    ) -> None:
        """``principal``: every connection's, as if each had authenticated
        as it (several servers on one engine: one per principal). ``port``:
        an ephemeral one unless given (a server started again where its
        clients knew it)."""
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        config = replace(config or ServerConfig(), host="127.0.0.1", port=port)
        builder = None
        if principal is not None:
            as_principal = principal

            def builder(identity: Identity) -> Identity:
                return replace(identity, principal=as_principal)

        self.server = Server(opened, config, principal_builder=builder)
        self.thread = threading.Thread(target=self.loop.run_forever, name="wire-server")
        self.thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(timeout)
        except BaseException:
            # A port taken, say: no loop thread is left behind for the caller.
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout)
            self.loop.close()
            raise

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def until_on_loop(self, condition: Callable[[], bool]) -> None:
        """Waits (at most ``timeout``) until ``condition``, evaluated on the
        server's event loop, between two of its steps, holds."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            answer: concurrent.futures.Future[bool] = concurrent.futures.Future()
            self.loop.call_soon_threadsafe(lambda found=answer: found.set_result(condition()))
            if answer.result(self.timeout):
                return
            time.sleep(0.01)
        raise AssertionError("the condition never held")

    def on_loop(self, look: Callable[[], T]) -> T:
        """What ``look`` finds on the server's event loop, between two of its steps."""
        found: concurrent.futures.Future[T] = concurrent.futures.Future()
        self.loop.call_soon_threadsafe(lambda: found.set_result(look()))
        return found.result(self.timeout)

    def __enter__(self) -> InProcessServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(self.timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(self.timeout)
        self.loop.close()


class ServedNode:
    """An engine of this process (its data directory root/node, its bucket
    root/bucket), the wire server on it and an AdminClient of that server;
    reopened on the same storage by ``reopen``."""

    def __init__(self, root: Path, config: engine.EngineConfig | None = None) -> None:
        self.root = root
        self.config = config
        self.open()

    def open(self) -> None:
        self.engine = engine.open(self.root / "node", f"file://{self.root / 'bucket'}", self.config)
        self.server = InProcessServer(self.engine)
        self.admin = AdminClient({"bootstrap.servers": self.server.bootstrap, **quiet_librdkafka()})

    def close(self) -> None:
        self.server.stop()
        self.engine.close()

    def reopen(self) -> None:
        self.close()
        self.open()


@contextmanager
def served(data_dir: Path) -> Iterator[InProcessServer]:
    """An engine with its default config, served on loopback; closed on exit."""
    with engine.open(data_dir) as opened:
        server = InProcessServer(opened)
        try:
            yield server
        finally:
            server.stop()


@contextmanager
def served_without_uploads(data_dir: Path) -> Iterator[tuple[engine.Engine, InProcessServer]]:
    """An engine that uploads only when flushed (and never compacts or
    cleans on its own), served on loopback; closed on exit."""
    from s3stream import StreamStoreConfig

    config = engine.EngineConfig(
        store=StreamStoreConfig(upload_interval_s=3600, compaction_interval_s=3600),
        cleaner_interval_s=3600.0,
    )
    opened = engine.open(data_dir, None, config)
    server = InProcessServer(opened)
    try:
        yield opened, server
    finally:
        server.stop()
        opened.close()


class HeldConfigChanges(NamedTuple):
    holding: threading.Event
    """Set once a change has reached the engine (on the server's admin thread)."""
    release: threading.Event
    """Lets it, and every change after it, go on."""


def hold_config_changes(
    opened: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> HeldConfigChanges:
    """Holds the engine's topic config changes until released: an admin
    thread slow to carry them out, on cue."""
    held = HeldConfigChanges(threading.Event(), threading.Event())
    alter_configs = opened.alter_configs

    def held_up(*args: Any, **kwargs: Any) -> Any:
        held.holding.set()
        held.release.wait(30)
        return alter_configs(*args, **kwargs)

    monkeypatch.setattr(opened, "alter_configs", held_up)
    return held
