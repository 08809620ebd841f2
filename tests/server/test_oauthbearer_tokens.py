"""The OAUTHBEARER parts without a socket: the initial-response parser
(property tests: it takes what RFC 7628 and Kafka's clients write, and on
any bytes at all raises nothing but MalformedInitialResponse), the secure
validator against tokens signed here with each algorithm and against the
forgeries it must refuse, the key source's refresh for an unknown key id
and its bound, and the config file's ``sasl.oauthbearer.*`` settings."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from engine.server.config import ConfigFileError, load_config_file
from engine.server.sasl.jwks import MAX_JWKS_BYTES, JwksError, KeySource, fetch_url, parse_jwks
from engine.server.sasl.jwt_validator import ClaimRules, JwksValidator, UnsecuredValidator
from engine.server.sasl.oauth_config import OAuthBearerConfig
from engine.server.sasl.oauthbearer import (
    MAX_INITIAL_RESPONSE_BYTES,
    InvalidToken,
    MalformedInitialResponse,
    parse_initial_response,
)
from s3stream.errors import ConfigOutOfRange
from tests.server.oauth_tokens import (
    AUDIENCE,
    ISSUER,
    JwksServer,
    Provider,
    SigningKey,
    b64url,
    claims,
    hs256_with_public_key,
    jwks,
    mint,
    unsigned,
)

RSA = SigningKey.rsa("rsa-1")
EC256 = SigningKey.ec("ec-1")
EC384 = SigningKey.ec("ec-384", ec.SECP384R1())
OTHER = SigningKey.rsa("rsa-1")
"""Another key under the first one's key id: a token it signs must not verify."""
RULES = ClaimRules(expected_audience=(AUDIENCE,), expected_issuer=ISSUER, clock_skew_s=30)


# -- the initial response ---------------------------------------------------------------


def test_the_forms_clients_write_are_parsed() -> None:
    # kafka-python and librdkafka: no authzid; kafkajs and Kafka's own: extensions.
    parsed = parse_initial_response(b"n,,\x01auth=Bearer a.b.c\x01\x01")
    assert (parsed.token, parsed.authorization_id, parsed.extensions) == ("a.b.c", "", ())
    parsed = parse_initial_response(b"n,a=agent=2C7,\x01auth=bearer  x-y_z\x01traceId=42\x01\x01")
    assert (parsed.token, parsed.authorization_id, parsed.extensions) == (
        "x-y_z",
        "agent,7",
        (("traceId", "42"),),
    )


@pytest.mark.parametrize(
    "response",
    [
        b"",
        b"n,,",
        b"y,,\x01auth=Bearer t\x01\x01",  # channel binding is not OAUTHBEARER's
        b"n,,\x01auth=Bearer t\x01",  # one separator short
        b"n,,\x01\x01",  # no auth
        b"n,,\x01auth=Basic dTpw\x01\x01",
        b"n,,\x01auth=Bearer t\x01auth=Bearer u\x01\x01",
        b"n,,\x01auth=Bearer t\x01k3y=v\x01\x01",  # an extension key of letters only
        b"n,b=x,\x01auth=Bearer t\x01\x01",
        b"n,,\x01auth=Bearer " + b"t" * MAX_INITIAL_RESPONSE_BYTES + b"\x01\x01",
    ],
)
def test_a_malformed_response_is_refused_by_name(response: bytes) -> None:
    with pytest.raises(MalformedInitialResponse):
        parse_initial_response(response)


_TOKEN = st.text("abcXYZ019-_.", min_size=1, max_size=40)
_EXTENSIONS = st.lists(
    st.tuples(
        st.text("abcdefXYZ", min_size=1, max_size=8).filter(lambda k: k != "auth"),
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12),
    ),
    max_size=4,
)


@given(_TOKEN, st.text("abcdef=", max_size=8), _EXTENSIONS)
def test_what_a_client_builds_parses_back(
    token: str, authzid: str, extensions: list[tuple[str, str]]
) -> None:
    escaped = authzid.replace("=", "=3D")
    pairs = "".join(f"\x01{k}={v}" for k, v in extensions)
    gs2 = f"n,a={escaped}," if authzid else "n,,"
    parsed = parse_initial_response(f"{gs2}\x01auth=Bearer {token}{pairs}\x01\x01".encode())
    assert (parsed.token, parsed.authorization_id, parsed.extensions) == (
        token,
        authzid,
        tuple(extensions),
    )


def _parsed_or_refused(response: bytes) -> None:
    """Parsing ``response`` gives a well-formed response or MalformedInitialResponse;
    any other exception fails the test."""
    try:
        parsed = parse_initial_response(response)
    except MalformedInitialResponse as refused:
        assert refused.reason
        return
    assert response.startswith(b"n,") and response.endswith(b"\x01\x01")
    assert re.fullmatch(r"[-_.a-zA-Z0-9]+", parsed.token)
    assert f"Bearer {parsed.token}".encode() in response


@given(st.binary(max_size=512))
def test_any_bytes_give_a_response_or_the_typed_error(response: bytes) -> None:
    _parsed_or_refused(response)


@given(st.lists(st.sampled_from([b"n", b",", b"a=", b"=2C", b"\x01", b"auth=", b"Bearer ",
                                 b"t.k", b"x=y", b" ", b"\xff", b"="]), max_size=30))  # fmt: skip
def test_near_misses_give_a_response_or_the_typed_error(pieces: list[bytes]) -> None:
    _parsed_or_refused(b"".join(pieces))


# -- the secure validator ---------------------------------------------------------------


class _Keys:
    """A key source holding fixed keys, recording the key ids it was asked to find."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys = parse_jwks(jwks(*keys), "test")
        self.asked: list[str | None] = []

    def missing(self, kid: str | None) -> None:
        self.asked.append(kid)


def _validator(keys: _Keys, rules: ClaimRules = RULES) -> JwksValidator:
    return JwksValidator(keys, rules, lambda: int(time.time() * 1000))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "alg"),
    [(RSA, "RS256"), (RSA, "RS384"), (RSA, "RS512"), (RSA, "PS256"), (RSA, "PS512"),
     (EC256, "ES256"), (EC384, "ES384")],
)  # fmt: skip
def test_each_signed_algorithm_is_accepted(key: SigningKey, alg: str) -> None:
    token = _validator(_Keys(RSA, EC256, EC384)).validate(
        mint(key, claims("agent-7", lifetime_s=60), alg=alg)
    )
    assert token.principal == "agent-7"
    assert token.scope == ("kafka", "agents")
    assert abs(token.expires_ms - (time.time() + 60) * 1000) < 5000


def _refusal(token: str, keys: _Keys | None = None, rules: ClaimRules = RULES) -> str:
    with pytest.raises(InvalidToken) as refused:
        _validator(keys or _Keys(RSA, EC256), rules).validate(token)
    assert refused.value.status == "invalid_token"
    return refused.value.detail


def test_forged_and_stale_tokens_are_refused_with_why() -> None:
    now = int(time.time())
    refusals = {
        "expired": _refusal(mint(RSA, claims("a", exp=now - 31))),
        "not yet": _refusal(mint(RSA, claims("a", nbf=now + 60))),
        "audience": _refusal(mint(RSA, claims("a", aud=["other", "more"]))),
        "issuer": _refusal(mint(RSA, claims("a", iss="https://evil.test"))),
        "no iat": _refusal(mint(RSA, {k: v for k, v in claims("a").items() if k != "iat"})),
        "no sub": _refusal(mint(RSA, claims(""))),
        "other key": _refusal(mint(OTHER, claims("a"))),
        "none": _refusal(unsigned(claims("a"))),
        "hs256": _refusal(hs256_with_public_key(RSA, claims("a"))),
        "ec with rs": _refusal(mint(EC256, claims("a"), alg="RS256")),
        "rsa with es": _refusal(mint(RSA, claims("a"), alg="ES256", kid="ec-1")),
        "parts": _refusal("a.b"),
        "long": _refusal("a" * 20000),
    }
    assert refusals == {
        "expired": refusals["expired"],
        "not yet": refusals["not yet"],
        "audience": "audience ['other', 'more'], none of the expected ones",
        "issuer": "issuer 'https://evil.test', not the expected one",
        "no iat": "no 'iat' claim",
        "no sub": "no subject: the 'sub' claim is not a name",
        "other key": "the signature does not verify with key 'rsa-1'",
        "none": "algorithm 'none' is not one of ES256, ES384, ES512, PS256, PS384, PS512, RS256,"
        " RS384, RS512",
        "hs256": "algorithm 'HS256' is not one of ES256, ES384, ES512, PS256, PS384, PS512, RS256,"
        " RS384, RS512",
        "ec with rs": "no key for algorithm RS256 in key 'ec-1'",
        "rsa with es": "the signature does not verify with key 'ec-1'",
        "parts": "a token of 2 parts, not the three of a JWS",
        "long": "a token of 20000 bytes, more than 16384",
    }
    assert refusals["expired"].startswith("the token expired at")
    assert refusals["not yet"].startswith("the token is not valid before")


def test_the_clock_skew_is_leeway_for_exp() -> None:
    now = int(time.time())
    assert _validator(_Keys(RSA)).validate(mint(RSA, claims("a", exp=now - 20))).principal == "a"


def test_an_unknown_key_id_asks_the_key_source_to_read_again() -> None:
    keys = _Keys(RSA)
    assert (
        _refusal(mint(EC256, claims("a")), keys)
        == "no key 'ec-1' in the key set (it is read again)"
    )
    assert keys.asked == ["ec-1"]


def test_a_custom_subject_claim_names_the_principal() -> None:
    rules = ClaimRules(sub_claim_name="preferred_username", expected_audience=(AUDIENCE,))
    token = mint(RSA, claims("uuid-1", preferred_username="planner"))
    assert _validator(_Keys(RSA), rules).validate(token).principal == "planner"


def test_the_unsecured_validator_takes_only_unsigned_tokens() -> None:
    validator = UnsecuredValidator(ClaimRules(require_iat=False), lambda: int(time.time() * 1000))
    assert validator.validate(unsigned({"sub": "dev", "exp": time.time() + 60})).principal == "dev"
    with pytest.raises(InvalidToken, match="takes only 'none'"):
        validator.validate(mint(RSA, claims("dev")))
    with pytest.raises(InvalidToken, match="expired"):
        validator.validate(unsigned({"sub": "dev", "exp": time.time() - 3600}))


def test_keys_of_other_kinds_in_a_set_are_skipped() -> None:
    document = json.loads(jwks(RSA, EC256))
    document["keys"] += [
        {"kty": "oct", "kid": "shared", "k": b64url(b"secret")},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "kid": "bad", "crv": "P-256", "x": "AA", "y": "AA"},
        "not an object",
    ]
    assert [key.kid for key in parse_jwks(json.dumps(document).encode(), "t")] == ["rsa-1", "ec-1"]


# -- the key source ---------------------------------------------------------------------


def _source(documents: list[bytes], min_refresh_s: float) -> tuple[KeySource, list[int]]:
    reads: list[int] = []

    async def fetch(url: str) -> bytes:
        reads.append(1)
        return documents[min(len(reads), len(documents)) - 1]

    source = KeySource("https://idp.test/jwks", refresh_s=3600, min_refresh_s=min_refresh_s,
                       retry_backoff_s=0.1, retry_backoff_max_s=1, fetch=fetch)  # fmt: skip
    return source, reads


async def _until(condition: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def test_an_unknown_key_id_has_the_set_read_again_and_a_new_key_found() -> None:
    async def run() -> None:
        source, reads = _source([jwks(RSA), jwks(RSA, EC256)], min_refresh_s=0)
        await source.start()
        try:
            assert [key.kid for key in source.keys] == ["rsa-1"]
            source.missing("ec-1")
            await _until(lambda: len(reads) == 2)
            assert [key.kid for key in source.keys] == ["rsa-1", "ec-1"]
        finally:
            await source.stop()

    asyncio.run(run())


def test_unknown_key_ids_cannot_make_the_server_hammer_the_provider() -> None:
    async def run() -> None:
        source, reads = _source([jwks(RSA)], min_refresh_s=3600)
        await source.start()
        try:
            for n in range(200):
                source.missing(f"made-up-{n}")
                await asyncio.sleep(0.001)
            assert len(reads) == 1  # the next read waits for the hour since the last
        finally:
            await source.stop()

    asyncio.run(run())


def test_the_key_source_stops_right_after_a_key_was_asked_for() -> None:
    """The cancel of stop() meets the wake-up of missing(): Python 3.11's
    wait_for lost such a cancel, and stop() waited for ever."""

    async def run() -> None:
        source, _ = _source([jwks(RSA)], min_refresh_s=0)
        await source.start()
        await asyncio.sleep(0)  # the refresh loop is waiting
        source.missing("other")
        stopping = asyncio.ensure_future(source.stop())
        done, _ = await asyncio.wait({stopping}, timeout=10)
        assert stopping in done, "stop() did not end"  # asyncio.run cancels what is left

    asyncio.run(run())


def test_an_endpoint_down_at_start_is_retried_and_its_keys_then_used() -> None:
    endpoint = JwksServer(Provider([RSA]))
    endpoint.status = 503

    async def run() -> None:
        source = KeySource(endpoint.url, refresh_s=3600, min_refresh_s=0,
                           retry_backoff_s=0.05, retry_backoff_max_s=0.2)  # fmt: skip
        await source.start()  # logged, not raised: the provider may come up later
        try:
            assert source.keys == ()
            endpoint.status = 200
            await _until(lambda: source.reads == 1)
            assert [key.kid for key in source.keys] == ["rsa-1"]
            failures = endpoint.failures
            endpoint.status = 500  # a failed read keeps the keys it had
            source.missing("other")
            await _until(lambda: endpoint.failures > failures)
            assert [key.kid for key in source.keys] == ["rsa-1"]
        finally:
            await source.stop()

    try:
        asyncio.run(run())
    finally:
        endpoint.close()


def test_a_key_set_larger_than_the_bound_is_refused_unread() -> None:
    class Huge(Provider):
        def document(self) -> bytes:
            return b'{"keys": [], "pad": "' + b"x" * MAX_JWKS_BYTES + b'"}'

    endpoint = JwksServer(Huge())
    try:
        with pytest.raises(JwksError, match="a key set of more than 1048576 bytes"):
            asyncio.run(fetch_url(endpoint.url))
    finally:
        endpoint.close()


# -- the config file --------------------------------------------------------------------


def test_the_config_file_takes_kafka_s_settings(tmp_path: Path) -> None:
    path = tmp_path / "tidelog.toml"
    path.write_text(
        "[server]\n"
        'listeners = "SASL_SSL://127.0.0.1:0"\n'
        '"ssl.keystore.location" = "/dev/null"\n'
        '"sasl.enabled.mechanisms" = "OAUTHBEARER,SCRAM-SHA-512"\n'
        '"sasl.oauthbearer.jwks.endpoint.url" = "https://idp.test/jwks"\n'
        '"sasl.oauthbearer.expected.audience" = "tidelog,agents"\n'
        '"sasl.oauthbearer.expected.issuer" = "https://idp.test"\n'
        '"sasl.oauthbearer.sub.claim.name" = "azp"\n'
        '"sasl.oauthbearer.clock.skew.seconds" = 5\n'
        '"sasl.oauthbearer.jwks.endpoint.refresh.ms" = 60000\n'
    )
    oauth = load_config_file(path).server.oauthbearer
    assert (oauth.jwks_endpoint_url, oauth.expected_audience, oauth.expected_issuer) == (
        "https://idp.test/jwks",
        ("tidelog", "agents"),
        "https://idp.test",
    )
    assert (oauth.sub_claim_name, oauth.clock_skew_seconds, oauth.jwks_endpoint_refresh_ms) == (
        "azp",
        5,
        60000,
    )


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        (
            '"sasl.oauthbearer.jwks.url" = "x"\n',
            r"unknown keys in \[server\]: \['sasl\.oauthbearer\.jwks\.url'\]",
        ),
        ("", "OAUTHBEARER is enabled but no token validator is"),
    ],
)
def test_the_config_file_refuses_what_cannot_work(tmp_path: Path, lines: str, error: str) -> None:
    path = tmp_path / "tidelog.toml"
    path.write_text(
        "[server]\n"
        'listeners = "SASL_PLAINTEXT://127.0.0.1:0"\n'
        '"sasl.enabled.mechanisms" = "OAUTHBEARER"\n' + lines
    )
    with pytest.raises(ConfigFileError, match=error):
        load_config_file(path)


@pytest.mark.parametrize(
    "setting", ["jwks_endpoint_retry_backoff_ms", "jwks_endpoint_retry_backoff_max_ms"]
)
def test_a_retry_backoff_of_zero_is_refused_by_name(tmp_path: Path, setting: str) -> None:
    """0 was taken: the key source's loop then read an unreachable
    provider again at once, for as long as the server ran (a most of 0
    caps every doubled backoff at 0 too)."""
    with pytest.raises(ConfigOutOfRange) as refused:
        OAuthBearerConfig(jwks_endpoint_url="https://idp.test/jwks", **{setting: 0})
    assert str(refused.value) == f"{setting} must be a 64-bit integer, 1 or more, not 0"
    key = "sasl.oauthbearer." + setting.replace("_", ".")
    path = tmp_path / "tidelog.toml"
    path.write_text(f'[server]\n"{key}" = 0\n')
    with pytest.raises(ConfigFileError) as from_file:
        load_config_file(path)
    assert (
        str(from_file.value)
        == f"{path}: [server]: {key} must be a 64-bit integer, 1 or more, not 0"
    )
