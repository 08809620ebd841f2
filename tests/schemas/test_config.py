"""``[schema_registry]`` and ``--schema-registry``: off unless asked for,
Confluent's port when no port is given, bad settings refused."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import engine
from engine.cli.main import _build_parser
from engine.cli.serve import settings
from engine.server.config import ConfigFileError, ServerConfig, load_config_file
from engine.server.listeners import parse_listeners
from engine.server.registry_config import RegistryConfig
from engine.server.schema_registry import registry_server_for
from tests.engine.conftest import QUIET_STORE


def serve_args(*flags: str) -> argparse.Namespace:
    return _build_parser().parse_args(["serve", *flags])


def test_the_registry_is_off_unless_asked_for() -> None:
    file, _ = settings(serve_args())
    assert file.schema_registry.listen is None


def test_the_flag_alone_serves_on_loopback_8081_and_takes_an_address() -> None:
    assert settings(serve_args("--schema-registry"))[0].schema_registry.listen == (
        "127.0.0.1", 8081,
    )  # fmt: skip
    flagged = settings(serve_args("--schema-registry", "0.0.0.0:18081"))[0]
    assert flagged.schema_registry.listen == ("0.0.0.0", 18081)


def test_the_config_file_sets_it_and_the_flag_overrides(tmp_path: Path) -> None:
    config = tmp_path / "tidelog.toml"
    config.write_text(
        '[schema_registry]\nlisten = "127.0.0.1"\nauthentication = "basic"\n'
        "max_request_bytes = 65536\n"
    )
    loaded = load_config_file(config).schema_registry
    assert (loaded.listen, loaded.authentication, loaded.max_request_bytes) == (
        ("127.0.0.1", 8081), "basic", 65536,
    )  # fmt: skip
    file, _ = settings(serve_args("--config", str(config), "--schema-registry", "127.0.0.1:9"))
    assert file.schema_registry.listen == ("127.0.0.1", 9)
    assert file.schema_registry.authentication == "basic"


@pytest.mark.parametrize(
    ("table", "complaint"),
    [
        ("port = 8081", "unknown keys"),
        ('authentication = "digest"', "authentication must be one of"),
        ("listen = 8081", "listen must be a string"),
        ('listen = ":8081"', "names no host"),
        ("max_request_bytes = 10", "max_request_bytes"),
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, table: str, complaint: str) -> None:
    config = tmp_path / "tidelog.toml"
    config.write_text(f"[schema_registry]\n{table}\n")
    with pytest.raises(ConfigFileError, match=complaint) as refused:
        load_config_file(config)
    assert "[schema_registry]" in str(refused.value)


@pytest.mark.parametrize(
    ("listeners", "client_auth", "authentication", "asks"),
    [
        ("PLAINTEXT://127.0.0.1:0", "none", "auto", False),
        ("PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0", "none", "auto", True),
        ("SSL://127.0.0.1:0", "none", "auto", False),
        ("SSL://127.0.0.1:0", "required", "auto", True),
        ("PLAINTEXT://127.0.0.1:0", "none", "basic", True),
        ("SASL_SSL://127.0.0.1:0", "none", "none", False),
    ],
)
def test_auto_authenticates_when_the_kafka_side_does(
    tmp_path: Path, listeners: str, client_auth: str, authentication: str, asks: bool
) -> None:
    config = ServerConfig(
        listeners=parse_listeners(listeners),
        ssl_client_auth=client_auth,
        ssl_keystore_location=str(tmp_path / "unread.pem"),  # checked only when served
    )
    with engine.open(tmp_path / "node", config=engine.EngineConfig(store=QUIET_STORE)) as e:
        server = registry_server_for(e, RegistryConfig(authentication=authentication), config)
        assert server.authenticate is asks
        assert server.authorizer is None  # no authorizer configured: writes are not checked
