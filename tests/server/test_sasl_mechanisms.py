"""The SASL mechanisms' server sides, alone: RFC 7677's SCRAM-SHA-256
exchange byte for byte, SCRAM-SHA-512 against a client written from RFC
5802, PLAIN's refusals as Kafka words them, and the stored credentials
(never the password)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.credentials import (
    MIN_ITERATIONS,
    PLAIN,
    ScramCredential,
    UnacceptableCredential,
    UnsupportedSaslMechanism,
    new_credential,
    password_matches,
    salted_password,
)
from engine.delegation_tokens import TokenLogin
from engine.server.sasl import SaslAuthenticationFailed, SaslServer
from engine.server.sasl.plain import PlainServer
from engine.server.sasl.scram import ScramServer
from tests.server.scram_client import client_final, client_first_bare

RFC7677_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")


def step(server: SaslServer, message: bytes) -> bytes:
    return asyncio.run(server.step(message))


async def check(credential: ScramCredential, mechanism: str, password: bytes) -> bool:
    """PLAIN's check, at once (the server's runs on its own threads)."""
    return password_matches(credential, mechanism, password)


def test_rfc7677_scram_sha_256_exchange() -> None:
    credential = new_credential("SCRAM-SHA-256", "pencil", 4096, RFC7677_SALT)
    server = ScramServer(
        "SCRAM-SHA-256",
        lambda user, mechanism: credential if user == "user" else None,
        nonce=b"%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    )
    first = step(server, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    assert first == (
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    final = step(
        server,
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    )
    assert final == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    assert server.complete and server.user == "user"


def scram_client(
    server: ScramServer, hash_name: str, user: str, password: str, *, tamper: str = ""
) -> bytes:
    """Runs RFC 5802's client side against ``server``; returns the server's final message."""
    client_nonce = b"fyko+d2lbbFgONRv9qkxdawL"
    bare = b"n=" + user.encode() + b",r=" + client_nonce
    first = step(server, b"n,," + bare)
    fields = dict(item.split(b"=", 1) for item in first.split(b","))
    nonce = fields[b"r"]
    assert nonce.startswith(client_nonce)
    if tamper == "nonce":
        nonce = client_nonce + b"x"
    elif tamper == "librdkafka":  # before 2.6.1: its own nonce once more
        nonce = client_nonce + nonce
    elif tamper == "prefix":
        nonce = b"x" + nonce
    salted = salted_password(
        hash_name, password.encode(), base64.b64decode(fields[b"s"]), int(fields[b"i"])
    )
    binding = b"biws" if tamper != "binding" else base64.b64encode(b"y,,")
    without_proof = b"c=" + binding + b",r=" + nonce
    auth_message = bare + b"," + first + b"," + without_proof
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    stored_key = hashlib.new(hash_name, client_key).digest()
    signature = hmac.digest(stored_key, auth_message, hash_name)
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    final = step(server, without_proof + b",p=" + base64.b64encode(proof))
    server_key = hmac.digest(salted, b"Server Key", hash_name)
    assert final == b"v=" + base64.b64encode(hmac.digest(server_key, auth_message, hash_name))
    return final


@settings(max_examples=10, deadline=None)
@given(st.text(min_size=1, max_size=20), st.sampled_from(["SCRAM-SHA-256", "SCRAM-SHA-512"]))
def test_scram_authenticates_the_right_password(password: str, mechanism: str) -> None:
    credential = new_credential(mechanism, password)
    server = ScramServer(mechanism, lambda user, m: credential if user == "alice" else None)
    scram_client(server, mechanism.split("-", 1)[1].replace("-", "").lower(), "alice", password)
    assert server.user == "alice"


@pytest.mark.parametrize(
    ("user", "password", "tamper", "detail"),
    [
        ("alice", "wrong", "", "invalid client credentials"),
        ("bob", "secret", "", "no SCRAM-SHA-512 credential"),
        ("alice", "secret", "nonce", "invalid client nonce"),
        ("alice", "secret", "binding", "channel binding"),
        ("alice", "secret", "prefix", "invalid client nonce"),
    ],
)
def test_scram_refuses(user: str, password: str, tamper: str, detail: str) -> None:
    credential = new_credential("SCRAM-SHA-512", "secret")
    server = ScramServer("SCRAM-SHA-512", lambda u, m: credential if u == "alice" else None)
    with pytest.raises(SaslAuthenticationFailed) as refused:
        scram_client(server, "sha512", user, password, tamper=tamper)
    assert detail in refused.value.detail
    assert refused.value.message == (
        "Authentication failed during authentication due to invalid credentials with"
        " SASL mechanism SCRAM-SHA-512"
    )
    assert password not in refused.value.detail
    assert not server.complete


def test_scram_takes_the_nonce_librdkafka_before_2_6_1_writes() -> None:
    """librdkafka before 2.6.1 (Debian's kcat) writes its own nonce again
    before the whole nonce in client-final; Kafka 3.8.1 to 3.9 accept it."""
    credential = new_credential("SCRAM-SHA-512", "secret")
    server = ScramServer("SCRAM-SHA-512", lambda u, m: credential if u == "alice" else None)
    scram_client(server, "sha512", "alice", "secret", tamper="librdkafka")
    assert server.complete and server.user == "alice"


def test_scram_refuses_malformed_and_channel_binding_requests() -> None:
    credential = new_credential("SCRAM-SHA-256", "secret")
    for message in (b"", b"p=tls-unique,,n=alice,r=abc", b"n,,n=alice", b"n,a=bob,n=alice,r=x"):
        server = ScramServer("SCRAM-SHA-256", lambda u, m: credential)
        with pytest.raises(SaslAuthenticationFailed):
            step(server, message)


def test_plain_checks_the_salted_password() -> None:
    credential = new_credential(PLAIN, "s3cret")
    assert b"s3cret" not in b"".join(
        v if isinstance(v, bytes) else b"" for v in credential.to_wire()
    )
    table = {("alice", PLAIN): credential}
    server = PlainServer(lambda u, m: table.get((u, m)), check)
    assert step(server, b"\0alice\0s3cret") == b""
    assert server.complete and server.user == "alice"
    assert step(PlainServer(lambda u, m: table.get((u, m)), check), b"alice\0alice\0s3cret") == b""


@pytest.mark.parametrize(
    ("message", "answer"),
    [
        (b"\0alice\0wrong", "Authentication failed: Invalid username or password"),
        (b"\0nobody\0s3cret", "Authentication failed: Invalid username or password"),
        (b"alice\0s3cret", "Invalid SASL/PLAIN response: expected 3 tokens, got 2"),
        (b"\0\0s3cret", "Authentication failed: username not specified"),
        (b"\0alice\0", "Authentication failed: password not specified"),
        (
            b"bob\0alice\0s3cret",
            "Authentication failed: Client requested an authorization id that is different"
            " from username",
        ),
    ],
)
def test_plain_refuses_as_kafka(message: bytes, answer: str) -> None:
    credential = new_credential(PLAIN, "s3cret")
    server = PlainServer(lambda u, m: credential if u == "alice" else None, check)
    with pytest.raises(SaslAuthenticationFailed) as refused:
        step(server, message)
    assert refused.value.message == answer
    assert b"s3cret".decode() not in refused.value.detail
    assert not server.complete


@pytest.mark.parametrize("answer", [False, True])
def test_plain_checks_an_unknown_users_password_too_and_refuses_it(answer: bool) -> None:
    """An unknown user costs a derivation as a known one does (its answer
    comes no sooner), and is refused whatever that check says."""
    checked: list[tuple[ScramCredential, str, bytes]] = []

    async def counted(credential: ScramCredential, mechanism: str, password: bytes) -> bool:
        checked.append((credential, mechanism, password))
        return answer

    server = PlainServer(lambda u, m: None, counted)
    with pytest.raises(SaslAuthenticationFailed) as refused:
        step(server, b"\0nobody\0s3cret")
    assert refused.value.message == "Authentication failed: Invalid username or password"
    assert not server.complete
    [(credential, mechanism, password)] = checked
    assert (mechanism, password) == (PLAIN, b"s3cret")
    assert credential.iterations == new_credential(PLAIN, "x").iterations  # the default's cost


def test_credentials_hold_keys_not_passwords() -> None:
    credential = new_credential("SCRAM-SHA-512", "hunter2", 8192)
    assert credential.iterations == 8192 and len(credential.salt) == 32
    assert ScramCredential.from_wire(credential.to_wire()) == credential
    assert password_matches(credential, "SCRAM-SHA-512", b"hunter2")
    assert not password_matches(credential, "SCRAM-SHA-512", b"hunter3")
    with pytest.raises(UnacceptableCredential):
        new_credential("SCRAM-SHA-256", "x", MIN_ITERATIONS - 1)
    with pytest.raises(UnsupportedSaslMechanism):
        new_credential("SCRAM-SHA-1", "x")


def _exchange(server: ScramServer, user: str, password: str, extensions: bytes) -> None:
    """A SCRAM-SHA-512 exchange with extensions in the client-first message."""
    bare = client_first_bare(user, extensions=extensions)
    server_first = step(server, b"n,," + bare)
    step(server, client_final(bare, server_first, password))


@pytest.mark.parametrize("value", [b"true", b"TRUE", b"True"])
def test_scram_with_tokenauth_logs_in_as_the_tokens_owner_until_it_expires(value: bytes) -> None:
    credential = new_credential("SCRAM-SHA-512", "the-hmac-in-base64")
    login = TokenLogin(credential, "User:bob", 1_700_000_000_000)
    server = ScramServer(
        "SCRAM-SHA-512",
        lambda u, m: None,
        tokens=lambda token_id, m: login if token_id == "token-1" else None,
    )
    _exchange(server, "token-1", "the-hmac-in-base64", b"tokenauth=" + value)
    assert server.complete and server.token_authenticated
    assert server.principal == "User:bob"
    assert server.credential_expires_ms == 1_700_000_000_000


def test_scram_without_tokenauth_never_looks_up_a_token_and_with_it_never_a_user() -> None:
    credential = new_credential("SCRAM-SHA-512", "secret")
    login = TokenLogin(credential, "User:bob", 1)
    for extensions, detail in (
        (b"", "no SCRAM-SHA-512 credential"),
        (b"tokenauth=false", "no SCRAM-SHA-512 credential"),
    ):
        server = ScramServer("SCRAM-SHA-512", lambda u, m: None, tokens=lambda t, m: login)
        with pytest.raises(SaslAuthenticationFailed) as refused:
            _exchange(server, "alice", "secret", extensions)
        assert detail in refused.value.detail
    server = ScramServer("SCRAM-SHA-512", lambda u, m: credential, tokens=lambda t, m: None)
    with pytest.raises(SaslAuthenticationFailed) as refused:
        _exchange(server, "alice", "secret", b"tokenauth=true")
    assert "no live delegation token" in refused.value.detail
    user = ScramServer("SCRAM-SHA-512", lambda u, m: credential, tokens=lambda t, m: login)
    _exchange(user, "alice", "secret", b"other=1")  # other extensions: ignored
    assert user.principal == "User:alice" and not user.token_authenticated
    assert user.credential_expires_ms is None


@pytest.mark.parametrize(
    ("extensions", "as_token"),
    [
        (b"tokenauth=false,tokenauth=true", True),
        (b"tokenauth=true,tokenauth=false", False),
        (b"tokenauth=true,other=1,tokenauth=TRUE", True),
    ],
)
def test_tokenauth_named_twice_is_read_as_its_last_value(extensions: bytes, as_token: bool) -> None:
    """Kafka's ScramExtensions reads the extensions into a map, each name's
    last value winning (Utils.parseMap)."""
    credential = new_credential("SCRAM-SHA-512", "secret")
    login = TokenLogin(credential, "User:bob", 1)
    server = ScramServer(
        "SCRAM-SHA-512",
        lambda u, m: credential if u == "alice" else None,
        tokens=lambda t, m: login if t == "alice" else None,
    )
    _exchange(server, "alice", "secret", extensions)
    assert server.token_authenticated is as_token
    assert server.principal == ("User:bob" if as_token else "User:alice")


def test_a_token_of_an_owner_of_another_type_logs_in_as_the_user_of_its_name() -> None:
    """Kafka's DelegationTokenCache.owner gives the principal builder the
    owner's name, and it makes a User of it."""
    credential = new_credential("SCRAM-SHA-256", "the-hmac-in-base64")
    login = TokenLogin(credential, "Group:ops", 1)
    server = ScramServer("SCRAM-SHA-256", lambda u, m: None, tokens=lambda t, m: login)
    bare = client_first_bare("token-1", extensions=b"tokenauth=true")
    server_first = step(server, b"n,," + bare)
    step(server, client_final(bare, server_first, "the-hmac-in-base64", "SCRAM-SHA-256"))
    assert server.principal == "User:ops"
