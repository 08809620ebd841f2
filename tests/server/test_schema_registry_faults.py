"""The Schema Registry API when the catalog cannot be written: Confluent's
store error (50001), and the API keeps serving. The server runs in this
process on an ephemeral port; the failing store is injected, since a real
WAL does not fail on cue."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

import engine
from engine.errors import StorageError
from engine.server.registry_config import RegistryConfig
from engine.server.schema_registry import SchemaRegistryServer
from tests.engine.conftest import QUIET_STORE

SCHEMA = json.dumps({"schema": '"string"'})
HEADERS = {"Content-Type": "application/vnd.schemaregistry.v1+json"}


async def _exchange(server: SchemaRegistryServer) -> list[tuple[int, Any]]:
    await server.start()
    answers: list[tuple[int, Any]] = []
    try:
        base = f"http://127.0.0.1:{server.port}"
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for method, path, body in [
                ("POST", "/subjects/s/versions", SCHEMA),
                ("GET", "/subjects", None),
                ("PUT", "/config", json.dumps({"compatibility": "FULL"})),
                ("GET", "/config", None),
            ]:
                async with session.request(method, base + path, data=body, headers=HEADERS) as r:
                    answers.append((r.status, await r.json(content_type=None)))
    finally:
        await server.stop()
    return answers


def test_a_failed_catalog_write_is_a_store_error_and_reads_go_on(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node", config=engine.EngineConfig(store=QUIET_STORE)) as e:

        def failing(record: list[Any]) -> None:
            raise StorageError("the WAL cannot be written: No space left on device")

        e.schemas._append_record = failing  # type: ignore[method-assign]
        server = SchemaRegistryServer(
            e, RegistryConfig(listen=("127.0.0.1", 0)), authenticate=False
        )
        answers = asyncio.run(_exchange(server))
    (status, body), listed, (config_status, config_body), config = answers
    assert (status, body["error_code"]) == (500, 50001)
    assert "No space left on device" in body["message"]
    assert listed == (200, [])  # nothing was registered
    assert (config_status, config_body["error_code"]) == (500, 50001)
    assert config == (200, {"compatibilityLevel": "BACKWARD"})
