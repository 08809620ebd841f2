"""kafka_bench's fetch-session phase: a consumer of many partitions, with
incremental fetch sessions (KIP-227) and without, on two servers that
differ only in ``max.incremental.fetch.session.cache.slots`` (1000, Kafka's
default, and 0: no room, so the client keeps sending full fetches).

The consumer is a wire-level client that fetches as the Java client's
FetchSessionHandler does: a full fetch (session id 0, epoch 0) first; while
the server keeps a session, incremental fetches that name only the
partitions whose position moved; when it does not, a full fetch each time.
Before each fetch one record is produced to one partition, in turn, so each
fetch has something to return, as for a consumer of sparse traffic over many
partitions. Fetches do not wait (max_wait 0), so the loop measures the cost
of a fetch, not the long poll.

Per fetch: request bytes and response bytes on the wire, and the server's
CPU time (user + system, /proc/PID/stat) over the loop, with sessions beside
without, from the same run.
"""

from __future__ import annotations

import datetime
import io
import socket
import struct
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from kio.index import load_request_schema, load_response_schema
from kio.schema.request_header.v2 import RequestHeader
from kio.serial import entity_reader, entity_writer
from kio.static.primitive import i16, i32

import native
from native import RecordSpec

FETCH_VERSION = 13
PRODUCE_VERSION = 9
CREATE_TOPICS_VERSION = 7
TOPIC = "bench-fetch-sessions"
MIB = 1 << 20
TIMEOUT_S = 30.0
_SIZE = struct.Struct(">i")


class Server(Protocol):
    address: str

    def start(self) -> None: ...
    def wait_ready(self) -> None: ...
    def stop(self) -> int: ...
    def kill(self) -> None: ...
    def cpu_seconds(self) -> float: ...


class Wire:
    """One connection: kio-encoded requests (flexible header v2), one at a time."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=TIMEOUT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.correlation_id = 0

    def close(self) -> None:
        self.sock.close()

    def request(self, body: Any) -> tuple[Any, int, int]:
        """The response to ``body``, and the bytes sent and received."""
        self.correlation_id += 1
        out = io.BytesIO()
        entity_writer(RequestHeader)(
            out,
            RequestHeader(
                request_api_key=body.__api_key__,
                request_api_version=body.__version__,
                correlation_id=i32(self.correlation_id),
                client_id="kafka-bench",
            ),
        )
        entity_writer(type(body))(out, body)
        payload = out.getvalue()
        self.sock.sendall(_SIZE.pack(len(payload)) + payload)
        size = _SIZE.unpack(self._read(4))[0]
        frame = self._read(size)
        schema: Any = load_response_schema(body.__api_key__, body.__version__)
        _, offset = entity_reader(schema.__header_schema__)(frame, 0)
        response, _ = entity_reader(schema)(frame, offset)
        return response, 4 + len(payload), 4 + size

    def _read(self, size: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < size:
            chunk = self.sock.recv(size - len(chunks))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            chunks += chunk
        return bytes(chunks)


def _create_topic(wire: Wire, partitions: int) -> uuid.UUID:
    s = _schemas(19, CREATE_TOPICS_VERSION)
    body = s["CreateTopicsRequest"](
        topics=(
            s["CreatableTopic"](
                name=TOPIC,
                num_partitions=i32(partitions),
                replication_factor=i16(1),
                assignments=(),
                configs=(),
            ),
        ),
        timeout=datetime.timedelta(seconds=30),
        validate_only=False,
    )
    response, _, _ = wire.request(body)
    [created] = response.topics
    if created.error_code != 0:
        raise RuntimeError(f"creating {TOPIC}: error {created.error_code}")
    topic_id: uuid.UUID = created.topic_id
    return topic_id


def _schemas(key: int, version: int) -> dict[str, Any]:
    """The request schema of (key, version) and its nested entity classes, by name."""
    schema: Any = load_request_schema(key, version)
    module = __import__(schema.__module__, fromlist=["*"])
    return {name: value for name, value in vars(module).items() if isinstance(value, type)}


class SessionConsumer:
    """Fetches every partition of one topic as the Java client does (see the
    module's docstring), and counts what it sends and receives."""

    def __init__(self, wire: Wire, topic_id: uuid.UUID, partitions: int) -> None:
        self.wire = wire
        self.topic_id = topic_id
        self.positions = dict.fromkeys(range(partitions), 0)
        self.sent_positions: dict[int, int] = {}
        self.session_id = 0
        self.epoch = 0
        self.requests = self.request_bytes = self.response_bytes = 0
        self.incremental = 0
        self.records_bytes = 0
        self.schemas = _schemas(1, FETCH_VERSION)

    def fetch(self) -> None:
        if self.session_id == 0:
            changed = self.positions
            self.sent_positions = dict(self.positions)
        else:
            changed = {p: o for p, o in self.positions.items() if self.sent_positions[p] != o}
            self.sent_positions.update(changed)
            self.incremental += 1
        s = self.schemas
        body = s["FetchRequest"](
            replica_id=i32(-1),
            max_wait=datetime.timedelta(0),
            min_bytes=i32(0),
            max_bytes=i32(50 * MIB),
            isolation_level=0,
            session_id=i32(self.session_id),
            session_epoch=i32(self.epoch),
            topics=(
                s["FetchTopic"](
                    topic_id=self.topic_id,
                    partitions=tuple(
                        s["FetchPartition"](
                            partition=i32(p),
                            current_leader_epoch=i32(-1),
                            fetch_offset=offset,
                            last_fetched_epoch=i32(-1),
                            log_start_offset=-1,
                            partition_max_bytes=i32(MIB),
                        )
                        for p, offset in changed.items()
                    ),
                ),
            )
            if changed
            else (),
            forgotten_topics_data=(),
            rack_id="",
        )
        response, sent, received = self.wire.request(body)
        self.requests += 1
        self.request_bytes += sent
        self.response_bytes += received
        if response.error_code != 0:
            raise RuntimeError(f"fetch error {response.error_code}")
        for topic in response.responses:
            for partition in topic.partitions:
                records = partition.records
                if records:
                    self.records_bytes += len(records)
                    self.positions[partition.partition_index] = partition.high_watermark
        if response.session_id == 0:
            self.session_id, self.epoch = 0, 0
        else:
            self.session_id = response.session_id
            self.epoch = self.epoch + 1


def _produce(wire: Wire, partition: int) -> None:
    s = _schemas(0, PRODUCE_VERSION)
    batch = native.encode_batch([RecordSpec(1_700_000_000_000, b"k", b"v" * 100, ())])
    body = s["ProduceRequest"](
        transactional_id=None,
        acks=i16(1),
        timeout=datetime.timedelta(seconds=30),
        topic_data=(
            s["TopicProduceData"](
                name=TOPIC,
                partition_data=(s["PartitionProduceData"](index=i32(partition), records=batch),),
            ),
        ),
    )
    response, _, _ = wire.request(body)
    error = response.responses[0].partition_responses[0].error_code
    if error != 0:
        raise RuntimeError(f"produce error {error}")


def _one_side(server: Server, partitions: int, fetches: int) -> dict[str, float]:
    server.start()
    try:
        server.wait_ready()
        wire = Wire(server.address)
        try:
            consumer = SessionConsumer(wire, _create_topic(wire, partitions), partitions)
            consumer.fetch()  # the full fetch that opens the session (or not)
            cpu = server.cpu_seconds()
            started = time.perf_counter()
            for n in range(fetches):
                _produce(wire, (n * 7) % partitions)
                consumer.fetch()
            seconds = time.perf_counter() - started
            server_cpu = server.cpu_seconds() - cpu
        finally:
            wire.close()
        if server.stop() != 0:
            raise RuntimeError("the server did not exit cleanly")
    finally:
        server.kill()
    return {
        "request_bytes": (consumer.request_bytes) / consumer.requests,
        "response_bytes": consumer.response_bytes / consumer.requests,
        "server_cpu_ms": 1000 * server_cpu / fetches,
        "fetches_s": fetches / seconds,
        "incremental": consumer.incremental,
    }


def fetch_sessions_phase(
    make_server: Callable[[str, Path], Server], scratch: Path, partitions: int, fetches: int
) -> dict[str, Any]:
    """Both sides, each on a server of its own (``make_server(name, config)``)."""
    results: dict[str, Any] = {"fs_partitions": partitions, "fs_fetches": fetches}
    for side, slots in (("on", 1000), ("off", 0)):
        config = scratch / f"fetch-sessions-{side}.toml"
        config.write_text(f'[server]\n"max.incremental.fetch.session.cache.slots" = {slots}\n')
        figures = _one_side(make_server(f"fetch-sessions-{side}", config), partitions, fetches)
        for key, value in figures.items():
            results[f"fs_{side}_{key}"] = round(value, 3)
    if results["fs_on_incremental"] == 0 or results["fs_off_incremental"] != 0:
        raise RuntimeError(f"sessions were not used as configured: {results}")
    for key in ("request_bytes", "response_bytes", "server_cpu_ms"):
        results[f"fs_{key}_on_vs_off"] = round(
            results[f"fs_on_{key}"] / results[f"fs_off_{key}"], 3
        )
    return results


def print_fetch_sessions(results: dict[str, Any]) -> None:
    if "fs_partitions" not in results:
        return
    print(
        f"\nfetch sessions, a consumer of {results['fs_partitions']:,} partitions, "
        f"{results['fs_fetches']:,} fetches (one record produced before each):"
    )
    for side, label in (("on", "incremental"), ("off", "full (no slots)")):
        print(
            f"  {label:<16} request {results[f'fs_{side}_request_bytes']:>10,.0f} B, response "
            f"{results[f'fs_{side}_response_bytes']:>10,.0f} B, server CPU "
            f"{results[f'fs_{side}_server_cpu_ms']:.3f} ms per fetch"
        )
    print(
        f"  on/off: request bytes {results['fs_request_bytes_on_vs_off']:.3f}, response bytes "
        f"{results['fs_response_bytes_on_vs_off']:.3f}, server CPU "
        f"{results['fs_server_cpu_ms_on_vs_off']:.3f}"
    )
