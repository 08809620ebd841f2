"""A Schema Registry API checking passwords in a Server's pool goes on
checking them when that Server is stopped and started again: stop shuts
the pool down and start makes a new one, and a registry that kept the
first pool had every login it had not seen yet refused (503, the stopped
pool refusing every check) for as long as it served."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

import engine
from engine.server.config import ServerConfig
from engine.server.registry_config import RegistryConfig
from engine.server.schema_registry import SchemaRegistryServer, registry_server_for
from engine.server.server import Server
from tests.engine.conftest import QUIET_STORE
from tests.server.held_checks import HeldChecks, held_checks

TIMEOUT = 30.0
PASSWORD = "correct horse battery staple"


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def _statuses(port: int, logins: list[tuple[str, str]]) -> list[int]:
    """The status of GET /subjects for each login, over HTTP on loopback."""
    statuses = []
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for user, password in logins:
            url = f"http://127.0.0.1:{port}/subjects"
            async with http.get(url, headers=_basic(user, password)) as response:
                statuses.append(response.status)
    return statuses


async def _answer(port: int, user: str) -> tuple[int, str | None] | None:
    """GET /subjects's status and Retry-After for ``user``'s login; None
    when the connection is closed unanswered. Over a socket of its own,
    as aiohttp's client sends a GET once more on a connection closed
    unanswered, and would hide it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        basic = _basic(user, PASSWORD)["Authorization"]
        writer.write(
            f"GET /subjects HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {basic}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        head = (await reader.read()).partition(b"\r\n\r\n")[0].decode()
    finally:
        writer.close()
    if not head:
        return None
    status_line, *header_lines = head.split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers.get("Retry-After")


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not condition():
            await asyncio.sleep(0.005)


@asynccontextmanager
async def _serving(
    opened: engine.Engine, server_config: ServerConfig
) -> AsyncIterator[tuple[Server, SchemaRegistryServer]]:
    """A Server and a Schema Registry API checking passwords in its
    current pool, as ``tidelog serve`` runs them, both stopped on leaving."""
    server = Server(opened, server_config)
    registry = registry_server_for(
        opened,
        RegistryConfig(listen=("127.0.0.1", 0), authentication="basic"),
        server_config,
        lambda: server.password_checks,
    )
    await server.start()
    await registry.start()
    try:
        yield server, registry
    finally:
        await registry.stop()
        await server.stop()


def test_a_registry_checks_passwords_after_its_server_is_stopped_and_started_again(
    tmp_path: Path,
) -> None:
    async def run(opened: engine.Engine) -> tuple[list[int], list[int]]:
        async with _serving(opened, ServerConfig(host="127.0.0.1", port=0)) as (server, registry):
            before = await _statuses(registry.port, [("alice", PASSWORD)])
            first_pool = server.password_checks
            await server.stop()
            await server.start()
            assert server.password_checks is not first_pool
            assert first_pool.stopped
            # Logins the registry has not seen before: each needs a check in the pool.
            after = await _statuses(
                registry.port, [("bob", PASSWORD), ("alice", "wrong"), ("mallory", PASSWORD)]
            )
        return before, after

    with engine.open(tmp_path / "node", config=engine.EngineConfig(store=QUIET_STORE)) as opened:
        opened.credentials.add("alice", "SCRAM-SHA-512", PASSWORD)
        opened.credentials.add("bob", "SCRAM-SHA-256", PASSWORD)
        before, after = asyncio.run(asyncio.wait_for(run(opened), TIMEOUT))
    assert before == [200]
    assert after == [200, 401, 401]


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldChecks]:
    with held_checks(monkeypatch) as checks:
        yield checks


def test_a_login_waiting_for_a_check_when_its_server_stops_is_told_to_try_again(
    tmp_path: Path, held: HeldChecks
) -> None:
    """The stopped Server's pool cancels the checks still waiting for its
    thread: their logins are answered 503 with Retry-After, as one
    arriving after the stop is, not dropped unanswered; the one a thread
    derives still gets its answer."""

    async def run(opened: engine.Engine) -> tuple[tuple[int, str | None] | None, ...]:
        server_config = ServerConfig(host="127.0.0.1", port=0, sasl_password_check_threads=1)
        async with _serving(opened, server_config) as (server, registry):
            pool = server.password_checks
            derived = asyncio.ensure_future(_answer(registry.port, "alice"))
            await _until(lambda: held.started == derived_before + 1)
            waiting = asyncio.ensure_future(_answer(registry.port, "bob"))
            await _until(lambda: pool.admitted == 2)
            await server.stop()
            refused = await waiting
            held.release()
            return refused, await derived

    with engine.open(tmp_path / "node", config=engine.EngineConfig(store=QUIET_STORE)) as opened:
        held.release()  # setting a password derives its keys too
        opened.credentials.add("alice", "SCRAM-SHA-512", PASSWORD)
        opened.credentials.add("bob", "SCRAM-SHA-512", PASSWORD)
        held.hold()
        derived_before = held.started
        refused, derived = asyncio.run(asyncio.wait_for(run(opened), TIMEOUT))
    assert refused == (503, "1")
    assert derived == (200, None)
