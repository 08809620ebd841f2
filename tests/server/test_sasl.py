"""SASL over real sockets: ``tidelog serve`` with a PLAINTEXT and a
SASL_PLAINTEXT listener, users added with ``tidelog users``, and real
clients (confluent-kafka, kafka-python, aiokafka, kcat) authenticating with
PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512; wrong passwords, requests before
authentication, AlterUserScramCredentials, and users kept across a restart."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from kio.index import load_request_schema

from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from tests.server.configured_servers import with_config
from tests.server.conftest import GROUP_SERVER_CONFIG, ServerProcess, free_port, quiet_librdkafka
from tests.server.wire import Wire, build, frame

# Real clients against a server process: run once, in the C pass (the
# SASL and TLS code is the same Python in both passes).
pytestmark = pytest.mark.slow

TIMEOUT = 30.0
PASSWORD = "correct horse battery staple"


def add_user(data_dir: Path, name: str, password: str, *mechanisms: str) -> str:
    """``tidelog users add``; returns its output."""
    secret = data_dir.parent / f"{name}.password"
    secret.write_text(password + "\n")
    flags = [f"--mechanism={m}" for m in mechanisms]
    done = subprocess.run(
        [sys.executable, "-m", "engine", "users", "--data-dir", str(data_dir), "add", name,
         "--password-file", str(secret), *flags],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert password not in done.stdout + done.stderr
    return done.stdout


def sasl_server(root: Path) -> ServerProcess:
    server = ServerProcess(root / "data")
    sasl_port = free_port()
    server.args = [
        "--listeners",
        f"PLAINTEXT://127.0.0.1:{server.port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}",
    ]
    server.sasl_port = sasl_port  # type: ignore[attr-defined]
    return server


def sasl_bootstrap(server: ServerProcess) -> str:
    return f"127.0.0.1:{server.sasl_port}"  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("sasl")
    # round_trip's consumer is its group's one member: the first rebalance
    # need not wait Kafka's 3 s for more.
    process = with_config(sasl_server(root), GROUP_SERVER_CONFIG)
    add_user(process.data_dir, "alice", PASSWORD)
    process.start()
    yield process
    process.end_at_teardown(graceful=True)


def confluent(server: ServerProcess, mechanism: str, user: str, password: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": sasl_bootstrap(server),
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
        **quiet_librdkafka(),
    }


def round_trip(settings: dict[str, Any], topic: str) -> None:
    producer = Producer({**settings, "acks": "all"})
    for i in range(5):
        producer.produce(topic, f"v{i}".encode())
    assert producer.flush(TIMEOUT) == 0
    consumer = Consumer({**settings, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    values: list[bytes] = []
    try:
        while len(values) < 5:
            message = consumer.poll(TIMEOUT)
            assert message is not None, "no record within the timeout"
            assert message.error() is None, message.error()
            values.append(message.value())
    finally:
        consumer.close()
    assert values == [f"v{i}".encode() for i in range(5)]


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_confluent_produces_and_consumes_over_sasl(
    server: ServerProcess, topic: str, mechanism: str
) -> None:
    round_trip(confluent(server, mechanism, "alice", PASSWORD), topic)


def test_a_wrong_password_fails_and_others_are_served(server: ServerProcess, topic: str) -> None:
    errors: list[KafkaError] = []
    producer = Producer(
        {
            **confluent(server, "SCRAM-SHA-512", "alice", "wrong"),
            "error_cb": errors.append,
        }
    )
    producer.produce(topic, b"never")
    deadline = time.monotonic() + TIMEOUT
    while not errors and time.monotonic() < deadline:
        producer.poll(0.1)
    del producer
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
    round_trip(confluent(server, "PLAIN", "alice", PASSWORD), topic)


def handshake(wire: Wire, mechanism: str) -> Any:
    request = build(load_request_schema(ApiKey.SASL_HANDSHAKE, 1), mechanism=mechanism)
    return wire.request(request)


def authenticate(wire: Wire, token: bytes, version: int = 2) -> Any:
    request = build(load_request_schema(ApiKey.SASL_AUTHENTICATE, version), auth_bytes=token)
    return wire.request(request)


def test_plain_failure_answers_kafkas_message_then_closes(server: ServerProcess) -> None:
    with Wire(sasl_bootstrap(server)) as wire:
        answer = handshake(wire, "PLAIN")
        assert answer.error_code == KafkaCode.NONE
        assert set(answer.mechanisms) == {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
        refused = authenticate(wire, b"\0alice\0wrong")
        assert refused.error_code == KafkaCode.SASL_AUTHENTICATION_FAILED
        assert refused.error_message == "Authentication failed: Invalid username or password"
        assert wire.closed_by_server(TIMEOUT)
    assert "wrong" not in server.log().replace("wrong PLAIN credentials", "")


def test_an_unknown_mechanism_is_refused_with_the_list(server: ServerProcess) -> None:
    with Wire(sasl_bootstrap(server)) as wire:
        answer = handshake(wire, "GSSAPI")
        assert answer.error_code == KafkaCode.UNSUPPORTED_SASL_MECHANISM
        assert "SCRAM-SHA-512" in answer.mechanisms
        assert wire.closed_by_server(TIMEOUT)


def test_a_request_before_authentication_closes_the_connection(server: ServerProcess) -> None:
    metadata = build(load_request_schema(ApiKey.METADATA, 4), topics=None)
    with Wire(sasl_bootstrap(server)) as wire:
        wire.send(metadata)
        assert wire.closed_by_server(TIMEOUT)
    with Wire(sasl_bootstrap(server)) as wire:  # ApiVersions is allowed
        versions = wire.request(build(load_request_schema(ApiKey.API_VERSIONS, 3)))
        assert versions.error_code == KafkaCode.NONE
    with Wire(server.bootstrap) as wire:  # the PLAINTEXT listener needs nothing
        assert wire.request(metadata).brokers[0].port == server.port


def test_metadata_advertises_the_listener_asked(server: ServerProcess) -> None:
    admin = AdminClient(confluent(server, "PLAIN", "alice", PASSWORD))
    brokers = admin.list_topics(timeout=TIMEOUT).brokers
    assert [(b.host, b.port) for b in brokers.values()] == [
        ("127.0.0.1", server.sasl_port)  # type: ignore[attr-defined]
    ]


def test_alter_user_scram_credentials_then_that_user_connects(
    server: ServerProcess, topic: str
) -> None:
    admin = AdminClient(confluent(server, "SCRAM-SHA-256", "alice", PASSWORD))
    upsert = UserScramCredentialUpsertion(
        "carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), b"carol's password"
    )
    admin.alter_user_scram_credentials([upsert])["carol"].result(TIMEOUT)
    described = admin.describe_user_scram_credentials(["carol"])["carol"].result(TIMEOUT)
    infos = described.scram_credential_infos
    assert [(i.mechanism, i.iterations) for i in infos] == [(ScramMechanism.SCRAM_SHA_512, 8192)]
    round_trip(confluent(server, "SCRAM-SHA-512", "carol", "carol's password"), topic)
    too_few = UserScramCredentialUpsertion(
        "dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 100), b"x"
    )
    with pytest.raises(KafkaException) as refused:
        admin.alter_user_scram_credentials([too_few])["dave"].result(TIMEOUT)
    assert refused.value.args[0].code() == KafkaError.UNACCEPTABLE_CREDENTIAL
    with pytest.raises(KafkaException) as missing:
        admin.describe_user_scram_credentials(["nobody"])["nobody"].result(TIMEOUT)
    assert missing.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND


def test_kafka_python_over_scram_sha_256(server: ServerProcess, topic: str) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    settings: dict[str, Any] = {
        "bootstrap_servers": sasl_bootstrap(server),
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "alice",
        "sasl_plain_password": PASSWORD,
    }
    producer = KafkaProducer(**settings)
    producer.send(topic, b"from kafka-python").get(TIMEOUT)
    producer.close()
    consumer = KafkaConsumer(topic, auto_offset_reset="earliest", **settings)
    values: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while not values and time.monotonic() < deadline:
            batches = consumer.poll(timeout_ms=500)
            values += [m.value for messages in batches.values() for m in messages]
    finally:
        consumer.close()
    assert values == [b"from kafka-python"]


def test_aiokafka_over_scram_sha_256(server: ServerProcess, topic: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    settings: dict[str, Any] = {
        "bootstrap_servers": sasl_bootstrap(server),
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "alice",
        "sasl_plain_password": PASSWORD,
    }

    async def run() -> list[bytes | None]:
        producer = AIOKafkaProducer(**settings)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"from aiokafka")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", **settings)
        await consumer.start()
        try:
            message = await asyncio.wait_for(consumer.getone(), TIMEOUT)
            return [message.value]
        finally:
            await consumer.stop()

    assert asyncio.run(run()) == [b"from aiokafka"]


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed")
def test_kcat_over_sasl_plain(server: ServerProcess, topic: str) -> None:
    security = ["-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanism=PLAIN",
                "-X", "sasl.username=alice", "-X", f"sasl.password={PASSWORD}"]  # fmt: skip
    bootstrap = sasl_bootstrap(server)
    subprocess.run(
        ["kcat", "-b", bootstrap, *security, "-P", "-t", topic],
        input=b"from kcat\n", check=True, timeout=TIMEOUT,
    )  # fmt: skip
    read = subprocess.run(
        ["kcat", "-b", bootstrap, *security, "-C", "-t", topic, "-o", "beginning", "-e", "-q"],
        capture_output=True, check=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert read.stdout == b"from kcat\n"


def test_users_added_with_the_cli_survive_a_restart(tmp_path: Path, topic: str) -> None:
    process = with_config(sasl_server(tmp_path), GROUP_SERVER_CONFIG)
    output = add_user(process.data_dir, "erin", "erin's secret", "SCRAM-SHA-512")
    assert output == "user erin: SCRAM-SHA-512\n"
    process.start()
    try:
        settings = confluent(process, "SCRAM-SHA-512", "erin", "erin's secret")
        round_trip(settings, topic)
        process.restart()
        round_trip(settings, topic + "-again")
    finally:
        process.end_at_teardown(graceful=True)
    listed = subprocess.run(
        [sys.executable, "-m", "engine", "users", "--data-dir", str(process.data_dir), "list"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert listed.stdout == "erin: SCRAM-SHA-512 (4096 iterations)\n"


def test_handshake_v0_takes_bare_tokens(server: ServerProcess) -> None:
    """The exchange before KIP-152: tokens as bare size-prefixed frames."""
    metadata = build(load_request_schema(ApiKey.METADATA, 4), topics=None)
    with Wire(sasl_bootstrap(server)) as wire:
        request = build(load_request_schema(ApiKey.SASL_HANDSHAKE, 0), mechanism="PLAIN")
        assert wire.request(request).error_code == KafkaCode.NONE
        wire.send_raw(frame(b"\0alice\0" + PASSWORD.encode()))
        assert wire.read_frame() == b""  # PLAIN's empty answer
        assert wire.request(metadata).brokers[0].port == server.sasl_port  # type: ignore[attr-defined]
    with Wire(sasl_bootstrap(server)) as wire:
        request = build(load_request_schema(ApiKey.SASL_HANDSHAKE, 0), mechanism="PLAIN")
        assert wire.request(request).error_code == KafkaCode.NONE
        wire.send_raw(frame(b"\0alice\0wrong"))
        assert wire.closed_by_server(TIMEOUT)
