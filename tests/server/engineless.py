"""A stand-in for the engine of a Server whose requests never reach one
(their dispatch is replaced): what the server still reads of the engine
as connections open, the dynamic max.connections, whether a client
quota is set, and the store's background priority (the password checks')."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from engine.engine import EngineConfig
from engine.server.config import ServerConfig

ENGINELESS: Any = SimpleNamespace(
    broker_configs=SimpleNamespace(max_connections=ServerConfig().max_connections),
    client_quotas=SimpleNamespace(byte_rates=False, request_rates=False),
    config=EngineConfig(),
)
