"""The Schema Registry API as Confluent's clients use it: ``tidelog serve
--schema-registry`` in a child process, confluent-kafka's
SchemaRegistryClient and its Avro and JSON serializers, records produced
and consumed through the Kafka listener, ids kept across a restart and on a
fresh machine, bad input answered with Confluent's errors, and HTTP Basic
against the SASL users when the Kafka side authenticates."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from engine.cli.schemas import agent_action_schema
from tests.server.configured_servers import with_config
from tests.server.conftest import GROUP_SERVER_CONFIG, ServerProcess, free_port, quiet_librdkafka
from tests.server.test_sasl import PASSWORD, add_user, confluent, sasl_server

TIMEOUT = 30.0
READY = "Schema Registry API on"
PAY = json.dumps({
    "type": "record", "name": "Pay", "namespace": "tidelog.test",
    "fields": [{"name": "cents", "type": "long"}, {"name": "memo", "type": "string"}],
})  # fmt: skip
PAY_V2 = json.dumps({
    "type": "record", "name": "Pay", "namespace": "tidelog.test",
    "fields": [{"name": "cents", "type": "long"}, {"name": "memo", "type": "string"},
               {"name": "currency", "type": "string", "default": "EUR"}],
})  # fmt: skip
PAY_BROKEN = json.dumps({
    "type": "record", "name": "Pay", "namespace": "tidelog.test",
    "fields": [{"name": "cents", "type": "int"}, {"name": "payee", "type": "string"}],
})  # fmt: skip


def with_registry(server: ServerProcess) -> ServerProcess:
    port = free_port()
    server.args = [*server.args, "--schema-registry", f"127.0.0.1:{port}"]
    server.registry_url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    return server


def start(server: ServerProcess) -> ServerProcess:
    server.start()
    deadline = time.monotonic() + TIMEOUT
    while READY not in server.log().rsplit(f"--- start {server.starts}\n", 1)[-1]:
        assert time.monotonic() < deadline, server.log()
        assert server.running, server.log()
        time.sleep(0.05)
    return server


def url(server: ServerProcess) -> str:
    found: str = server.registry_url  # type: ignore[attr-defined]
    return found


def served_with_registry(data_dir: Path) -> Iterator[ServerProcess]:
    """A module fixture's body: ``tidelog serve --schema-registry`` on
    ``data_dir``, ready; after its tests, it must stop cleanly."""
    # round_trip's consumer is its group's one member: the first rebalance
    # need not wait Kafka's 3 s for more.
    process = start(with_registry(with_config(ServerProcess(data_dir), GROUP_SERVER_CONFIG)))
    yield process
    process.end_at_teardown(graceful=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from served_with_registry(tmp_path_factory.mktemp("registry") / "data")


def http(
    server: ServerProcess,
    method: str,
    path: str,
    body: bytes | None = None,
    auth: tuple[str, str] | None = None,
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/vnd.schemaregistry.v1+json"}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    request = urllib.request.Request(url(server) + path, body, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            assert response.headers["Content-Type"].startswith("application/vnd.schemaregistry")
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def round_trip(
    server: ServerProcess, topic: str, serializer: Any, deserializer: Any, values: list[Any]
) -> list[Any]:
    """Serializes and produces ``values``, then consumes and deserializes them."""
    producer = Producer({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
    for value in values:
        payload = serializer(value, SerializationContext(topic, MessageField.VALUE))
        producer.produce(topic, payload)
    assert producer.flush(TIMEOUT) == 0
    consumer = Consumer({
        "bootstrap.servers": server.bootstrap, "group.id": f"g-{topic}",
        "auto.offset.reset": "earliest", **quiet_librdkafka(),
    })  # fmt: skip
    consumer.subscribe([topic])
    got: list[Any] = []
    try:
        deadline = time.monotonic() + TIMEOUT
        while len(got) < len(values) and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            value = message.value()
            got.append(deserializer(value, SerializationContext(topic, MessageField.VALUE)))
    finally:
        consumer.close()
    return got


def test_avro_records_round_trip_through_the_registry_and_the_broker(
    server: ServerProcess,
) -> None:
    topic = f"pay-{uuid.uuid4().hex[:8]}"
    client = SchemaRegistryClient({"url": url(server)})
    serializer = AvroSerializer(client, PAY)  # auto.register.schemas: on
    deserializer = AvroDeserializer(client)
    values = [{"cents": i * 100, "memo": f"invoice {i}"} for i in range(5)]
    assert round_trip(server, topic, serializer, deserializer, values) == values
    latest = client.get_latest_version(f"{topic}-value")
    assert latest.version == 1 and latest.schema.schema_type == "AVRO"
    # The same schema under another subject keeps its id.
    again = client.register_schema(f"{topic}-copy", Schema(PAY, "AVRO"))
    assert again == latest.schema_id
    # A compatible second version, read by the old reader's deserializer.
    v2 = AvroSerializer(client, PAY_V2)
    newer = [{"cents": 1, "memo": "m", "currency": "USD"}]
    assert round_trip(server, topic, v2, deserializer, newer) == newer
    assert client.get_versions(f"{topic}-value") == [1, 2]


def test_an_incompatible_schema_is_refused_with_409(server: ServerProcess) -> None:
    subject = f"pay-{uuid.uuid4().hex[:8]}-value"
    client = SchemaRegistryClient({"url": url(server)})
    client.register_schema(subject, Schema(PAY, "AVRO"))
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, Schema(PAY_BROKEN, "AVRO"))
    assert (refused.value.http_status_code, refused.value.error_code) == (409, 409)
    assert not client.test_compatibility(subject, Schema(PAY_BROKEN, "AVRO"))
    assert client.test_compatibility(subject, Schema(PAY_V2, "AVRO"))
    client.set_compatibility(subject, "NONE")
    assert client.get_compatibility(subject) == "NONE"
    client.register_schema(subject, Schema(PAY_BROKEN, "AVRO"))
    assert client.get_versions(subject) == [1, 2]


def test_the_agent_action_schema_from_tidelog_schemas_init_serves_json_records(
    server: ServerProcess,
) -> None:
    registry = url(server)
    done = subprocess.run(
        [sys.executable, "-m", "engine", "schemas", "--url", registry, "init"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    client = SchemaRegistryClient({"url": registry})
    registered = client.get_latest_version("agent-actions-value")
    assert registered.schema.schema_type == "JSON"
    assert f"id {registered.schema_id}" in done.stdout
    action = {
        "action_id": "a-1", "type": "tool_call",
        "actor": {"kind": "agent", "id": "planner"}, "tool": {"name": "search"},
        "correlation_id": "c-1", "causation_id": "a-0",
        "context_offsets": {"memory": {"0": {"offset": 41, "leader_epoch": 3}}},
        "timestamps": {"started_ms": 1_700_000_000_000},
    }  # fmt: skip
    serializer = JSONSerializer(agent_action_schema(), client)
    deserializer = JSONDeserializer(agent_action_schema(), schema_registry_client=client)
    assert round_trip(server, "agent-actions", serializer, deserializer, [action]) == [action]
    # The serializer found the schema init registered: still one version.
    assert client.get_versions("agent-actions-value") == [1]
    listed = subprocess.run(
        [sys.executable, "-m", "engine", "schemas", "--url", registry, "list"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert "agent-actions-value" in listed.stdout.split()


def test_bad_input_gets_confluents_errors_and_the_registry_keeps_serving(
    server: ServerProcess,
) -> None:
    schema = json.dumps({"schema": '"string"'}).encode()
    cases = [
        ("POST", "/subjects/s/versions", b"{not json", 400, 400),
        ("POST", "/subjects/s/versions", b"[1, 2]", 400, 400),
        ("POST", "/subjects/s/versions", b'{"schema": 5}', 422, 42201),
        ("POST", "/subjects/s/versions", b'{"schema": "{\\"type\\": \\"nope\\"}"}', 422, 42201),
        ("POST", "/subjects/s/versions", b"[" * 100_000 + b"]" * 100_000, 400, 400),
        ("GET", "/subjects/no-such-subject/versions", None, 404, 40401),
        ("GET", "/subjects/no-such-subject/versions/latest", None, 404, 40401),
        ("POST", "/subjects/no-such-subject", schema, 404, 40401),
        ("GET", "/schemas/ids/987654", None, 404, 40403),
        ("GET", "/schemas/ids/abc", None, 400, 400),
        ("PUT", "/config", b'{"compatibility": "SIDEWAYS"}', 422, 42203),
        ("PUT", "/mode", b'{"mode": "WRITEONLY"}', 422, 42204),
        ("GET", "/no/such/path", None, 404, 404),
    ]
    http(server, "POST", "/subjects/bad-input/versions", schema)
    cases += [
        ("GET", f"/subjects/bad-input/versions/{version}", None, 422, 42202)
        for version in ("0", "-5", "abc", "1.5", "99999999999", "latest2")
    ]
    cases.append(("GET", "/subjects/bad-input/versions/7", None, 404, 40402))
    cases.append(("POST", "/subjects/bad-input/versions", b"x" * (5 << 20), 413, 413))
    for method, path, body, status, code in cases:
        got_status, answer = http(server, method, path, body)
        assert (got_status, answer["error_code"]) == (status, code), (method, path, answer)
        assert isinstance(answer["message"], str)
    assert http(server, "GET", "/subjects/bad-input/versions") == (200, [1])


def test_a_claimed_body_size_is_not_allocated(server: ServerProcess) -> None:
    """A request claiming a terabyte is refused on what arrives."""
    port = int(url(server).rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(
            b"POST /subjects/s/versions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n{}"
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert http(server, "GET", "/subjects")[0] == 200


def test_ids_survive_a_restart_and_a_fresh_machine_on_the_same_bucket(tmp_path: Path) -> None:
    bucket = f"file://{tmp_path / 'bucket'}"
    first = with_registry(ServerProcess(tmp_path / "first", object_store=bucket))
    start(first)
    try:
        client = SchemaRegistryClient({"url": url(first)})
        pay = client.register_schema("pay-value", Schema(PAY, "AVRO"))
        actions = client.register_schema("agent-value", Schema(agent_action_schema(), "JSON"))
        assert first.stop() == 0, first.log()
        start(first)
        client = SchemaRegistryClient({"url": url(first)})
        assert client.get_schema(pay).schema_str == json.dumps(
            json.loads(PAY), separators=(",", ":")
        )
        assert first.stop() == 0, first.log()
    finally:
        first.kill()
    fresh = with_registry(ServerProcess(tmp_path / "fresh", object_store=bucket))
    start(fresh)
    try:
        client = SchemaRegistryClient({"url": url(fresh)})
        assert client.get_latest_version("pay-value").schema_id == pay
        assert client.get_schema(actions).schema_type == "JSON"
        assert client.register_schema("other", Schema('"string"', "AVRO")) == actions + 1
        assert fresh.stop() == 0, fresh.log()
    finally:
        fresh.kill()


@pytest.mark.slow
def test_with_sasl_on_the_registry_asks_for_a_sasl_user_and_writes_need_alter(
    tmp_path: Path,
) -> None:
    process = with_registry(sasl_server(tmp_path))
    config = tmp_path / "tidelog.toml"
    config.write_text('[server]\nauthorizer = "acl"\n"super.users" = ["User:admin"]\n')
    process.args = [*process.args, "--config", str(config)]
    add_user(process.data_dir, "admin", PASSWORD, "SCRAM-SHA-512")
    add_user(process.data_dir, "reader", PASSWORD, "PLAIN")
    start(process)
    try:
        schema = json.dumps({"schema": '"string"'}).encode()
        status, answer = http(process, "GET", "/subjects")
        assert (status, answer["error_code"]) == (401, 40101)
        status, answer = http(process, "GET", "/subjects", auth=("admin", "wrong"))
        assert (status, answer["error_code"]) == (401, 40101)
        status, answer = http(process, "GET", "/subjects", auth=("nobody", PASSWORD))
        assert status == 401
        assert http(process, "GET", "/subjects", auth=("reader", PASSWORD)) == (200, [])
        status, answer = http(
            process, "POST", "/subjects/s/versions", schema, auth=("reader", PASSWORD)
        )
        assert (status, answer["error_code"]) == (403, 40301)
        admin = SchemaRegistryClient(
            {"url": url(process), "basic.auth.user.info": f"admin:{PASSWORD}"}
        )
        schema_id = admin.register_schema("s", Schema('"string"', "AVRO"))
        reader = SchemaRegistryClient(
            {"url": url(process), "basic.auth.user.info": f"reader:{PASSWORD}"}
        )
        assert reader.get_schema(schema_id).schema_str == '"string"'
        # A password changed over Kafka's AlterUserScramCredentials: the
        # registry checks the new one, and no longer takes the old one.
        kafka_admin = AdminClient(confluent(process, "SCRAM-SHA-512", "admin", PASSWORD))
        upsert = UserScramCredentialUpsertion(
            "admin", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"new password"
        )
        for future in kafka_admin.alter_user_scram_credentials([upsert]).values():
            future.result(TIMEOUT)
        assert http(process, "GET", "/subjects", auth=("admin", PASSWORD))[0] == 401
        assert http(process, "GET", "/subjects", auth=("admin", "new password")) == (200, ["s"])
        assert PASSWORD not in process.log()
        assert process.stop() == 0, process.log()
    finally:
        process.kill()


def test_lookups_deletes_and_modes_through_the_client(server: ServerProcess) -> None:
    subject = f"pay-{uuid.uuid4().hex[:8]}-value"
    client = SchemaRegistryClient({"url": url(server)})
    first = client.register_schema(subject, Schema(PAY, "AVRO"))
    client.register_schema(subject, Schema(PAY_V2, "AVRO"))
    found = client.lookup_schema(subject, Schema(PAY, "AVRO"))
    assert (found.version, found.schema_id) == (1, first)
    assert {"subject": subject, "version": 1} in [
        {"subject": v.subject, "version": v.version} for v in client.get_schema_versions(first)
    ]
    assert client.delete_version(subject, 2) == 2
    assert client.get_versions(subject) == [1]
    assert client.delete_version(subject, 2, permanent=True) == 2
    assert client.update_mode(subject, "READONLY") == "READONLY"
    uncached = SchemaRegistryClient({"url": url(server)})  # the first client remembers PAY_V2
    with pytest.raises(SchemaRegistryError) as refused:
        uncached.register_schema(subject, Schema(PAY_V2, "AVRO"))
    assert refused.value.error_code == 42205
    status, _ = http(server, "DELETE", f"/mode/{subject}")
    assert status == 200
    assert client.delete_subject(subject) == [1]
    assert client.delete_subject(subject, permanent=True) == [1]
    with pytest.raises(SchemaRegistryError) as gone:
        client.get_latest_version(subject)
    assert gone.value.error_code == 40401
