"""A Schema Registry API checking passwords in a Server's pool goes on
checking them when that Server is stopped and started again: stop shuts
the pool down and start makes a new one, and a registry that kept the
first pool had every login it had not seen yet refused (503, the stopped
pool refusing every check) for as long as it served."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import aiohttp

import engine
from engine.server.config import ServerConfig
from engine.server.registry_config import RegistryConfig
from engine.server.schema_registry import registry_server_for
from engine.server.server import Server
from tests.engine.conftest import QUIET_STORE

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


def test_a_registry_checks_passwords_after_its_server_is_stopped_and_started_again(
    tmp_path: Path,
) -> None:
    async def run(opened: engine.Engine) -> tuple[list[int], list[int]]:
        server_config = ServerConfig(host="127.0.0.1", port=0)
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
        finally:
            await registry.stop()
            await server.stop()
        return before, after

    with engine.open(tmp_path / "node", config=engine.EngineConfig(store=QUIET_STORE)) as opened:
        opened.credentials.add("alice", "SCRAM-SHA-512", PASSWORD)
        opened.credentials.add("bob", "SCRAM-SHA-256", PASSWORD)
        before, after = asyncio.run(asyncio.wait_for(run(opened), TIMEOUT))
    assert before == [200]
    assert after == [200, 401, 401]
