"""The handlers' registrations are what the server serves: the ApiVersions
answer is, byte for byte, the one the server gave before each handler
registered itself (kio writes the expected bytes, not our encoder); the
versions each handler states in its request type are the ones it
registers; the admin requests still run off the event loop; and the API
table of docs/server.md is the one generated from the registrations."""

from __future__ import annotations

import datetime
import io
import struct
import subprocess
import sys
import typing
from pathlib import Path
from types import UnionType
from typing import Any

import pytest
from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_writer

from engine.protocol.apis import ApiKey
from engine.server import api_table
from engine.server.api_table import with_table
from engine.server.handlers import requests as handler_requests
from engine.server.handlers.registry import (
    SUPPORTED_VERSIONS,
    Registration,
    handles,
    is_served,
    registrations,
)
from tests.server.conftest import ServerProcess
from tests.server.wire import Wire, build, encode_request, frame, header_bytes

DOCS = Path(__file__).resolve().parents[2] / "docs" / "server.md"

PREVIOUS_ADVERTISED = {
    # api key: (min, max) as ApiVersions listed them before the handlers
    # registered themselves (Produce listed from v0, see produce.py), and
    # the delegation token APIs served since (Kafka 4.0's versions).
    0: (0, 12),
    1: (4, 17),
    2: (1, 11),
    3: (0, 13),
    8: (2, 9),
    9: (1, 9),
    10: (0, 6),
    11: (0, 9),
    12: (0, 4),
    13: (0, 5),
    14: (0, 5),
    15: (0, 6),
    16: (0, 5),
    17: (0, 1),
    18: (0, 4),
    19: (2, 7),
    20: (1, 6),
    21: (0, 2),
    22: (0, 5),
    23: (2, 4),
    24: (0, 5),
    25: (0, 4),
    26: (0, 5),
    28: (0, 5),
    29: (1, 3),
    30: (1, 3),
    31: (1, 3),
    32: (1, 4),
    33: (0, 2),
    35: (1, 4),
    36: (0, 2),
    37: (0, 3),
    38: (1, 3),
    39: (1, 2),
    40: (1, 2),
    41: (1, 3),
    42: (0, 2),
    44: (0, 1),
    47: (0, 0),
    48: (0, 1),
    49: (0, 1),
    50: (0, 0),
    51: (0, 0),
    60: (0, 2),
    61: (0, 0),
    65: (0, 0),
    66: (0, 2),
    68: (0, 1),
    69: (0, 1),
    75: (0, 0),
}
UNSUPPORTED_VERSION = 35
TRANSACTION_VERSION_2: dict[str, Any] = {
    "supported_features": [{"name": "transaction.version", "min_version": 0, "max_version": 2}],
    "finalized_features_epoch": 0,
    "finalized_features": [
        {"name": "transaction.version", "max_version_level": 2, "min_version_level": 2}
    ],
}
_INT32 = struct.Struct(">i")


def features_told(version: int) -> dict[str, Any]:
    if version < 3:
        return {}
    if version == 3:
        return TRANSACTION_VERSION_2 | {"supported_features": []}
    return TRANSACTION_VERSION_2


def expected_frame(version: int, correlation_id: int, error_code: int = 0) -> bytes:
    """The ApiVersions response, without its size prefix, as kio writes it
    from PREVIOUS_ADVERTISED (the response header is v0 in every version)."""
    schema = load_response_schema(ApiKey.API_VERSIONS, version)
    body = build(
        schema,
        error_code=ErrorCode(error_code),
        api_keys=[
            {"api_key": key, "min_version": low, "max_version": high}
            for key, (low, high) in sorted(PREVIOUS_ADVERTISED.items())
        ],
        throttle_time=datetime.timedelta(0),
        # From v3, transactions v2 supported and finalized (docs/design/0076);
        # at v3 without its supported range, which starts at 0 (KAFKA-17492).
        **(features_told(version) if error_code == 0 else {}),
    )
    out = io.BytesIO()
    entity_writer(schema)(out, body)
    return _INT32.pack(correlation_id) + out.getvalue()


def api_versions_request(version: int) -> Any:
    return build(
        load_request_schema(ApiKey.API_VERSIONS, version),
        client_software_name="registry-test",
        client_software_version="1",
    )


@pytest.mark.parametrize("version", range(0, 5))
def test_api_versions_answer_is_unchanged(kafka_server: ServerProcess, version: int) -> None:
    with Wire(kafka_server.bootstrap) as wire:
        wire.send_raw(encode_request(api_versions_request(version), 7))
        assert wire.read_frame() == expected_frame(version, 7)


def test_unsupported_api_versions_answer_is_unchanged(kafka_server: ServerProcess) -> None:
    """A version the server lacks: a v0 answer, UNSUPPORTED_VERSION, the list."""
    request = api_versions_request(4)
    frame = bytearray(encode_request(request, 9))
    struct.pack_into(">h", frame, 6, 5)  # the header's api_version: 5
    with Wire(kafka_server.bootstrap) as wire:
        wire.send_raw(frame)
        assert wire.read_frame() == expected_frame(0, 9, UNSUPPORTED_VERSION)


def test_produce_is_listed_from_v0_but_served_from_v3() -> None:
    assert SUPPORTED_VERSIONS[ApiKey.PRODUCE] == (3, 12)
    assert not any(is_served(ApiKey.PRODUCE, version) for version in range(3))
    assert all(is_served(ApiKey.PRODUCE, version) for version in range(3, 13))


def test_only_durable_writes_waited_for_and_log_dirs_run_off_the_event_loop() -> None:
    """The ACL, credential, token and config APIs' changes are catalog
    writes, as topics' are; DeleteRecords waits for checkpoints and trims."""
    off = {r.key for r in registrations() if r.off_loop}
    assert off == {
        ApiKey.CREATE_ACLS,
        ApiKey.DESCRIBE_ACLS,
        ApiKey.DELETE_ACLS,
        ApiKey.CREATE_TOPICS,
        ApiKey.DELETE_TOPICS,
        ApiKey.CREATE_PARTITIONS,
        ApiKey.DESCRIBE_LOG_DIRS,
        # a durable catalog write per user
        ApiKey.ALTER_USER_SCRAM_CREDENTIALS,
        # a durable catalog write per token (and its credentials' derivation)
        ApiKey.CREATE_DELEGATION_TOKEN,
        ApiKey.RENEW_DELEGATION_TOKEN,
        ApiKey.EXPIRE_DELEGATION_TOKEN,
        # a durable catalog write per entity
        ApiKey.ALTER_CLIENT_QUOTAS,
        # a durable write per resource
        ApiKey.ALTER_CONFIGS,
        ApiKey.INCREMENTAL_ALTER_CONFIGS,
        # a durable checkpoint and trim per partition
        ApiKey.DELETE_RECORDS,
    }


def test_a_malformed_request_read_off_the_loop_closes_its_connection_quietly(
    own_server: ServerProcess,
) -> None:
    """As a malformed request read on the event loop: the connection closes
    with one warning, not an error with a traceback, and others are served."""
    off = [r for r in registrations() if r.off_loop]
    for registration in off:
        header = header_bytes(registration.key, registration.min_version, 3, flexible=False)
        claimed = struct.pack(">i", 2**30)  # the body's first array: 2^30 elements, no bytes
        with Wire(own_server.bootstrap) as wire:
            wire.send_raw(frame(header + claimed))
            assert wire.closed_by_server()
    with Wire(own_server.bootstrap) as wire:
        assert wire.request(api_versions_request(4)).error_code == 0
    log = own_server.log()
    assert "closing the connection: an array of" in log
    assert "failed" not in log
    assert "Traceback" not in log


def test_an_api_registered_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="Heartbeat \\(12\\) is registered twice"):
        handles(ApiKey.HEARTBEAT, 0, 4, notes={})(lambda context, request: {})
    assert SUPPORTED_VERSIONS[ApiKey.HEARTBEAT] == (0, 4)


def test_a_note_for_a_version_not_listed_is_refused() -> None:
    with pytest.raises(ValueError, match="notes for versions it does not list: \\[5\\]"):
        handles(ApiKey.HEARTBEAT, 0, 4, notes={5: "later"})(lambda context, request: {})


# -- handler signatures ----------------------------------------------------------------


def request_types(registration: Registration) -> set[type]:
    """The request classes the handler's second parameter names."""
    # The handlers import the request classes for type checking only.
    hints = typing.get_type_hints(registration.handler, localns=vars(handler_requests))
    annotation = list(hints.values())[1]
    if isinstance(annotation, UnionType) or typing.get_origin(annotation) is typing.Union:
        return set(typing.get_args(annotation))
    return {annotation}


def test_the_server_starts_without_importing_every_request_class() -> None:
    """The typed requests are for annotations: loading every version's kio
    class once doubled the time from `tidelog serve` to listening."""
    code = (
        "import sys, engine.cli.serve, engine.server.server; "
        "print(sum(m.startswith('kio.schema.') for m in sys.modules)); "
        "print('engine.server.handlers.requests' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert out[1] == "False"
    assert int(out[0]) < 150  # the headers and the few classes checked at run time


KIO_REGISTRATIONS = [
    pytest.param(registration, id=registration.name)
    for registration in registrations()
    if registration.key != ApiKey.PRODUCE  # decoded by hand (produce.py)
]


@pytest.mark.parametrize("registration", KIO_REGISTRATIONS)
def test_each_handler_takes_the_requests_of_the_versions_it_registers(
    registration: Registration,
) -> None:
    served = {
        load_request_schema(registration.key, version)
        for version in range(registration.min_version, registration.max_version + 1)
    }
    assert request_types(registration) == served


# -- docs/server.md ----------------------------------------------------------------------


def test_the_documented_api_table_is_the_generated_one() -> None:
    """Regenerate with: python -m engine.server.api_table --write docs/server.md"""
    text = DOCS.read_text()
    assert text.count(api_table.BEGIN) == 1
    assert with_table(text) == text


def test_a_served_key_has_no_reason_for_not_being_served() -> None:
    """The table's reasons are for unserved keys only: a key served gets
    none, so none goes stale when a key becomes served."""
    served = {int(r.key) for r in registrations()}
    stale = {key: api_table.KAFKA_APIS[key] for key in served if api_table.KAFKA_APIS[key][1]}
    assert stale == {}


def test_the_api_table_lists_every_kafka_key_and_each_served_one_by_its_registration() -> None:
    assert sorted(api_table.KAFKA_APIS) == list(range(max(api_table.KAFKA_APIS) + 1))
    rows = {}
    for line in api_table.api_table().splitlines()[3:-1]:
        key, name, versions, notes = (cell.strip() for cell in line.strip("|").split(" | "))
        rows[int(key)] = (name, versions, notes)
    for registration in registrations():
        name, versions, _ = rows.pop(int(registration.key))
        assert name == registration.name == api_table.KAFKA_APIS[registration.key][0]
        low, high = registration.min_version, registration.max_version
        assert versions.startswith(str(low) if low == high else f"{low}-{high}")
    for key, (name, versions, notes) in rows.items():
        assert (name, versions) == (api_table.KAFKA_APIS[key][0], "not served")
        assert notes, f"{name} ({key}) needs a reason it is not served"
