"""Bad input over real sockets: each malformed, oversized, unsupported or
invalid request gets the Kafka error a broker would give, or closes exactly
the connection that sent it, and the server keeps serving everyone else (a
connection opened before the bad input, and a new one). Also pipelining
(responses in request order) and back-pressure (a client that never reads
cannot make the server buffer without bound)."""

from __future__ import annotations

import datetime
import select
import socket
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kio.schema.api_versions.v0.response import ApiVersionsResponse as ApiVersionsResponseV0
from kio.schema.fetch.v12.response import FetchResponse
from kio.schema.produce.v9.response import ProduceResponse

import native
from engine.protocol.apis import request_schema
from engine.server.handlers.registry import SUPPORTED_VERSIONS
from native.records import RecordSpec
from tests.server.conftest import ServerProcess
from tests.server.engineless import ENGINELESS
from tests.server.wire import (
    ConnectionClosed,
    Wire,
    build,
    encode_request,
    frame,
    header_bytes,
    response_schema_for,
)

NONE = 0
OFFSET_OUT_OF_RANGE = 1
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_TOPIC_EXCEPTION = 17
INVALID_REQUIRED_ACKS = 21
UNSUPPORTED_VERSION = 35
INVALID_REQUEST = 42
POLICY_VIOLATION = 44
UNSUPPORTED_COMPRESSION_TYPE = 76
INVALID_RECORD = 87

MiB = 1024 * 1024
DEFAULT_MAX_REQUEST_BYTES = 100 * MiB


# -- requests ------------------------------------------------------------------------------


def api_versions() -> Any:
    return build(
        request_schema(18, 3), client_software_name="wire-tests", client_software_version="1"
    )


def metadata(*names: str, auto_create: bool = True) -> Any:
    return build(
        request_schema(3, 12),
        topics=[{"name": name} for name in names],
        allow_auto_topic_creation=auto_create,
    )


def all_metadata() -> Any:
    return build(request_schema(3, 12), topics=None, allow_auto_topic_creation=False)


def produce(records_by_topic: dict[str, bytes | None], acks: int = -1) -> Any:
    return build(
        request_schema(0, 9),
        acks=acks,
        timeout=datetime.timedelta(seconds=10),
        topic_data=[
            {"name": name, "partition_data": [{"index": 0, "records": records}]}
            for name, records in records_by_topic.items()
        ],
    )


def fetch(
    topic: str,
    offset: int,
    *,
    max_wait: datetime.timedelta = datetime.timedelta(0),
    min_bytes: int = 0,
) -> Any:
    partition = {
        "partition": 0,
        "current_leader_epoch": -1,
        "fetch_offset": offset,
        "last_fetched_epoch": -1,
        "log_start_offset": -1,
        "partition_max_bytes": 64 * MiB,
    }
    return build(
        request_schema(1, 12),
        replica_id=-1,
        max_wait=max_wait,
        min_bytes=min_bytes,
        max_bytes=64 * MiB,
        session_epoch=-1,
        topics=[{"topic": topic, "partitions": [partition]}],
    )


def batch(value: bytes = b"v" * 50) -> bytes:
    return native.encode_batch([RecordSpec(1_700_000_000_000, b"k", value, ())])


def with_crc(data: bytearray) -> bytes:
    """A batch whose CRC32C (over attributes onwards) matches its bytes again."""
    data[17:21] = struct.pack(">I", native.crc32c(bytes(data[21:])))
    return bytes(data)


def partition_error(response: Any, topic_index: int = 0) -> int:
    return int(response.responses[topic_index].partition_responses[0].error_code)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def server_pid(server: ServerProcess) -> int:
    assert server.process is not None
    return server.process.pid


# -- the server keeps serving ----------------------------------------------------------------


def assert_answers(wire: Wire) -> None:
    response = wire.request(api_versions())
    assert response.error_code == NONE
    assert response.api_keys


@pytest.fixture
def bystander(kafka_server: ServerProcess) -> Iterator[Wire]:
    """A connection opened (and answered) before the bad input arrives."""
    with Wire(kafka_server.bootstrap) as wire:
        assert_answers(wire)
        yield wire


def assert_still_serving(server: ServerProcess, bystander: Wire) -> None:
    assert server.running, server.log()
    assert_answers(bystander)
    with Wire(server.bootstrap) as fresh:
        assert_answers(fresh)


# -- connections closed ----------------------------------------------------------------------


def _metadata_with_absurd_topic_count() -> bytes:
    # Metadata v4: topics (int32 count) then allow_auto_topic_creation; the
    # count claims 2^31-1 topics in a body of 4 bytes.
    return header_bytes(3, 4, 11, flexible=False) + struct.pack(">i", 2**31 - 1)


def _metadata_with_absurd_compact_topic_count() -> bytes:
    # Metadata v9 (flexible): the topics count is a varint of 2^32, which a
    # reader that reserves room before reading would try to allocate.
    return header_bytes(3, 9, 16, flexible=True) + b"\xff\xff\xff\xff\x0f"


def _produce_with_overlong_varint() -> bytes:
    # Produce v9 (flexible): the transactional id's length is a varint of
    # more than five bytes.
    return header_bytes(0, 9, 12, flexible=True) + b"\xff" * 8


def _produce_with_records_past_the_end() -> bytes:
    # Produce v3: no transactional id, acks, timeout, one topic "t" with one
    # partition whose records claim 1000 bytes; 3 follow.
    body = struct.pack(">hhi", -1, -1, 1000) + struct.pack(">ih", 1, 1) + b"t"
    body += struct.pack(">iii", 1, 0, 1000) + b"abc"
    return header_bytes(0, 3, 13, flexible=False) + body


def _null_for_a_non_nullable_array() -> bytes:
    # OffsetForLeaderEpoch v4 (flexible): replica id, one topic "t" whose
    # partitions array, which may not be null, is null (compact length 0).
    body = struct.pack(">i", -1) + b"\x02" + b"\x02t" + b"\x00" + b"\x00" + b"\x00"
    return header_bytes(23, 4, 17, flexible=True) + body


def _fetch_cut_short() -> bytes:
    return header_bytes(1, 4, 14, flexible=False) + b"\x00\x00\x00"


def _header_cut_short() -> bytes:
    return b"\x00\x03\x00"


def _client_id_past_the_end() -> bytes:
    return struct.pack(">hhih", 18, 3, 15, 500) + b"abc"


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(_metadata_with_absurd_topic_count(), id="metadata-absurd-array-count"),
        pytest.param(
            _metadata_with_absurd_compact_topic_count(), id="metadata-absurd-compact-array-count"
        ),
        pytest.param(_produce_with_overlong_varint(), id="produce-overlong-varint"),
        pytest.param(_produce_with_records_past_the_end(), id="produce-records-past-the-end"),
        pytest.param(_null_for_a_non_nullable_array(), id="null-non-nullable-array"),
        pytest.param(_fetch_cut_short(), id="fetch-body-cut-short"),
        pytest.param(_header_cut_short(), id="header-cut-short"),
        pytest.param(_client_id_past_the_end(), id="client-id-past-the-end"),
    ],
)
def test_malformed_request_closes_only_its_connection(
    kafka_server: ServerProcess, bystander: Wire, payload: bytes
) -> None:
    with Wire(kafka_server.bootstrap) as wire:
        wire.send_raw(frame(payload))
        assert wire.closed_by_server()
    assert_still_serving(kafka_server, bystander)


def test_request_cut_short_by_a_closing_client(
    kafka_server: ServerProcess, bystander: Wire
) -> None:
    whole = encode_request(metadata(), 3)
    with Wire(kafka_server.bootstrap) as wire:
        wire.send_raw(struct.pack(">i", 100) + whole[4:])
        wire.sock.shutdown(socket.SHUT_WR)
        assert wire.closed_by_server()
    assert_still_serving(kafka_server, bystander)


def test_request_sent_in_pieces_is_answered_once_whole(kafka_server: ServerProcess) -> None:
    whole = encode_request(api_versions(), 77)
    with Wire(kafka_server.bootstrap) as wire:
        wire.send_raw(whole[:2])
        assert not wire.closed_by_server(timeout=0.2)
        wire.send_raw(whole[2:9])
        assert not wire.closed_by_server(timeout=0.2)
        wire.send_raw(whole[9:])
        correlation_id, response = wire.receive(response_schema_for(api_versions()))
    assert correlation_id == 77
    assert response.error_code == NONE


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(2**31 - 1, id="2GiB"),
        pytest.param(DEFAULT_MAX_REQUEST_BYTES + 1, id="max-request-bytes-plus-one"),
        pytest.param(-1, id="minus-one"),
        pytest.param(-(2**31), id="most-negative"),
    ],
)
def test_size_prefix_out_of_bounds_closes_without_allocating(
    kafka_server: ServerProcess, bystander: Wire, size: int
) -> None:
    before = rss_bytes(server_pid(kafka_server))
    with Wire(kafka_server.bootstrap) as wire:
        # The rest of the request never comes: the server must not wait for it.
        wire.send_raw(struct.pack(">i", size) + header_bytes(18, 3, 1, flexible=True))
        assert wire.closed_by_server()
    assert rss_bytes(server_pid(kafka_server)) - before < 64 * MiB
    assert_still_serving(kafka_server, bystander)


@pytest.mark.parametrize(
    ("api_key", "version", "flexible"),
    [
        pytest.param(9999, 0, False, id="unknown-api-9999"),
        pytest.param(-1, 0, False, id="unknown-api-minus-one"),
        pytest.param(11, 7, True, id="join-group-not-implemented"),
        pytest.param(0, 2, False, id="produce-v2"),
        pytest.param(0, 12, True, id="produce-v12"),
        pytest.param(1, 99, True, id="fetch-v99"),
        pytest.param(1, 3, False, id="fetch-v3"),
        pytest.param(3, 14, True, id="metadata-v14"),
    ],
)
def test_unsupported_api_or_version_closes_only_its_connection(
    kafka_server: ServerProcess, bystander: Wire, api_key: int, version: int, flexible: bool
) -> None:
    with Wire(kafka_server.bootstrap) as wire:
        wire.send_raw(frame(header_bytes(api_key, version, 5, flexible=flexible) + b"\x00" * 16))
        with pytest.raises(ConnectionClosed):
            wire.read_frame()  # closed, with no response at all
    assert_still_serving(kafka_server, bystander)


def test_api_versions_at_an_unknown_version_answers_v0_with_the_versions(
    kafka_server: ServerProcess,
) -> None:
    with Wire(kafka_server.bootstrap) as wire:
        advertised = [
            (api.api_key, api.min_version, api.max_version)
            for api in wire.request(api_versions()).api_keys
        ]
        wire.send_raw(frame(header_bytes(18, 99, 4242, flexible=True) + b"\x00" * 8))
        correlation_id, response = wire.receive(ApiVersionsResponseV0)
        assert correlation_id == 4242
        assert response.error_code == UNSUPPORTED_VERSION
        assert [(a.api_key, a.min_version, a.max_version) for a in response.api_keys] == advertised
        served = {int(api.api_key): int(api.max_version) for api in response.api_keys}
        assert served == {int(key): high for key, (_, high) in SUPPORTED_VERSIONS.items()}
        assert_answers(wire)  # the connection stays open, as in Kafka


# -- Kafka errors, connection kept -------------------------------------------------------------


def _bad_crc() -> bytes:
    data = bytearray(batch())
    data[-1] ^= 0x01
    return bytes(data)


def _bad_magic() -> bytes:
    data = bytearray(batch())
    data[16] = 1  # magic is outside the CRC: only the magic check can refuse it
    return bytes(data)


def _batch_length_below_header() -> bytes:
    data = bytearray(batch())
    data[8:12] = struct.pack(">i", 20)
    return bytes(data)


def _unknown_codec() -> bytes:
    data = bytearray(batch())
    data[22] = (data[22] & ~0x07) | 0x05  # attributes, low byte: codec 5 does not exist
    return with_crc(data)


def _record_count_mismatch() -> bytes:
    data = bytearray(batch())
    data[57:61] = struct.pack(">i", 3)  # recordCount, with lastOffsetDelta 0
    return with_crc(data)


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        pytest.param(_bad_crc(), CORRUPT_MESSAGE, id="bad-crc"),
        pytest.param(_bad_magic(), INVALID_RECORD, id="magic-1"),
        # Kafka's iterator frames no batch in either: ProduceRequest.validateRecords
        # answers "must have at least one record batch per partition".
        pytest.param(batch()[:-5], INVALID_RECORD, id="batch-cut-short"),
        pytest.param(batch()[:30], INVALID_RECORD, id="header-only"),
        pytest.param(_batch_length_below_header(), CORRUPT_MESSAGE, id="batch-length-too-small"),
        pytest.param(_unknown_codec(), UNSUPPORTED_COMPRESSION_TYPE, id="unknown-codec"),
        pytest.param(_record_count_mismatch(), INVALID_RECORD, id="record-count-mismatch"),
        pytest.param(None, INVALID_RECORD, id="null-records"),
    ],
)
def test_invalid_batches_get_the_kafka_error(
    kafka_server: ServerProcess, bystander: Wire, topic: str, records: bytes | None, expected: int
) -> None:
    good = f"{topic}-good"
    with Wire(kafka_server.bootstrap) as wire:
        response = wire.request(produce({topic: records, good: batch()}))
        assert partition_error(response, 0) == expected
        assert partition_error(response, 1) == NONE  # the request's other partition is appended
        stored = wire.request(fetch(topic, 0)).responses[0].partitions[0]
        if records is None:  # refused before the topic is looked up: it is not created
            assert stored.error_code == UNKNOWN_TOPIC_OR_PARTITION
        else:
            assert (stored.error_code, stored.high_watermark) == (NONE, 0)
        assert_answers(wire)
    assert_still_serving(kafka_server, bystander)


def test_invalid_required_acks(kafka_server: ServerProcess, bystander: Wire, topic: str) -> None:
    """As Kafka's ReplicaManager.appendRecords: bad acks refuse the appends,
    after KafkaApis has answered what it answers first, an unknown topic
    and records ProduceRequest.validateRecords cannot frame."""
    corrupt = f"{topic}-corrupt"
    with Wire(kafka_server.bootstrap) as wire:
        wire.request(metadata(topic))
        wire.request(metadata(corrupt))
        response = wire.request(
            produce(
                {
                    topic: batch(),
                    f"{topic}-never-made": batch(),
                    corrupt: _batch_length_below_header(),
                },
                acks=5,
            )
        )
        assert partition_error(response) == INVALID_REQUIRED_ACKS
        assert partition_error(response, 1) == UNKNOWN_TOPIC_OR_PARTITION
        assert partition_error(response, 2) == CORRUPT_MESSAGE
        stored = wire.request(fetch(topic, 0)).responses[0].partitions[0]
        assert stored.high_watermark == 0  # nothing was appended
        assert_answers(wire)
    assert_still_serving(kafka_server, bystander)


@pytest.mark.parametrize("offset", [1000, 2, -1])
def test_fetch_outside_the_log_is_offset_out_of_range(
    kafka_server: ServerProcess, bystander: Wire, topic: str, offset: int
) -> None:
    with Wire(kafka_server.bootstrap) as wire:
        assert partition_error(wire.request(produce({topic: batch()}))) == NONE
        partition = wire.request(fetch(topic, offset)).responses[0].partitions[0]
        assert partition.error_code == OFFSET_OUT_OF_RANGE
        assert (partition.log_start_offset, partition.high_watermark) == (0, 1)
        assert not partition.records
        assert wire.request(fetch(topic, 0)).responses[0].partitions[0].records
    assert_still_serving(kafka_server, bystander)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("bad name!", id="space-and-bang"),
        pytest.param("", id="empty"),
        pytest.param(".", id="dot"),
        pytest.param("..", id="dot-dot"),
        pytest.param("a" * 250, id="250-chars"),
        pytest.param("a/b", id="slash"),
    ],
)
def test_metadata_for_an_invalid_topic_name(
    kafka_server: ServerProcess, bystander: Wire, name: str
) -> None:
    with Wire(kafka_server.bootstrap) as wire:
        (described,) = wire.request(metadata(name)).topics
        assert described.error_code == INVALID_TOPIC_EXCEPTION
        assert described.partitions == ()
        listed = {t.name for t in wire.request(all_metadata()).topics}
        assert name not in listed
    assert_still_serving(kafka_server, bystander)


@pytest.mark.parametrize("version", [10, 11])
@pytest.mark.parametrize(
    "topic_fields",
    [
        pytest.param({"name": None}, id="null-name"),
        pytest.param({"name": "named", "topic_id": uuid.uuid4()}, id="topic-id"),
    ],
)
def test_metadata_v10_v11_refuse_topic_ids(
    kafka_server: ServerProcess, bystander: Wire, version: int, topic_fields: dict[str, Any]
) -> None:
    """v10 and v11 carry a topic id and a nullable name but may use neither:
    every topic is answered INVALID_REQUEST, as Kafka does."""
    request = build(request_schema(3, version), topics=[topic_fields, {"name": "other"}])
    with Wire(kafka_server.bootstrap) as wire:
        response = wire.request(request)
        assert [t.error_code for t in response.topics] == [INVALID_REQUEST, INVALID_REQUEST]
        assert [t.name for t in response.topics] == [topic_fields["name"] or "", "other"]
        assert_answers(wire)
    assert_still_serving(kafka_server, bystander)


def create_topics(*counts: int, prefix: str, validate_only: bool = False) -> Any:
    return build(
        request_schema(19, 7),
        topics=[
            {"name": f"{prefix}-{i}", "num_partitions": count, "replication_factor": -1}
            for i, count in enumerate(counts)
        ],
        timeout=datetime.timedelta(seconds=10),
        validate_only=validate_only,
    )


@pytest.mark.parametrize(
    "counts",
    [
        pytest.param((2**31 - 1,), id="2^31-partitions"),
        pytest.param((6000, 6000), id="two-topics-over-10000"),
    ],
)
def test_create_topics_beyond_kafkas_record_bound_is_a_policy_violation(
    kafka_server: ServerProcess, bystander: Wire, topic: str, counts: tuple[int, ...]
) -> None:
    """Kafka's controller refuses an operation of more than 10,000 metadata
    records (a topic and each of its partitions are one)."""
    with Wire(kafka_server.bootstrap) as wire:
        response = wire.request(create_topics(*counts, prefix=topic))
        assert [t.error_code for t in response.topics] == [POLICY_VIOLATION] * len(counts)
        listed = {t.name for t in wire.request(all_metadata()).topics}
        assert not any(name.startswith(topic) for name in listed)
        # The bound itself is allowed: a topic and 9,999 partitions.
        within = wire.request(create_topics(9999, prefix=topic, validate_only=True))
        assert [t.error_code for t in within.topics] == [NONE]
    assert_still_serving(kafka_server, bystander)


def test_create_partitions_beyond_kafkas_record_bound_is_a_policy_violation(
    kafka_server: ServerProcess, bystander: Wire, topic: str
) -> None:
    unknown = f"{topic}-unknown"
    grow = build(
        request_schema(37, 3),
        topics=[{"name": topic, "count": 2**31 - 1, "assignments": None}],
        timeout=datetime.timedelta(seconds=10),
    )
    with Wire(kafka_server.bootstrap) as wire:
        wire.request(metadata(topic))
        (result,) = wire.request(grow).results
        assert result.error_code == POLICY_VIOLATION
        (described,) = wire.request(metadata(topic, auto_create=False)).topics
        assert len(described.partitions) == 1
        grow_unknown = build(
            request_schema(37, 3),
            topics=[{"name": unknown, "count": 3, "assignments": None}],
            timeout=datetime.timedelta(seconds=10),
        )
        (result,) = wire.request(grow_unknown).results
        assert result.error_code == UNKNOWN_TOPIC_OR_PARTITION
        assert unknown not in {t.name for t in wire.request(all_metadata()).topics}
    assert_still_serving(kafka_server, bystander)


def test_unknown_topic_without_auto_create(tmp_path: Path, topic: str) -> None:
    server = ServerProcess(tmp_path / "data", args=["--no-auto-create-topics"]).start()
    try:
        with Wire(server.bootstrap) as bystander, Wire(server.bootstrap) as wire:
            assert_answers(bystander)
            response = wire.request(produce({topic: batch()}))
            assert partition_error(response) == UNKNOWN_TOPIC_OR_PARTITION
            (described,) = wire.request(metadata(topic)).topics
            assert described.error_code == UNKNOWN_TOPIC_OR_PARTITION
            partition = wire.request(fetch(topic, 0)).responses[0].partitions[0]
            assert partition.error_code == UNKNOWN_TOPIC_OR_PARTITION
            assert topic not in {t.name for t in wire.request(all_metadata()).topics}
            assert_still_serving(server, bystander)
    finally:
        assert server.stop() == 0, server.log()


# -- a response that does not encode -------------------------------------------------------


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else None

    def writelines(self, parts: list[bytes]) -> None:
        self.written.append(b"".join(parts))

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def test_a_response_that_does_not_fit_its_schema_closes_only_its_connection(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler bug found at encoding time is treated like one raised by the
    handler: logged, that connection closed, its in-flight bytes released."""
    from engine.server import connection as connection_module
    from engine.server.server import Server

    answered: list[int] = []

    def dispatch(state: Any, header: Any, frame: Any, *_peer: Any) -> tuple[Any, Any]:
        answered.append(header.correlation_id)
        return header, {"topics": [{"name": None}]}  # a null name, which v10 cannot carry

    monkeypatch.setattr(connection_module, "dispatch", dispatch)
    monkeypatch.setattr(Server, "state", property(lambda server: None))
    server = Server(engine=ENGINELESS)  # dispatch is replaced
    connection = connection_module.Connection(server)
    transport = _Transport()
    connection.connection_made(transport)
    request = encode_request(build(request_schema(3, 10), topics=[{"name": "t"}]), 9)
    view = connection.get_buffer(len(request))
    view[: len(request)] = request
    connection.buffer_updated(len(request))
    assert answered == [9]
    assert transport.aborted
    assert transport.written == []
    assert (connection.inflight_bytes, server.inflight_bytes) == (0, 0)
    logged = [record.exc_info[1] for record in caplog.records if record.exc_info]
    assert [type(error) for error in logged] == [ValueError], caplog.text


# -- pipelining and back-pressure ---------------------------------------------------------------


def test_pipelined_requests_are_answered_in_order(kafka_server: ServerProcess, topic: str) -> None:
    """50 requests written back to back, mixing ones answered at once with
    ones that wait (durable appends, a Fetch long-poll): the responses come
    back in request order."""
    quiet = f"{topic}-quiet"
    requests: list[Any] = []
    for index in range(50):
        match index % 5:
            case 0:
                requests.append(produce({topic: batch()}))
            case 1:
                requests.append(api_versions())
            case 2:
                requests.append(
                    fetch(quiet, 0, max_wait=datetime.timedelta(milliseconds=200), min_bytes=1)
                )
            case 3:
                requests.append(metadata(topic, quiet))
            case _:
                requests.append(fetch(topic, 0))
    with Wire(kafka_server.bootstrap, timeout=30) as wire:
        wire.request(metadata(topic, quiet))
        correlation_ids = list(range(1000, 1050))
        wire.send_raw(
            b"".join(
                encode_request(request, cid)
                for request, cid in zip(requests, correlation_ids, strict=True)
            )
        )
        answered = []
        for request in requests:
            correlation_id, response = wire.receive(response_schema_for(request))
            answered.append(correlation_id)
            if request.__api_key__ == 0:  # Produce
                assert partition_error(response) == NONE
    assert answered == correlation_ids


def _send_until_blocked(sock: socket.socket, frames: list[bytes], stall: float) -> tuple[int, int]:
    """Writes ``frames`` without blocking until the socket stays unwritable
    for ``stall`` seconds; returns (frames fully sent, bytes accepted)."""
    sock.setblocking(False)
    accepted = 0
    for index, data in enumerate(frames):
        view = memoryview(data)
        while view:
            try:
                sent = sock.send(view)
            except BlockingIOError:
                _, writable, _ = select.select([], [sock], [], stall)
                if not writable:
                    sock.setblocking(True)
                    return index, accepted
                continue
            accepted += sent
            view = view[sent:]
    sock.setblocking(True)
    return len(frames), accepted


def test_a_client_that_does_not_read_cannot_make_the_server_buffer_without_bound(
    tmp_path: Path, topic: str
) -> None:
    """200 produce requests of 1 MB behind a Fetch that long-polls on another
    topic: their responses cannot be written before the Fetch's, so their
    bytes stay in flight. Past 4 MiB of them the server must stop reading
    the connection (the client's socket stops taking data) and its memory
    must not take in the rest; once the Fetch is answered, every request is
    answered, in order."""
    config = tmp_path / "tidelog.toml"
    config.write_text(f"[server]\nmax_connection_inflight_bytes = {4 * MiB}\n")
    server = ServerProcess(tmp_path / "data", args=["--config", str(config)]).start()
    waiting_topic = f"{topic}-waiting"
    count = 200
    record = batch(b"x" * 1_000_000)
    try:
        with Wire(server.bootstrap, timeout=60) as wire, Wire(server.bootstrap) as other:
            wire.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
            other.request(metadata(topic, waiting_topic))
            fetch_id = wire.send(
                fetch(waiting_topic, 0, max_wait=datetime.timedelta(seconds=120), min_bytes=1)
            )
            baseline = rss_bytes(server_pid(server))
            frames = [encode_request(produce({topic: record}), 100 + i) for i in range(count)]
            total = sum(len(f) for f in frames)

            sent_frames, accepted = _send_until_blocked(wire.sock, frames, stall=1.0)
            assert sent_frames < count, "the server read every request while none was answered"
            # In flight: the 4 MiB limit plus the request that crossed it; the
            # rest of what was accepted sits in the kernel's socket buffers.
            assert accepted < total // 2
            assert rss_bytes(server_pid(server)) - baseline < 96 * MiB

            # Data for the Fetch answers it, and the produce responses follow.
            assert partition_error(other.request(produce({waiting_topic: batch()}))) == NONE
            sent_of_next = accepted - sum(len(f) for f in frames[:sent_frames])
            wire.send_raw(frames[sent_frames][sent_of_next:])
            for data in frames[sent_frames + 1 :]:
                wire.send_raw(data)

            correlation_id, fetched = wire.receive(FetchResponse)
            assert correlation_id == fetch_id
            assert fetched.responses[0].partitions[0].records
            for index in range(count):
                correlation_id, response = wire.receive(ProduceResponse)
                assert correlation_id == 100 + index
                assert partition_error(response) == NONE
                assert response.responses[0].partition_responses[0].base_offset == index
    finally:
        assert server.stop() == 0, server.log()


def test_server_log_has_no_tracebacks(kafka_server: ServerProcess) -> None:
    """Last in the module: no request above made a handler fail."""
    assert "Traceback" not in kafka_server.log()
