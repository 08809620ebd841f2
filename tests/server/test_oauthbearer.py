"""SASL/OAUTHBEARER end to end: ``tidelog serve`` validating tokens with the
JWKS of an identity provider served over HTTP on loopback, and real clients
(confluent-kafka with an ``oauth_cb``, kafka-python and aiokafka with a
token provider, kafkajs with an ``oauthBearerProvider``) producing and
consuming through a consumer group over SASL_PLAINTEXT and SASL_SSL as the
token's subject, ``User:agent-7``, with the ACL authorizer: one topic
prefix allowed, another refused.

Refused, as each client surfaces it: an expired token, a wrong audience, a
wrong issuer, a key id the JWKS lacks even after it was read again, a token
signed by another key, an unsigned one, and an HS256 token whose secret is
the provider's public key; the server logs why without the token and goes
on serving. A key rotation: the JWKS gains a key, and a token signed with
it is accepted once the server has read the set again."""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from tests.server import matrix_clients
from tests.server.certificates import Authority
from tests.server.conftest import GROUP_SERVER_CONFIG, ServerProcess, free_port, quiet_librdkafka
from tests.server.matrix_clients import logged_exceptions
from tests.server.oauth_tokens import (
    AUDIENCE,
    ISSUER,
    JwksServer,
    Provider,
    SigningKey,
    claims,
    hs256_with_public_key,
    mint,
    unsigned,
)
from tests.server.test_kafkajs import KafkaJSError, kafkajs

# Real clients against a server process: run once, in the C pass (the SASL
# code is the same Python in both passes).
pytestmark = pytest.mark.slow

TIMEOUT = 30.0
REFUSAL_TIMEOUT = 10.0
SUBJECT = "agent-7"
VALUES = [b"tool-call", b"decision", b"approval"]


@dataclass
class Access:
    bootstrap: str
    protocol: str
    ca: Path
    token: str


@dataclass
class Setup:
    server: ServerProcess
    jwks: JwksServer
    key: SigningKey
    ports: dict[str, int]
    ca: Path

    def logged(self, text: str) -> str:
        """The server's log once it holds ``text`` (its lines may follow the
        answer the client already read)."""
        deadline = time.monotonic() + TIMEOUT
        while text not in (log := self.server.log()):
            assert time.monotonic() < deadline, f"never logged: {text}"
            time.sleep(0.02)
        return log

    def access(self, token: str, protocol: str = "SASL_PLAINTEXT") -> Access:
        return Access(f"localhost:{self.ports[protocol]}", protocol, self.ca, token)

    def token(self, subject: str = SUBJECT, **more: Any) -> str:
        return mint(self.key, claims(subject, **more))

    def topic(self, prefix: str) -> str:
        name = f"{prefix}{uuid.uuid4().hex[:12]}"
        admin = AdminClient({"bootstrap.servers": self.server.bootstrap, **quiet_librdkafka()})
        admin.create_topics([NewTopic(name, 1)])[name].result(TIMEOUT)
        return name


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("oauth")
    key = SigningKey.rsa("idp-2026-01")
    jwks = JwksServer(Provider([key, SigningKey.ec("idp-ec")]))
    authority = Authority(root)
    server_pem = authority.issue("server", common_name="localhost", unit="Servers", server=True)
    process = ServerProcess(root / "data")
    ports = {"SASL_PLAINTEXT": free_port(), "SASL_SSL": free_port()}
    (root / "tidelog.toml").write_text(
        "[server]\n"
        f'listeners = "PLAINTEXT://127.0.0.1:{process.port},'
        f"SASL_PLAINTEXT://127.0.0.1:{ports['SASL_PLAINTEXT']},"
        f'SASL_SSL://127.0.0.1:{ports["SASL_SSL"]}"\n'
        f'"advertised.listeners" = "SASL_PLAINTEXT://localhost:{ports["SASL_PLAINTEXT"]},'
        f'SASL_SSL://localhost:{ports["SASL_SSL"]}"\n'
        '"sasl.enabled.mechanisms" = "OAUTHBEARER"\n'
        f'"sasl.oauthbearer.jwks.endpoint.url" = "{jwks.url}"\n'
        f'"sasl.oauthbearer.expected.audience" = "{AUDIENCE}"\n'
        f'"sasl.oauthbearer.expected.issuer" = "{ISSUER}"\n'
        '"sasl.oauthbearer.jwks.endpoint.refresh.min.interval.ms" = 100\n'
        f'"ssl.keystore.location" = "{authority.keystore(server_pem)}"\n'
        'authorizer = "acl"\n'
        '"super.users" = ["User:ANONYMOUS"]\n' + GROUP_SERVER_CONFIG
    )
    process.args = ["--config", str(root / "tidelog.toml")]
    process.start()
    try:
        admin = AdminClient({"bootstrap.servers": process.bootstrap, **quiet_librdkafka()})
        acls = [
            AclBinding(kind, "ok-", ResourcePatternType.PREFIXED, f"User:{SUBJECT}", "*",
                       operation, AclPermissionType.ALLOW)
            for kind, operation in ((ResourceType.TOPIC, AclOperation.ALL),
                                    (ResourceType.GROUP, AclOperation.READ))
        ]  # fmt: skip
        for future in admin.create_acls(acls).values():
            future.result(TIMEOUT)
        yield Setup(process, jwks, key, ports, authority.ca)
    finally:
        if process.running:
            assert process.stop() == 0, process.log()
        jwks.close()


# -- the clients ----------------------------------------------------------------------


def librdkafka(access: Access) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "bootstrap.servers": access.bootstrap,
        "security.protocol": access.protocol,
        "sasl.mechanism": "OAUTHBEARER",
        "oauth_cb": lambda _config: (access.token, time.time() + 3600),
        **quiet_librdkafka(),
    }
    if access.protocol == "SASL_SSL":
        settings["ssl.ca.location"] = str(access.ca)
    return settings


def confluent_round_trip(access: Access, topic: str) -> list[bytes]:
    reports: list[KafkaError | None] = []
    producer = Producer({**librdkafka(access), "acks": "all", "message.timeout.ms": 10_000})
    for value in VALUES:
        producer.produce(topic, value, on_delivery=lambda e, _m: reports.append(e))
    producer.flush(TIMEOUT)
    assert reports == [None] * len(VALUES)
    consumer = Consumer(
        {**librdkafka(access), "group.id": f"ok-{topic}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    found: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while len(found) < len(VALUES) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None:
                assert message.error() is None, message.error()
                found.append(message.value())
    finally:
        consumer.close()
    return found


def confluent_refused_login(access: Access) -> str:
    errors: list[KafkaError] = []
    producer = Producer({**librdkafka(access), "error_cb": errors.append})
    deadline = time.monotonic() + REFUSAL_TIMEOUT
    while not errors and time.monotonic() < deadline:
        producer.poll(0.1)
    assert errors, "no error within the timeout"
    return f"{errors[0].name()}: {errors[0].str()}"


def python_settings(access: Access, *, aiokafka: bool) -> dict[str, Any]:
    token = access.token
    if aiokafka:
        from aiokafka.abc import AbstractTokenProvider as AioTokenProvider
        from aiokafka.helpers import create_ssl_context

        class AioTokens(AioTokenProvider):
            async def token(self) -> str:
                return token

        settings: dict[str, Any] = {"sasl_oauth_token_provider": AioTokens()}
        if access.protocol == "SASL_SSL":
            settings["ssl_context"] = create_ssl_context(cafile=str(access.ca))
    else:
        from kafka.net.sasl.oauth import AbstractTokenProvider

        class Tokens(AbstractTokenProvider):
            def token(self) -> str:
                return token

        settings = {"sasl_oauth_token_provider": Tokens(), "ssl_cafile": str(access.ca)}
    return {
        "bootstrap_servers": access.bootstrap,
        "security_protocol": access.protocol,
        "sasl_mechanism": "OAUTHBEARER",
        **settings,
    }


def kafka_python_round_trip(access: Access, topic: str) -> list[bytes]:
    settings = python_settings(access, aiokafka=False)
    return matrix_clients.kafka_python_round_trip(settings, topic, f"ok-{topic}", VALUES)


def kafka_python_refused_login(access: Access) -> str:
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaTimeoutError

    with (
        logged_exceptions("kafka.net.manager") as failures,
        contextlib.suppress(KafkaTimeoutError),
    ):
        settings = python_settings(access, aiokafka=False)
        KafkaAdminClient(bootstrap_timeout_ms=2_000, **settings).close()
    assert failures, "no attempt failed"
    return f"{type(failures[0]).__name__}: {failures[0]}"


def aiokafka_round_trip(access: Access, topic: str) -> list[bytes]:
    settings = python_settings(access, aiokafka=True)
    return matrix_clients.aiokafka_round_trip(settings, topic, f"ok-{topic}", VALUES)


def kafkajs_options(access: Access) -> dict[str, Any]:
    options: dict[str, Any] = {"sasl": {"mechanism": "oauthbearer", "token": access.token}}
    if access.protocol == "SASL_SSL":
        options["ssl"] = {"ca": str(access.ca)}
    return options


def kafkajs_round_trip(access: Access, topic: str) -> list[bytes]:
    import base64

    messages = [{"partition": 0, "key": None, "value": base64.b64encode(v).decode()}
                for v in VALUES]  # fmt: skip
    options = kafkajs_options(access)
    kafkajs("produce", access.bootstrap, topic=topic, messages=messages, **options)
    read = kafkajs("consume", access.bootstrap, topic=topic, groupId=f"ok-{topic}",
                   count=len(VALUES), **options)  # fmt: skip
    return [base64.b64decode(m["value"]) for m in read]


def kafkajs_refused_login(access: Access) -> str:
    try:
        kafkajs("produce", access.bootstrap, topic="ok-any", messages=[],
                connectionTimeout=1000, **kafkajs_options(access))  # fmt: skip
    except KafkaJSError as refused:
        return f"{refused.error['name']}: {refused.error['message']}"
    raise AssertionError("the client authenticated")


ROUND_TRIPS: dict[str, Callable[[Access, str], list[bytes]]] = {
    "confluent-kafka": confluent_round_trip,
    "kafka-python": kafka_python_round_trip,
    "aiokafka": aiokafka_round_trip,
    "kafkajs": kafkajs_round_trip,
}


# -- the tests ------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("client", list(ROUND_TRIPS))
def test_each_client_produces_and_consumes_with_a_token(
    setup: Setup, client: str, protocol: str
) -> None:
    topic = setup.topic("ok-")
    assert ROUND_TRIPS[client](setup.access(setup.token(), protocol), topic) == VALUES


def confluent_refused_produce(access: Access, topic: str) -> str:
    """The error producing one record to ``topic`` gets: in its delivery
    report, or at once when librdkafka already knows the topic is refused."""
    errors: list[KafkaError | None] = []
    producer = Producer({**librdkafka(access), "message.timeout.ms": 10_000})
    try:
        producer.produce(topic, b"x", on_delivery=lambda e, _m: errors.append(e))
    except KafkaException as refused:
        return str(refused.args[0].name())
    producer.flush(TIMEOUT)
    [error] = errors
    return "delivered" if error is None else str(error.name())


def test_acls_apply_to_the_token_s_subject(setup: Setup) -> None:
    agent = setup.access(setup.token())
    assert confluent_refused_produce(agent, setup.topic("no-")) == "TOPIC_AUTHORIZATION_FAILED"
    assert confluent_refused_produce(agent, setup.topic("ok-")) == "delivered"
    # Another subject with a valid token is refused the allowed prefix: the
    # ACLs name User:agent-7, the principal the token's sub claim made.
    planner = setup.access(setup.token("planner"))
    assert confluent_refused_produce(planner, setup.topic("ok-")) == "TOPIC_AUTHORIZATION_FAILED"


OTHER_KEY = SigningKey.rsa("idp-2026-01")
"""Not the provider's key, under the provider's key id."""


def forged(setup: Setup, case: str) -> str:
    now = int(time.time())
    return {
        "expired": lambda: setup.token(exp=now - 120, iat=now - 3720),
        "wrong audience": lambda: setup.token(aud="billing"),
        "wrong issuer": lambda: setup.token(iss="https://idp.evil/realms/agents"),
        "another key": lambda: mint(OTHER_KEY, claims(SUBJECT)),
        "alg none": lambda: unsigned(claims(SUBJECT)),
        "hs256 with the public key": lambda: hs256_with_public_key(setup.key, claims(SUBJECT)),
    }[case]()


REASONS = {  # what the server logs for each
    "expired": "the token expired at",
    "wrong audience": "audience 'billing', none of the expected ones",
    "wrong issuer": "issuer 'https://idp.evil/realms/agents', not the expected one",
    "another key": "the signature does not verify with key 'idp-2026-01'",
    "alg none": "algorithm 'none' is not one of",
    "hs256 with the public key": "algorithm 'HS256' is not one of",
}


@pytest.mark.parametrize("case", list(REASONS))
def test_a_bad_token_is_refused_and_logged_without_the_token(setup: Setup, case: str) -> None:
    token = forged(setup, case)
    refused = confluent_refused_login(setup.access(token))
    assert refused.startswith("_AUTHENTICATION: "), refused
    assert '{"status":"invalid_token"}' in refused
    # Why is logged (each reason is checked in test_oauthbearer_exchange.py:
    # here ``tidelog serve`` holds back repeats of the line for a while) ...
    log = setup.logged("SASL authentication failed: OAUTHBEARER: ")
    _, payload, signature = token.split(".")
    assert payload not in log and (not signature or signature not in log)  # ... never the token
    assert setup.server.running


REFUSED_LOGIN = {
    "confluent-kafka": (
        confluent_refused_login,
        r'_AUTHENTICATION: .*SASL authentication error: \{"status":"invalid_token"\}',
    ),
    "kafka-python": (
        kafka_python_refused_login,
        r'SaslAuthenticationFailedError: .*\{"status":"invalid_token"\}$',
    ),
    # kafkajs sends one message and reads only the answer's error code: the
    # refusal comes as SASL_AUTHENTICATION_FAILED with the JSON error at once.
    "kafkajs": (
        kafkajs_refused_login,
        r"KafkaJSSASLAuthenticationError: SASL OAUTHBEARER authentication failed:"
        r' \{"status":"invalid_token"\}$',
    ),
}


@pytest.mark.parametrize("client", list(REFUSED_LOGIN))
def test_each_client_sees_an_expired_token_refused(setup: Setup, client: str) -> None:
    refused_login, expected = REFUSED_LOGIN[client]
    refused = refused_login(setup.access(forged(setup, "expired")))
    assert re.match(expected, refused), refused
    # ... and the server goes on serving a good token.
    assert confluent_round_trip(setup.access(setup.token()), setup.topic("ok-")) == VALUES


def test_an_unknown_key_is_refused_after_a_refresh_and_a_rotated_key_is_accepted(
    setup: Setup,
) -> None:
    rotated = SigningKey.ec("idp-2026-02")
    token = mint(rotated, claims(SUBJECT))
    reads = setup.jwks.reads
    assert confluent_refused_login(setup.access(token)).startswith("_AUTHENTICATION")
    setup.jwks.read_again(reads)  # the unknown kid had the set read again ...
    reads = setup.jwks.reads
    assert confluent_refused_login(setup.access(token)).startswith("_AUTHENTICATION")
    setup.jwks.read_again(reads)  # ... still without it
    # librdkafka retries a refused login on its own, so the last refusal
    # may have scheduled one more read, to come at any time: reads are held
    # from the rotation on, so that none brings the server the rotated key
    # before the next login.
    with setup.jwks.holding():
        setup.jwks.provider.keys.append(rotated)  # the provider rotates its keys
        reads = setup.jwks.reads
        # The server has not read the set since: refused ...
        assert confluent_refused_login(setup.access(token)).startswith("_AUTHENTICATION")
    setup.jwks.read_again(reads)  # ... and the set is read again
    assert confluent_round_trip(setup.access(token), setup.topic("ok-")) == VALUES
