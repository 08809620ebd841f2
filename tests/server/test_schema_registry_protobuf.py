"""PROTOBUF schemas as Confluent's clients use them: ``tidelog serve
--schema-registry`` in a child process, confluent-kafka's ProtobufSerializer
registering a message class (generated from .proto text by protoc at test
time) and its import as subjects with references, records produced to a
topic that holds its values to the schema and read back by the
ProtobufDeserializer; records with a wrong schema id, a wrong message index
or a garbage payload refused with INVALID_RECORD while the server keeps
serving; and a server without the ``tidelog[protobuf]`` extra refusing a
PROTOBUF registration with 42201, naming the extra."""

from __future__ import annotations

import base64
import importlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from engine.schemas.wire_format import frame
from tests.schemas.protos import proto
from tests.server.conftest import ServerProcess, free_port, quiet_librdkafka
from tests.server.test_schema_registry import http, round_trip, served_with_registry, url

TIMEOUT = 30.0
ROOT = Path(__file__).resolve().parents[2]


def compile_classes(directory: Path, files: dict[str, str]) -> dict[str, ModuleType]:
    """Generates Python message classes from .proto ``files`` with protoc
    (grpcio-tools) into ``directory`` and imports them, by file name."""
    from grpc_tools import protoc

    for name, text in files.items():
        (directory / name).write_text(text)
    status = protoc.main(["protoc", f"-I{directory}", f"--python_out={directory}", *files])
    assert status == 0, "protoc did not compile the test's .proto files"
    sys.path.insert(0, str(directory))
    try:
        return {
            name: importlib.import_module(name.removesuffix(".proto") + "_pb2") for name in files
        }
    finally:
        sys.path.remove(str(directory))


@pytest.fixture(scope="module")
def messages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModuleType]:
    # File names unique to this run: protobuf's default descriptor pool is
    # process-wide, and a file name is a key in it.
    tag = uuid.uuid4().hex[:8]
    money, order = f"money_{tag}.proto", f"order_{tag}.proto"
    files = {
        money: proto("message Money { int64 units = 1; string currency = 2; }", f"shop{tag}"),
        order: proto(
            f'import "{money}";\n'
            "message Order { string id = 1; Money total = 2; repeated string tags = 3; }\n"
            "message Refund { string order_id = 1; Money amount = 2; }",
            f"shop{tag}",
        ),
    }
    modules = compile_classes(tmp_path_factory.mktemp("protos"), files)
    return {"money": modules[money], "order": modules[order]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from served_with_registry(tmp_path_factory.mktemp("pb") / "data")


def validating_topic(server: ServerProcess) -> str:
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
    config = {"tidelog.value.schema.validation": "full"}
    futures = admin.create_topics([NewTopic(topic, 1, 1, config=config)])
    futures[topic].result(TIMEOUT)
    return topic


def deliveries(server: ServerProcess, topic: str, values: list[bytes]) -> list[Any]:
    """Produces each value alone; its delivery error (None: delivered)."""
    producer = Producer({
        "bootstrap.servers": server.bootstrap, "linger.ms": 0, "retries": 0,
        "enable.idempotence": False, **quiet_librdkafka(),
    })  # fmt: skip
    outcomes: list[Any] = []
    for value in values:
        producer.produce(topic, value, on_delivery=lambda error, _: outcomes.append(error))
        assert producer.flush(TIMEOUT) == 0
    return outcomes


def order_serializer(
    server: ServerProcess, messages: dict[str, ModuleType]
) -> tuple[str, SchemaRegistryClient, ProtobufSerializer]:
    """A new validating topic, a registry client, and a serializer of Order
    values that registers their schema at its first use (auto.register)."""
    client = SchemaRegistryClient({"url": url(server)})
    return validating_topic(server), client, ProtobufSerializer(messages["order"].Order, client)


def post_protobuf(server: ServerProcess, path: str, text: str) -> tuple[int, Any]:
    """POSTs a PROTOBUF schema's ``text`` to the registry's ``path``."""
    return http(server, "POST", path, _body({"schema": text, "schemaType": "PROTOBUF"}))


def order_of(modules: dict[str, ModuleType], number: int) -> Any:
    money = modules["money"].Money(units=number * 100, currency="EUR")
    return modules["order"].Order(id=f"o-{number}", total=money, tags=["a", str(number)])


def test_the_serializer_registers_and_the_deserializer_reads_back_through_a_full_topic(
    server: ServerProcess, messages: dict[str, ModuleType]
) -> None:
    topic, client, serializer = order_serializer(server, messages)
    # Given the registry, the deserializer reads with the writer's schema, as
    # asked for with format=serialized.
    deserializer = ProtobufDeserializer(messages["order"].Order, None, client)
    values = [order_of(messages, n) for n in range(4)]
    read = round_trip(server, topic, serializer, deserializer, values)
    assert read == values
    # The import became a subject of its own, referenced by the file's name.
    latest = client.get_latest_version(f"{topic}-value")
    assert latest.schema.schema_type == "PROTOBUF"
    [reference] = latest.schema.references
    imported = messages["money"].DESCRIPTOR.name
    assert (reference.name, reference.subject, reference.version) == (imported, imported, 1)
    # The second message of the file goes with message indexes [1].
    refund = messages["order"].Refund(order_id="o-1", amount=messages["money"].Money(units=5))
    refunds = ProtobufSerializer(messages["order"].Refund, client)
    context = SerializationContext(topic, MessageField.VALUE)
    payload = refunds(refund, context)
    assert payload is not None and payload[5:6] == b"\x02" and payload[6:7] == b"\x02"
    assert deliveries(server, topic, [payload]) == [None]


def test_a_wrong_id_index_or_payload_is_refused_and_the_server_keeps_serving(
    server: ServerProcess, messages: dict[str, ModuleType]
) -> None:
    topic, _, serializer = order_serializer(server, messages)
    good = serializer(order_of(messages, 7), SerializationContext(topic, MessageField.VALUE))
    assert good is not None
    schema_id = int.from_bytes(good[1:5], "big")
    body = good[6:]  # after the magic byte, the id and the indexes' single 0
    unregistered = frame(schema_id + 1000, b"\x00" + body)
    no_such_message = frame(schema_id, b"\x02\x10" + body)  # indexes [8]: the file has 2
    garbage = frame(schema_id, b"\x00" + b"\xff\xff\xff")
    bad_count = frame(schema_id, b"\x01")  # a count of -1
    outcomes = deliveries(server, topic, [unregistered, no_such_message, garbage, bad_count])
    assert [o.code() if o else None for o in outcomes] == [KafkaError.INVALID_RECORD] * 4
    assert deliveries(server, topic, [good]) == [None]
    status, types = http(server, "GET", "/schemas/types")
    assert status == 200 and "PROTOBUF" in types


def test_proto_text_with_references_registers_and_is_served_as_written(
    server: ServerProcess,
) -> None:
    tag = uuid.uuid4().hex[:8]
    client = SchemaRegistryClient({"url": url(server)})
    common = proto("message Id { string value = 1; }", f"c{tag}")
    common_subject = f"common-{tag}"
    client.register_schema(common_subject, Schema(common, "PROTOBUF"))
    main = proto(
        f'import "common/id.proto";\nmessage Event {{ c{tag}.Id id = 1; int32 n = 2; }}', f"m{tag}"
    )
    reference = SchemaReference("common/id.proto", common_subject, 1)
    schema_id = client.register_schema(f"events-{tag}", Schema(main, "PROTOBUF", [reference]))
    status, body = http(server, "GET", f"/schemas/ids/{schema_id}")
    assert status == 200 and body["schema"] == main and body["schemaType"] == "PROTOBUF"
    assert body["references"] == [
        {"name": "common/id.proto", "subject": common_subject, "version": 1}
    ]
    status, serialized = http(server, "GET", f"/schemas/ids/{schema_id}?format=serialized")
    assert status == 200 and serialized["schema"] != main
    from google.protobuf import descriptor_pb2

    file = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(serialized["schema"]))
    assert [m.name for m in file.message_type] == ["Event"]
    assert list(file.dependency) == ["common/id.proto"]
    # Without its reference the import does not resolve: 42201, as Confluent.
    status, refused = post_protobuf(server, f"/subjects/events-{tag}-x/versions", main)
    assert (status, refused["error_code"]) == (422, 42201)
    assert "common/id.proto" in refused["message"]


def test_compatibility_levels_hold_over_the_api(server: ServerProcess) -> None:
    tag = uuid.uuid4().hex[:8]
    subject = f"levels-{tag}-value"
    client = SchemaRegistryClient({"url": url(server)})
    v1 = proto("message Pay { int64 cents = 1; }", f"p{tag}")
    added = v1.replace("int64 cents = 1;", "int64 cents = 1; string memo = 2;")
    retyped = v1.replace("int64 cents", "string cents")
    client.register_schema(subject, Schema(v1, "PROTOBUF"))
    assert client.test_compatibility(subject, Schema(added, "PROTOBUF")) is True
    assert client.test_compatibility(subject, Schema(retyped, "PROTOBUF")) is False
    status, verbose = post_protobuf(
        server, f"/compatibility/subjects/{subject}/versions/latest?verbose=true", retyped
    )
    assert status == 200 and verbose["is_compatible"] is False
    assert any("FIELD_SCALAR_KIND_CHANGED" in m for m in verbose["messages"])
    status, refused = post_protobuf(server, f"/subjects/{subject}/versions", retyped)
    assert (status, refused["error_code"]) == (409, 409)
    client.set_compatibility(subject, "NONE")
    assert client.register_schema(subject, Schema(retyped, "PROTOBUF")) > 0
    assert client.get_versions(subject) == [1, 2]


def test_an_invalid_proto_is_refused_with_42201_naming_the_line(server: ServerProcess) -> None:
    text = 'syntax = "proto3";\nmessage A {\n  strin name = 1;\n}\n'
    status, refused = post_protobuf(server, "/subjects/broken-value/versions", text)
    assert (status, refused["error_code"]) == (422, 42201)
    assert refused["message"].startswith("Invalid schema")
    assert "line 3" in refused["message"] and "strin" in refused["message"]
    status, _ = http(server, "GET", "/subjects")
    assert status == 200


def _body(value: Any) -> bytes:
    return json.dumps(value).encode()


WITHOUT_EXTRA = """
import sys
# The extra's modules cannot be imported: as on an install without tidelog[protobuf].
for name in ("grpc_tools", "google.protobuf"):
    sys.modules[name] = None
from engine.cli import main
raise SystemExit(main())
"""


def test_a_server_without_the_extra_refuses_protobuf_naming_it(tmp_path: Path) -> None:
    kafka_port, registry_port = free_port(), free_port()
    log_path = tmp_path / "server.log"
    command = [
        sys.executable, "-c", WITHOUT_EXTRA, "serve", "--listen", f"127.0.0.1:{kafka_port}",
        "--data-dir", str(tmp_path / "data"), "--schema-registry", f"127.0.0.1:{registry_port}",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, cwd=ROOT)
    try:
        deadline = time.monotonic() + TIMEOUT
        while "Schema Registry API on" not in log_path.read_text(errors="replace"):
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        stand_in = ServerProcess(tmp_path / "unused")
        stand_in.registry_url = f"http://127.0.0.1:{registry_port}"  # type: ignore[attr-defined]
        text = 'syntax = "proto3";\nmessage A { int32 x = 1; }\n'
        status, refused = post_protobuf(stand_in, "/subjects/a-value/versions", text)
        assert (status, refused["error_code"]) == (422, 42201)
        assert "tidelog[protobuf]" in refused["message"]
        status, types = http(stand_in, "GET", "/schemas/types")
        assert (status, types) == (200, ["AVRO", "JSON"])
        avro = '{"type": "record", "name": "R", "fields": [{"name": "x", "type": "int"}]}'
        status, registered = http(
            stand_in, "POST", "/subjects/r-value/versions", _body({"schema": avro})
        )
        assert status == 200 and registered["id"] == 1
    finally:
        process.terminate()
        try:
            process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(TIMEOUT)
