"""Listeners as Kafka writes them, in the config file and on the command
line: parsing, refusals that say what is wrong, and the advertised
endpoint of each listener."""

from __future__ import annotations

from pathlib import Path

import pytest
from kio.index import load_request_schema

import engine
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server.config import ConfigFileError, ServerConfig, load_config_file
from engine.server.listeners import Listener, SecurityProtocol, parse_listeners
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire, build


def test_listeners_parse_as_kafka_writes_them() -> None:
    found = parse_listeners("PLAINTEXT://127.0.0.1:9092, sasl_ssl://:9093,SSL://[::1]:9094")
    assert found == (
        Listener("PLAINTEXT", "127.0.0.1", 9092),
        Listener("SASL_SSL", "0.0.0.0", 9093),
        Listener("SSL", "::1", 9094),
    )
    assert [str(listener) for listener in found][2] == "SSL://[::1]:9094"
    assert found[1].protocol is SecurityProtocol.SASL_SSL
    assert found[1].protocol.uses_tls and found[1].protocol.uses_sasl


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("127.0.0.1:9092", "NAME://host:port"),
        ("CLIENT://127.0.0.1:9092", "listeners' name must be one of PLAINTEXT, SSL"),
        ("PLAINTEXT://127.0.0.1", "no port"),
        ("PLAINTEXT://h:99999", "listeners' port must be a 64-bit integer, from 0 to 65535"),
        ("PLAINTEXT://a:1,PLAINTEXT://b:2", "named twice"),
        ("", "no listener"),
    ],
)
def test_bad_listeners_are_refused_with_the_reason(text: str, complaint: str) -> None:
    """Read by parse_listeners, its name and port checked by ServerConfig's
    table of a listener's fields, as a listener made in Python is."""
    with pytest.raises(ValueError, match=complaint):
        ServerConfig(listeners=parse_listeners(text))


def test_the_config_file_sets_listeners_and_their_security(tmp_path: Path) -> None:
    path = tmp_path / "tidelog.toml"
    path.write_text(
        "[server]\n"
        'listeners = "PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9093"\n'
        '"advertised.listeners" = "SASL_SSL://broker.example:19093"\n'
        '"sasl.enabled.mechanisms" = "SCRAM-SHA-512, PLAIN"\n'
        '"listener.name.sasl_ssl.sasl.enabled.mechanisms" = ["SCRAM-SHA-256"]\n'
        '"ssl.keystore.location" = "/etc/tidelog/server.pem"\n'
        '"connections.max.reauth.ms" = 60000\n'
    )
    server = load_config_file(path).server
    plaintext, sasl_ssl = server.effective_listeners
    assert server.sasl_enabled_mechanisms == ("SCRAM-SHA-512", "PLAIN")
    assert server.mechanisms(sasl_ssl) == ("SCRAM-SHA-256",)
    assert server.mechanisms(plaintext) == ("SCRAM-SHA-512", "PLAIN")
    assert server.connections_max_reauth_ms == 60000
    assert server.advertised(sasl_ssl, 9093) == ("broker.example", 19093)
    assert server.advertised(plaintext, 9092) == ("127.0.0.1", 9092)


def test_without_listeners_listen_and_advertised_make_one_plaintext_listener() -> None:
    server = ServerConfig(host="0.0.0.0", port=0, advertised_host="me", advertised_port=None)
    [listener] = server.effective_listeners
    assert listener == Listener("PLAINTEXT", "0.0.0.0", 0)
    assert server.advertised(listener, 40000) == ("me", 40000)


@pytest.mark.parametrize(
    ("lines", "complaint"),
    [
        ('listeners = "SSL://127.0.0.1:9093"\n', "needs ssl.keystore.location"),
        (
            '"sasl.enabled.mechanisms" = "GSSAPI"\n',
            "sasl.enabled.mechanisms must be a list of any of",
        ),
        (
            '"ssl.client.auth" = "always"\n',
            "ssl.client.auth must be one of required, requested, none",
        ),
        ('"advertised.listeners" = "SASL_SSL://h:1"\n', "names no listener"),
        ('"connections.max.reauth.ms" = -1\n', "0 or more"),
        ('"listener.name.ssl.sasl.enabled.mechanisms" = "PLAIN"\n', "names no listener"),
    ],
)
def test_bad_security_settings_are_refused(tmp_path: Path, lines: str, complaint: str) -> None:
    path = tmp_path / "tidelog.toml"
    path.write_text("[server]\n" + lines)
    with pytest.raises(ConfigFileError, match=complaint):
        load_config_file(path)


def test_a_listener_accepts_only_its_own_mechanisms(tmp_path: Path) -> None:
    config = ServerConfig(
        listeners=parse_listeners("SASL_PLAINTEXT://127.0.0.1:0"),
        listener_sasl_enabled_mechanisms=(("SASL_PLAINTEXT", ("SCRAM-SHA-512",)),),
    )
    handshake = build(load_request_schema(ApiKey.SASL_HANDSHAKE, 1), mechanism="PLAIN")
    with engine.open(tmp_path / "node") as opened:
        server = InProcessServer(opened, config=config)
        try:
            with Wire(server.bootstrap) as wire:
                answer = wire.request(handshake)
                assert answer.error_code == KafkaCode.UNSUPPORTED_SASL_MECHANISM
                assert list(answer.mechanisms) == ["SCRAM-SHA-512"]
                assert wire.closed_by_server(30.0)
        finally:
            server.stop()


@pytest.mark.parametrize("written", ["PLAIN, SCRAM-SHA-512", ["PLAIN", "SCRAM-SHA-512"]])
def test_one_listeners_mechanisms_in_kafkas_string_are_its_names(written: object) -> None:
    """The string was taken and kept whole: the handshake then looked for
    a mechanism among its letters and refused every client."""
    listener = Listener("SASL_PLAINTEXT", "127.0.0.1", 0)
    config = ServerConfig(
        listeners=(listener,),
        listener_sasl_enabled_mechanisms=(("SASL_PLAINTEXT", written),),  # type: ignore[arg-type]
    )
    assert config.mechanisms(listener) == ("PLAIN", "SCRAM-SHA-512")
