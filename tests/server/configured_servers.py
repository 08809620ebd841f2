"""``tidelog serve`` child processes started with a config file of a test
module's own: the module-wide and per-test fixtures those modules share."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.server.conftest import ServerProcess


def start_configured_server(root: Path, config_text: str) -> ServerProcess:
    """A server whose config file holds ``config_text``, its data under ``root``."""
    config = root / "tidelog.toml"
    config.write_text(config_text)
    return ServerProcess(root / "data", args=["--config", str(config)]).start()


def server_fixtures(
    config_text: str, name: str
) -> tuple[Callable[..., Iterator[ServerProcess]], Callable[..., Iterator[ServerProcess]]]:
    """The fixtures ``server`` (one for the module; tests use their own
    groups and topics) and ``own_server`` (one for a test, which it may
    restart or kill), both configured with ``config_text``. A module takes
    them as ``server, own_server = server_fixtures(...)``."""

    @pytest.fixture(scope="module", name="server")
    def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
        started = start_configured_server(tmp_path_factory.mktemp(name), config_text)
        yield started
        started.end_at_teardown(graceful=True)

    @pytest.fixture(name="own_server")
    def test_server(tmp_path: Path) -> Iterator[ServerProcess]:
        started = start_configured_server(tmp_path, config_text)
        yield started
        started.end_at_teardown(graceful=False)

    return module_server, test_server


def with_config(server: ServerProcess, config_text: str) -> ServerProcess:
    """``server``, not started yet, with a config file holding ``config_text``
    beside its data directory."""
    config = server.data_dir.parent / f"{server.data_dir.name}-tidelog.toml"
    config.write_text(config_text)
    server.args = [*server.args, "--config", str(config)]
    return server
