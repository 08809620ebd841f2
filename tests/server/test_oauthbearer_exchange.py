"""SASL/OAUTHBEARER on the wire, byte by byte, against the server of this
process with a file:// JWKS: a good token answered with empty bytes; a
refused one with SASL_AUTHENTICATION_FAILED and RFC 7628's JSON error as
the message at once (in bare frames after a SaslHandshake v0, the JSON as
the challenge and the connection closed after the client's ``\\x01``, as
Kafka's OAuthBearerSaslServer runs it); the session lifetime a token's
``exp`` sets (KIP-368), a malformed initial response, the unsecured
validator only when configured, and the start refused without a validator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kio.index import load_request_schema

import engine
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server.config import ServerConfig
from engine.server.listeners import parse_listeners
from engine.server.sasl.jwks import JwksError
from engine.server.sasl.oauth_config import OAuthBearerConfig
from engine.server.server import Server
from tests.logging_state import records_of
from tests.server.in_process import InProcessServer
from tests.server.oauth_tokens import (
    AUDIENCE,
    ISSUER,
    SigningKey,
    b64url,
    claims,
    hs256_with_public_key,
    jwks,
    mint,
    unsigned,
)
from tests.server.wire import Wire, build, frame

TIMEOUT = 30.0
KEY = SigningKey.ec("file-key")
METADATA = build(load_request_schema(ApiKey.METADATA, 4), topics=None)
INVALID_TOKEN = '{"status":"invalid_token"}'
"""RFC 7628's error for a refused token, as Kafka's OAuthBearerSaslServer writes it."""


def _config(oauthbearer: OAuthBearerConfig, reauth_ms: int = 0) -> ServerConfig:
    return ServerConfig(
        listeners=parse_listeners("SASL_PLAINTEXT://127.0.0.1:0"),
        sasl_enabled_mechanisms=("OAUTHBEARER", "PLAIN"),
        oauthbearer=oauthbearer,
        connections_max_reauth_ms=reauth_ms,
    )


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_bytes(jwks(KEY))
    return path


def _secure(key_file: Path) -> OAuthBearerConfig:
    return OAuthBearerConfig(
        jwks_endpoint_url=key_file.as_uri(),
        expected_audience=(AUDIENCE,),
        expected_issuer=ISSUER,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, key_file: Path) -> Iterator[InProcessServer]:
    with engine.open(tmp_path_factory.mktemp("node")) as opened:
        wire = InProcessServer(opened, config=_config(_secure(key_file), reauth_ms=3_600_000))
        try:
            yield wire
        finally:
            wire.stop()


def handshake(wire: Wire, mechanism: str = "OAUTHBEARER", version: int = 1) -> None:
    schema = load_request_schema(ApiKey.SASL_HANDSHAKE, version)
    answer = wire.request(build(schema, mechanism=mechanism))
    assert answer.error_code == KafkaCode.NONE, answer


def authenticate(wire: Wire, auth_bytes: bytes) -> Any:
    schema = load_request_schema(ApiKey.SASL_AUTHENTICATE, 1)
    return wire.request(build(schema, auth_bytes=auth_bytes))


def initial_response(token: str, authzid: str = "") -> bytes:
    gs2 = f"n,a={authzid}," if authzid else "n,,"
    return f"{gs2}\x01auth=Bearer {token}\x01\x01".encode()


def assert_token_refused(answer: Any) -> None:
    """A SaslAuthenticate answer that refuses the token, with RFC 7628's JSON error."""
    assert (answer.error_code, answer.error_message, answer.auth_bytes) == (
        KafkaCode.SASL_AUTHENTICATION_FAILED,
        INVALID_TOKEN,
        b"",
    )


def test_a_valid_token_logs_in_with_its_expiry_as_the_session_lifetime(
    server: InProcessServer,
) -> None:
    token = mint(KEY, claims("agent-7", lifetime_s=600))
    with Wire(server.bootstrap) as wire:
        handshake(wire)
        answer = authenticate(wire, initial_response(token, authzid="agent-7"))
        assert (answer.error_code, answer.auth_bytes) == (KafkaCode.NONE, b"")
        lifetime_ms = answer.session_lifetime.total_seconds() * 1000
        # The token's 600 s, not connections.max.reauth.ms's hour (Kafka's minimum of both).
        assert 590_000 <= lifetime_ms <= 600_000
        assert wire.request(METADATA).brokers


def test_a_refused_token_fails_at_once_with_the_json_error_as_the_message(
    server: InProcessServer,
) -> None:
    token = mint(KEY, claims("agent-7", aud="someone-else"))
    with records_of("tidelog.server") as records, Wire(server.bootstrap) as wire:
        handshake(wire)
        assert_token_refused(authenticate(wire, initial_response(token)))
        assert wire.closed_by_server(TIMEOUT)
    logged = [r.getMessage() for r in records if "OAUTHBEARER" in r.getMessage()]
    assert any("audience 'someone-else', none of the expected ones" in m for m in logged), logged
    assert not any(token.split(".")[2] in m or token.split(".")[1] in m for m in logged)
    with Wire(server.bootstrap) as again:  # the server goes on serving
        handshake(again)
        assert authenticate(again, initial_response(mint(KEY, claims("a")))).error_code == 0


OTHER_KEY = SigningKey.ec("file-key")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (mint(KEY, claims("a", lifetime_s=-120)), "the token expired at"),
        (mint(KEY, claims("a", iss="https://idp.evil")), "issuer 'https://idp.evil', not the"),
        (mint(KEY, claims("a"), kid="rotated"), "no key 'rotated' in the key set"),
        (mint(OTHER_KEY, claims("a")), "the signature does not verify with key 'file-key'"),
        (unsigned(claims("a")), "algorithm 'none' is not one of"),
        (hs256_with_public_key(KEY, claims("a")), "algorithm 'HS256' is not one of"),
    ],
)
def test_each_refusal_is_logged_with_why_and_without_the_token(
    server: InProcessServer, token: str, reason: str
) -> None:
    with records_of("tidelog.server") as records, Wire(server.bootstrap) as wire:
        handshake(wire)
        assert_token_refused(authenticate(wire, initial_response(token)))
    logged = [r.getMessage() for r in records if "OAUTHBEARER" in r.getMessage()]
    assert any(f"SASL authentication failed: OAUTHBEARER: {reason}" in m for m in logged), logged
    assert len([m for m in logged if "failed" in m]) == 1  # one line per refusal
    _, payload, signature = token.split(".")
    assert not any(payload in m or (signature and signature in m) for m in logged)


def test_an_authorization_id_other_than_the_subject_is_refused(server: InProcessServer) -> None:
    with Wire(server.bootstrap) as wire:
        handshake(wire)
        answer = authenticate(wire, initial_response(mint(KEY, claims("a")), authzid="admin"))
        assert answer.error_code == KafkaCode.SASL_AUTHENTICATION_FAILED
        assert answer.error_message == (
            "Authentication failed: Client requested an authorization id (admin) that is"
            " different from the token's principal name (a)"
        )


def test_a_malformed_initial_response_fails_at_once(server: InProcessServer) -> None:
    with Wire(server.bootstrap) as wire:
        handshake(wire)
        answer = authenticate(wire, b"n,,\x01auth=Basic dXNlcjpwYXNz\x01\x01")
        assert answer.error_code == KafkaCode.SASL_AUTHENTICATION_FAILED
        assert answer.error_message == (
            "Authentication failed during authentication due to invalid credentials with"
            " SASL mechanism OAUTHBEARER"
        )
        assert wire.closed_by_server(TIMEOUT)


def test_an_expired_token_s_session_refuses_requests_after_its_exp(server: InProcessServer) -> None:
    token = mint(KEY, claims("agent-7", lifetime_s=1))
    with Wire(server.bootstrap) as wire:
        handshake(wire)
        answer = authenticate(wire, initial_response(token))
        assert answer.error_code == KafkaCode.NONE
        assert answer.session_lifetime.total_seconds() <= 1
        time.sleep(answer.session_lifetime.total_seconds() + 0.3)  # past the token's exp
        with records_of("tidelog.server") as records:
            wire.send(METADATA)
            assert wire.closed_by_server(TIMEOUT)
    logged = [r.getMessage() for r in records]
    assert any(
        "the SASL session of 'agent-7' expired (its credential's expiry)" in m for m in logged
    ), logged


def test_an_unsigned_token_is_refused_unless_unsecured_is_configured(
    tmp_path: Path, key_file: Path
) -> None:
    token = unsigned(claims("dev"))
    with engine.open(tmp_path / "node") as opened:
        for oauthbearer, expected in (
            (_secure(key_file), (KafkaCode.SASL_AUTHENTICATION_FAILED, INVALID_TOKEN)),
            (OAuthBearerConfig(unsecured=True), (KafkaCode.NONE, None)),
        ):
            with records_of("tidelog.server") as records:
                wire_server = InProcessServer(opened, config=_config(oauthbearer))
            try:
                with Wire(wire_server.bootstrap) as wire:
                    handshake(wire)
                    answer = authenticate(wire, initial_response(token))
                    assert (answer.error_code, answer.error_message) == expected
            finally:
                wire_server.stop()
            # The unsecured validator is announced at start, loudly; the JWKS one is not.
            warned = any(
                "SASL/OAUTHBEARER takes UNSIGNED tokens" in r.getMessage() for r in records
            )
            assert warned == oauthbearer.unsecured


def test_the_unsecured_validator_refuses_a_signed_token(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node") as opened:
        wire_server = InProcessServer(opened, config=_config(OAuthBearerConfig(unsecured=True)))
        try:
            with Wire(wire_server.bootstrap) as wire:
                handshake(wire)
                assert_token_refused(authenticate(wire, initial_response(mint(KEY, claims("dev")))))
        finally:
            wire_server.stop()


def test_oauthbearer_without_a_validator_is_refused_by_the_config() -> None:
    with pytest.raises(ValueError, match=r"sasl\.oauthbearer\.jwks\.endpoint\.url"):
        _config(OAuthBearerConfig())
    with pytest.raises(ValueError, match="both set"):
        OAuthBearerConfig(unsecured=True, jwks_endpoint_url="https://idp.test/jwks")
    with pytest.raises(ValueError, match="http://, https:// or file://"):
        OAuthBearerConfig(jwks_endpoint_url="ftp://idp.test/jwks")


def test_a_file_key_set_that_cannot_be_read_fails_the_start(tmp_path: Path) -> None:
    missing = OAuthBearerConfig(jwks_endpoint_url=(tmp_path / "none.json").as_uri())
    with engine.open(tmp_path / "node") as opened:
        server = Server(opened, _config(missing))
        with pytest.raises(JwksError, match=r"none\.json"):
            asyncio.run(server.start())


def test_a_token_with_a_header_of_its_own_making_is_refused(server: InProcessServer) -> None:
    """A header that is not JSON, and a token of two parts: refused, not a crash."""
    for token in (f"{b64url(b'{not json')}.{b64url(b'{}')}.", "abc.def"):
        with Wire(server.bootstrap) as wire:
            handshake(wire)
            assert_token_refused(authenticate(wire, initial_response(token)))


def test_a_refused_token_in_a_bare_frame_gets_the_json_error_then_is_closed_after_x01(
    server: InProcessServer,
) -> None:
    """After a SaslHandshake v0 the exchange has no error code: the JSON
    error is the challenge, and the client's ``\\x01`` ends it (Kafka
    closes a failed bare-frame exchange without an answer)."""
    token = mint(KEY, claims("agent-7", aud="someone-else"))
    with records_of("tidelog.server") as records, Wire(server.bootstrap) as wire:
        handshake(wire, version=0)
        wire.send_raw(frame(initial_response(token)))
        assert wire.read_frame() == INVALID_TOKEN.encode()
        wire.send_raw(frame(b"\x01"))
        assert wire.closed_by_server(TIMEOUT)
    logged = [r.getMessage() for r in records if "OAUTHBEARER" in r.getMessage()]
    assert len([m for m in logged if "audience 'someone-else'" in m]) == 1, logged


def test_a_second_token_after_the_error_ends_the_exchange(server: InProcessServer) -> None:
    """One token per exchange: after the JSON error only ``\\x01`` is taken,
    so one connection cannot be a loop of guesses."""
    with Wire(server.bootstrap) as wire:
        handshake(wire, version=0)
        wire.send_raw(frame(initial_response(mint(KEY, claims("a", aud="other")))))
        assert wire.read_frame() == INVALID_TOKEN.encode()
        wire.send_raw(frame(initial_response(mint(KEY, claims("a")))))
        assert wire.closed_by_server(TIMEOUT)
