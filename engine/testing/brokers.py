"""TestBroker: an engine and its Kafka wire server, started together in
this process and stopped together, leaving nothing behind.

The server's event loop runs on a thread of its own, so a test may use
blocking clients (confluent-kafka, kafka-python) on its own thread and
asyncio clients (aiokafka) on its own loop alike. The engine runs on the
small-footprint profile (EngineConfig.small) over a temporary data
directory, with its objects in memory unless told otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, TypedDict, Unpack

import engine
from engine.engine import Engine, EngineConfig

if TYPE_CHECKING:
    from engine.server.config import ServerConfig
    from engine.server.server import Server
    from engine.types import TopicDescription

DEFAULT_TIMEOUT_S = 30.0
"""The longest a start or a stop waits for the server's loop."""


class TestBroker:
    """A running broker: ``bootstrap`` for Kafka clients, ``engine`` for the
    embedded API on the same data. Start with :func:`start` (or
    :func:`broker`); :meth:`close` stops the server, closes the engine and
    removes the temporary directory."""

    __test__ = False  # a class named Test*: not a test class for pytest

    engine: Engine
    data_dir: str

    def __init__(
        self,
        opened: Engine,
        server: Server,
        loop: asyncio.AbstractEventLoop,
        thread: threading.Thread,
        data_dir: str,
        remove_data_dir: bool,
        timeout: float,
    ) -> None:
        self.engine = opened
        self.data_dir = data_dir
        self._server = server
        self._loop = loop
        self._thread = thread
        self._remove_data_dir = remove_data_dir
        self._timeout = timeout
        self._closed = False
        """close was called (the broker takes no new work)."""
        self._server_stopped = False
        self._finished = False
        """A close ran to its end: everything is stopped and removed."""
        self.port: int = server.port
        """The Kafka listener's port on 127.0.0.1, chosen by the OS."""

    @property
    def bootstrap(self) -> str:
        """``host:port`` for a client's bootstrap.servers."""
        return f"127.0.0.1:{self.port}"

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        configs: Mapping[str, object] | None = None,
    ) -> TopicDescription:
        """Creates a topic (Engine.create_topic); its description."""
        return self.engine.create_topic(name, partitions, configs)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stops the server (connections closed), closes the engine, ends
        the server's thread and removes the temporary data directory.

        A close cut short (an exception, a KeyboardInterrupt) is finished
        by the next, as Engine.close is (docs/design/0113): the steps done
        are not run again, and the directory is removed only once the
        engine is closed, never under an engine still writing to it."""
        self._closed = True
        if self._finished:
            return
        try:
            self._stop_server()
        finally:
            # Closed even when the server's stop failed: the engine holds
            # the directory's lock and its threads.
            self.engine.close()
        # Reached with the server stopped and the engine closed: the loop
        # is kept running until then, for the next close to stop the
        # server on it.
        _stop_loop(self._loop, self._thread, self._timeout)
        if self._remove_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        self._finished = True

    def _stop_server(self) -> None:
        if not self._server_stopped and self._loop.is_running():
            stopping = asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop)
            try:
                stopping.result(self._timeout)
            except BaseException:
                # Cut short on the loop too (a stop resumes after a
                # cancellation): the next close finishes it, rather than
                # running a second stop beside one still going.
                stopping.cancel()
                raise
        self._server_stopped = True

    def __enter__(self) -> TestBroker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running"
        return f"TestBroker({self.bootstrap}, {state}, data_dir={self.data_dir!r})"


def start(
    *,
    object_store: str = "memory://",
    auto_create_topics: bool = True,
    partitions: int = 1,
    config: EngineConfig | None = None,
    server_config: ServerConfig | None = None,
    data_dir: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> TestBroker:
    """Starts a broker; the caller closes it (or use :func:`broker`).

    ``object_store``: where record data is uploaded (``memory://``, the
    default, or any URL engine.open takes: ``file:///...``, ``s3://...``).
    ``auto_create_topics`` and ``partitions``: a topic is created on its
    first produce or metadata request, with this many partitions, as a
    default Kafka broker does. ``config``: the engine's settings
    (EngineConfig.small() with consumer groups that rebalance at once,
    unless given; auto_create_topics and partitions override it).
    ``server_config``: the wire server's (its host and port are always
    127.0.0.1 and an ephemeral port). ``data_dir``: kept after close when
    given, a fresh temporary directory removed on close otherwise.
    """
    # The wire server's modules are imported when a broker starts, not when
    # engine.testing is: `import tidelog` and the pytest plugin stay cheap.
    from engine.server.config import ServerConfig  # noqa: PLC0415
    from engine.server.server import Server  # noqa: PLC0415

    if config is None:
        small = EngineConfig.small()
        # Kafka's 3 s initial rebalance delay would open every group test with a wait.
        groups = replace(small.groups, group_initial_rebalance_delay_ms=0)
        config = replace(small, groups=groups)
    config = replace(config, auto_create_topics=auto_create_topics, default_partitions=partitions)
    remove_data_dir = data_dir is None
    directory = tempfile.mkdtemp(prefix="tidelog-test-") if data_dir is None else data_dir
    opened: Engine | None = None
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="tidelog-test-broker", daemon=True)
    try:
        opened = engine.open(directory, object_store, config)
        server = Server(opened, replace(server_config or ServerConfig(), host="127.0.0.1", port=0))
        thread.start()
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout)
    except BaseException:
        try:
            if opened is not None:
                opened.close()
        finally:
            _stop_loop(loop, thread, timeout)
            if remove_data_dir:
                shutil.rmtree(directory, ignore_errors=True)
        raise
    return TestBroker(opened, server, loop, thread, directory, remove_data_dir, timeout)


class BrokerOptions(TypedDict, total=False):
    """The keyword arguments of :func:`start`, as :func:`broker` and
    :func:`async_broker` pass them on."""

    object_store: str
    auto_create_topics: bool
    partitions: int
    config: EngineConfig | None
    server_config: ServerConfig | None
    data_dir: str | None
    timeout: float


@contextlib.contextmanager
def broker(**options: Unpack[BrokerOptions]) -> Iterator[TestBroker]:
    """A broker for the ``with`` block (see :func:`start` for the options)."""
    started = start(**options)
    try:
        yield started
    finally:
        started.close()


@contextlib.asynccontextmanager
async def async_broker(**options: Unpack[BrokerOptions]) -> AsyncIterator[TestBroker]:
    """A broker for the ``async with`` block: started and stopped off the
    caller's event loop, which keeps running meanwhile (see :func:`start`)."""
    started = await asyncio.to_thread(functools.partial(start, **options))
    try:
        yield started
    finally:
        await asyncio.to_thread(started.close)


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread, timeout: float) -> None:
    if thread.is_alive():
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
    if not thread.is_alive() and not loop.is_closed():
        loop.close()
