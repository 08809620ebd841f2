"""A server started again serves each connection with that start's state: a
client that reaches it while its listeners open is answered as the started
server answers (Metadata names the port it listens on now), never with the
state the last stop left behind, which a connection keeps once it has read
it (Connection._state)."""

from __future__ import annotations

import asyncio
import gc
import socket
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.protocol.apis import ApiKey, request_schema
from engine.server.config import ServerConfig
from engine.server.listeners import parse_listeners
from engine.server.sasl.jwks import KeySource
from engine.server.sasl.oauth_config import OAuthBearerConfig
from engine.server.server import Server
from tests.server.conftest import free_port
from tests.server.oauth_tokens import AUDIENCE, SigningKey, jwks
from tests.server.wire import Wire, build

TIMEOUT = 30.0
METADATA = build(request_schema(ApiKey.METADATA, 4), topics=None)


def _assert_port_free(port: int) -> None:
    """Binds ``port`` without SO_REUSEADDR: refused while a listener holds it."""
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))


def _advertised_ports(wire: Wire) -> set[int]:
    return {broker.port for broker in wire.request(METADATA).brokers}


def _ports_while_starting(port: int) -> tuple[Wire | None, set[int] | None]:
    """A connection to ``port`` and its first Metadata answer, or (None,
    None) when the listener refuses it (not serving yet)."""
    try:
        wire = Wire(f"127.0.0.1:{port}", timeout=5.0)
    except ConnectionRefusedError:
        return None, None
    return wire, _advertised_ports(wire)


def test_a_client_of_a_server_started_again_is_answered_with_its_new_state(
    tmp_path: Path,
) -> None:
    config = ServerConfig(
        listeners=parse_listeners("PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0")
    )

    async def run(opened: engine.Engine) -> list[tuple[set[int], set[int]]]:
        server = Server(opened, config)
        await server.start()
        await server.stop()
        loop = asyncio.get_running_loop()
        create_server = loop.create_server
        first_port: asyncio.Future[int] = loop.create_future()
        gate = asyncio.Event()

        async def held_create_server(*args: Any, **kwargs: Any) -> asyncio.Server:
            # The second listener opens only once the client has tried the
            # first: the window a slow one (a name to resolve) leaves.
            if first_port.done():
                await asyncio.wait_for(gate.wait(), TIMEOUT)
            opened_server = await create_server(*args, **kwargs)
            if not first_port.done():
                first_port.set_result(opened_server.sockets[0].getsockname()[1])
            return opened_server

        loop.create_server = held_create_server  # type: ignore[method-assign]
        starting = asyncio.ensure_future(server.start())
        try:
            port = await asyncio.wait_for(first_port, TIMEOUT)
            wire, during = await asyncio.to_thread(_ports_while_starting, port)
            gate.set()
            await asyncio.wait_for(starting, TIMEOUT)
            loop.create_server = create_server  # type: ignore[method-assign]
            now = {server.ports["PLAINTEXT"]}  # Metadata names the listener asked
            if wire is None:  # refused while starting: the client connects again
                wire = await asyncio.to_thread(Wire, f"127.0.0.1:{port}", TIMEOUT)
            answers = [await asyncio.to_thread(_advertised_ports, wire) for _ in range(2)]
            if during is not None:
                answers.insert(0, during)
            wire.close()
            return [(answer, now) for answer in answers]
        finally:
            gate.set()
            loop.create_server = create_server  # type: ignore[method-assign]
            if not starting.done():
                await asyncio.wait_for(starting, TIMEOUT)
            await server.stop()

    with engine.open(tmp_path / "node") as opened:
        pairs = asyncio.run(run(opened))
    assert pairs
    for answered, listening in pairs:
        assert answered == listening


def test_a_start_failing_before_its_state_closes_its_listeners(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start that cannot make its state (the cluster id or the ACLs
    unreadable) leaves nothing open: its listeners were left bound, not
    serving, and stop() raised as it found no state to stop, so the port
    stayed taken until the process ended."""

    def unreadable(_: object) -> str:
        raise OSError("the cluster id could not be read")

    monkeypatch.setattr("engine.server.server.cluster_id_for", unreadable)
    port = free_port()
    config = ServerConfig(listeners=parse_listeners(f"PLAINTEXT://127.0.0.1:{port}"))

    async def run(opened: engine.Engine) -> None:
        server = Server(opened, config)
        with pytest.raises(OSError, match="cluster id"):
            await server.start()
        await server.stop()  # nothing left to stop
        _assert_port_free(port)

    with engine.open(tmp_path / "node") as opened:
        asyncio.run(run(opened))


def _refuse(*_: object) -> None:
    raise OSError("refused after the state was made")


@pytest.mark.parametrize(
    "step", ["broker_configs.set_static", "metrics.add_source", "loop_lag.start"]
)
def test_a_start_failing_after_its_state_leaves_nothing_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """A start whose state is made but that fails after it (the broker
    configs or the metrics refusing the server, or a step after its tasks
    and metrics' source are made) leaves nothing open: its listeners were
    left bound, its tasks running and its metrics' source in place until a
    stop()."""
    port = free_port()
    config = ServerConfig(listeners=parse_listeners(f"PLAINTEXT://127.0.0.1:{port}"))

    async def run(opened: engine.Engine) -> None:
        server = Server(opened, config)
        owner, method = step.split(".")
        targets = {
            "broker_configs": opened.broker_configs,
            "metrics": opened.metrics(),
            "loop_lag": server.loop_lag,
        }
        monkeypatch.setattr(targets[owner], method, _refuse)
        with pytest.raises(OSError, match="after the state"):
            await server.start()
        others = asyncio.all_tasks() - {asyncio.current_task()}
        assert all(task.done() for task in others)  # no reporter, sweeper or tick left
        assert server.loop_lag._collected not in gc.callbacks
        assert server not in opened.metrics()._sources
        _assert_port_free(port)
        await asyncio.wait_for(server.stop(), TIMEOUT)  # nothing left to stop

    with engine.open(tmp_path / "node") as opened:
        asyncio.run(run(opened))


def test_a_server_started_again_is_stopped_by_its_next_stop(tmp_path: Path) -> None:
    """The second stop() of a server started, stopped and started again
    closes its listeners as the first did: it found the first's close
    finished and returned at once, its port held until the process ended."""
    port = free_port()
    config = ServerConfig(listeners=parse_listeners(f"PLAINTEXT://127.0.0.1:{port}"))

    async def run(opened: engine.Engine) -> None:
        server = Server(opened, config)
        for _ in range(2):
            await server.start()
            await asyncio.wait_for(server.stop(), TIMEOUT)
            _assert_port_free(port)

    with engine.open(tmp_path / "node") as opened:
        asyncio.run(run(opened))


def test_a_server_started_after_a_stop_cut_short_is_stopped_by_its_next_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start after a stop cut short (its drain failed) finishes that
    stop first: the next stop() closes the new listeners, where the cut
    close, kept, skipped its listeners' step and waited for ever on
    listeners it never closed."""
    port = free_port()
    config = ServerConfig(listeners=parse_listeners(f"PLAINTEXT://127.0.0.1:{port}"))
    drain = Server._drain

    async def cut_drain(server: Server, connections: list[Any]) -> None:
        monkeypatch.setattr(Server, "_drain", drain)  # fails once
        raise RuntimeError("drain cut short")

    async def run(opened: engine.Engine) -> None:
        server = Server(opened, config)
        await server.start()
        monkeypatch.setattr(Server, "_drain", cut_drain)
        with pytest.raises(RuntimeError, match="drain cut short"):
            await server.stop()
        await server.start()
        await asyncio.wait_for(server.stop(), TIMEOUT)
        _assert_port_free(port)

    with engine.open(tmp_path / "node") as opened:
        asyncio.run(run(opened))


def test_a_failed_start_raises_its_own_error_when_an_undo_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start failing after its state is made raises its own error when
    undoing it fails too (the metrics refusing to drop the server's
    source), and still undoes the rest: the undo's error replaced the
    start's and left the state's pools running and its listeners listed."""
    port = free_port()
    config = ServerConfig(listeners=parse_listeners(f"PLAINTEXT://127.0.0.1:{port}"))

    def refuse_removal(*_: object) -> None:
        raise RuntimeError("the metrics refused to drop the source")

    async def run(opened: engine.Engine) -> None:
        server = Server(opened, config)
        monkeypatch.setattr(server.loop_lag, "start", _refuse)
        monkeypatch.setattr(opened.metrics(), "remove_source", refuse_removal)
        with pytest.raises(OSError, match="after the state"):
            await server.start()
        assert server._state is None and not server._servers
        _assert_port_free(port)
        await asyncio.wait_for(server.stop(), TIMEOUT)  # nothing left to stop

    with engine.open(tmp_path / "node") as opened:
        asyncio.run(run(opened))


def test_a_start_cancelled_again_in_its_clean_up_leaves_its_port_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start cancelled after its state is made, and cancelled a second
    time while it cleans up (awaiting its cancelled tasks), frees its port
    all the same: the listeners are closed before anything is awaited. The
    next stop() finishes the clean-up cut short (the tasks ended, the
    metrics' source dropped, the state's pools shut down), and the server
    starts and stops again."""
    port = free_port()
    config = ServerConfig(listeners=parse_listeners(f"PLAINTEXT://127.0.0.1:{port}"))

    async def run(opened: engine.Engine) -> None:
        server = Server(opened, config)
        loop = asyncio.get_running_loop()

        def cancelled_here() -> None:
            # The first cancellation lands once the state and its tasks are
            # made; the second at the clean-up's first await.
            starting = asyncio.current_task()
            assert starting is not None
            loop.call_soon(starting.cancel)
            raise asyncio.CancelledError

        monkeypatch.setattr(server.loop_lag, "start", cancelled_here)
        starting = asyncio.ensure_future(server.start())
        with pytest.raises(asyncio.CancelledError):
            await starting
        assert starting.cancelling() == 1  # the second cancellation reached it
        _assert_port_free(port)
        state = server._state
        assert state is not None
        await asyncio.wait_for(server.stop(), TIMEOUT)
        others = asyncio.all_tasks() - {asyncio.current_task()}
        assert all(task.done() for task in others)
        assert server not in opened.metrics()._sources
        assert state.admin._shutdown and state.record_checks._shutdown
        _assert_port_free(port)
        monkeypatch.undo()
        await server.start()
        await asyncio.wait_for(server.stop(), TIMEOUT)
        _assert_port_free(port)

    with engine.open(tmp_path / "node") as opened:
        asyncio.run(run(opened))


def test_a_start_refused_its_tls_context_leaves_no_key_refresh_running(tmp_path: Path) -> None:
    """A SASL_SSL listener whose keystore cannot be read fails the start
    (server.tls.server_context) before any listener is bound: the token
    keys' refresh of an OAUTHBEARER listener is not left running behind
    it, polling its endpoint for a server that never started."""
    key_file = tmp_path / "jwks.json"
    key_file.write_bytes(jwks(SigningKey.ec("start-key")))
    config = ServerConfig(
        listeners=parse_listeners("SASL_SSL://127.0.0.1:0"),
        sasl_enabled_mechanisms=("OAUTHBEARER",),
        oauthbearer=OAuthBearerConfig(
            jwks_endpoint_url=key_file.as_uri(), expected_audience=(AUDIENCE,)
        ),
        ssl_keystore_location=str(tmp_path / "missing.pem"),
    )

    async def run(opened: engine.Engine) -> None:
        server = Server(opened, config)
        with pytest.raises(FileNotFoundError):
            await server.start()
        others = asyncio.all_tasks() - {asyncio.current_task()}
        assert others == set()

    with engine.open(tmp_path / "node") as opened:
        asyncio.run(run(opened))


def test_a_start_cancelled_in_its_clean_up_before_any_listener_is_finished_by_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start refused its port (held by another socket) binds no
    listener; cancelled again while its clean-up stops the token keys'
    refresh, it leaves that refresh running, and the next stop() finishes
    the clean-up though the server has no listener to close."""
    key_file = tmp_path / "jwks.json"
    key_file.write_bytes(jwks(SigningKey.ec("start-key")))
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    config = ServerConfig(
        listeners=parse_listeners(f"SASL_PLAINTEXT://127.0.0.1:{port}"),
        sasl_enabled_mechanisms=("OAUTHBEARER",),
        oauthbearer=OAuthBearerConfig(
            jwks_endpoint_url=key_file.as_uri(), expected_audience=(AUDIENCE,)
        ),
    )
    stop_keys = KeySource.stop
    stops: list[str] = []

    async def cancelled_once(source: KeySource) -> None:
        stops.append("stop")
        if len(stops) == 1:
            raise asyncio.CancelledError  # a second cancellation, landing here
        await stop_keys(source)

    monkeypatch.setattr(KeySource, "stop", cancelled_once)

    async def run(opened: engine.Engine) -> None:
        server = Server(opened, config)
        with pytest.raises(asyncio.CancelledError):
            await server.start()
        await asyncio.wait_for(server.stop(), TIMEOUT)
        assert stops == ["stop", "stop"]
        others = asyncio.all_tasks() - {asyncio.current_task()}
        assert others == set()

    try:
        with engine.open(tmp_path / "node") as opened:
            asyncio.run(run(opened))
    finally:
        holder.close()
