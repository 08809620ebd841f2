"""A failed TLS handshake over real sockets: bytes that are not TLS, a
plaintext Kafka request sent to an SSL listener, and on a mutual-TLS
listener a client certificate that has expired or that no trusted CA
signed. Each connection is closed, the server goes on serving a client
that does speak TLS, and the log has a warning naming the peer and the
reason, one line per host per interval (engine/server/tls_handshake.py).
The interval itself on a manual clock."""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from kio.index import load_request_schema

import engine
from engine.clock import ManualClock
from engine.protocol.apis import ApiKey
from engine.server.tls_handshake import HandshakeFailures
from tests.server.certificates import Authority, Pem, Tls
from tests.server.in_process import InProcessServer
from tests.server.wire import build, encode_request

TIMEOUT = 10.0
LOGGER = "tidelog.server"


@pytest.fixture(scope="module")
def refused_clients(tmp_path_factory: pytest.TempPathFactory, tls: Tls) -> dict[str, Pem]:
    """Client certificates an mTLS listener refuses: one that has expired,
    one that a CA the server does not trust signed."""
    other = Authority(tmp_path_factory.mktemp("other-ca"))
    return {
        "expired": tls.authority.issue(
            "expired", common_name="expired", unit="Clients", server=False, expired=True
        ),
        "stranger": other.issue("stranger", common_name="stranger", unit="Clients", server=False),
    }


@pytest.fixture
def mtls_server(tls: Tls, tmp_path: Path) -> Iterator[InProcessServer]:
    config = tls.mutual_tls()
    with engine.open(tmp_path / "node") as opened:
        server = InProcessServer(opened, config=config)
        try:
            yield server
        finally:
            server.stop()


def _address(server: InProcessServer) -> tuple[str, int]:
    return "127.0.0.1", server.server.ports["SSL"]


def _closed_after(server: InProcessServer, data: bytes, source: str = "127.0.0.1") -> bool:
    """Whether the server closes a connection that sent ``data``."""
    with socket.create_connection(
        _address(server), timeout=TIMEOUT, source_address=(source, 0)
    ) as sock:
        sock.sendall(data)
        try:
            while sock.recv(4096):
                pass  # a TLS alert, perhaps, then the end
        except ConnectionResetError:
            pass
        return True


def _api_versions_over_tls(server: InProcessServer, tls: Tls, client: Pem) -> bytes:
    """A response frame's size prefix, for an ApiVersions sent over TLS."""
    context = ssl.create_default_context(cafile=str(tls.authority.ca))
    context.load_cert_chain(str(client.certificate), str(client.key))
    with (
        socket.create_connection(_address(server), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        sock.sendall(encode_request(build(load_request_schema(ApiKey.API_VERSIONS, 3)), 1))
        return sock.recv(4)


def _handshake_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and "TLS handshake failed" in r.getMessage()
    ]


def _logged(server: InProcessServer, caplog: pytest.LogCaptureFixture) -> list[str]:
    """The handshake lines, once no handshake is under way (a failure is
    logged on the server's loop before its handshake ends)."""
    server.until_on_loop(lambda: not server.server.handshakes)
    return _handshake_lines(caplog)


def test_bytes_that_are_not_tls_close_the_connection_and_are_logged_once_per_host(
    mtls_server: InProcessServer,
    tls: Tls,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    plaintext_kafka = encode_request(build(load_request_schema(ApiKey.API_VERSIONS, 3)), 1)
    for data in (b"\x16\x03\x01garbage that is no ClientHello" * 4, plaintext_kafka):
        assert _closed_after(mtls_server, data)
    lines = _logged(mtls_server, caplog)
    assert len(lines) == 1, lines  # the second is held back: the same host, within the interval
    assert lines[0].startswith("127.0.0.1:")
    assert "on SSL" in lines[0]
    # another host's failure is its own line
    assert _closed_after(mtls_server, plaintext_kafka, source="127.0.0.2")
    lines = _logged(mtls_server, caplog)
    assert len(lines) == 2 and lines[1].startswith("127.0.0.2:"), lines
    # and the server still serves a client that speaks TLS
    assert len(_api_versions_over_tls(mtls_server, tls, tls.alice)) == 4
    assert tls.key_password.read_text().strip() not in caplog.text


@pytest.mark.parametrize("client", ["expired", "stranger"])
def test_a_client_certificate_refused_on_a_mutual_tls_listener_is_logged_with_the_reason(
    mtls_server: InProcessServer,
    tls: Tls,
    refused_clients: dict[str, Pem],
    caplog: pytest.LogCaptureFixture,
    client: str,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        # TLS 1.3 reports the refusal at the first read, 1.2 in the handshake
        answer = _api_versions_over_tls(mtls_server, tls, refused_clients[client])
        if not answer:
            raise ConnectionResetError("closed without an answer")
    lines = _logged(mtls_server, caplog)
    assert len(lines) == 1, lines
    assert "certificate" in lines[0].lower(), lines[0]
    assert len(_api_versions_over_tls(mtls_server, tls, tls.alice)) == 4


def test_failures_of_one_host_are_one_line_per_interval_with_the_count_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    clock = ManualClock()
    failures = HandshakeFailures(clock.monotonic, interval_s=60.0)
    for port in range(1000, 1005):
        failures.failed("10.0.0.1", f"10.0.0.1:{port}", "SSL", "wrong version number")
        clock.advance(10)
    failures.failed("10.0.0.2", "10.0.0.2:1000", "SASL_SSL", "certificate expired")
    assert _handshake_lines(caplog) == [
        "10.0.0.1:1000: TLS handshake failed on SSL: wrong version number",
        "10.0.0.2:1000: TLS handshake failed on SASL_SSL: certificate expired",
    ]
    clock.advance(10)  # 60 s since 10.0.0.1's line: four were held back
    failures.failed("10.0.0.1", "10.0.0.1:1006", "SSL", "wrong version number")
    assert _handshake_lines(caplog)[-1] == (
        "10.0.0.1:1006: TLS handshake failed on SSL: wrong version number"
        " (4 more from 10.0.0.1 held back in the last 60 s)"
    )
