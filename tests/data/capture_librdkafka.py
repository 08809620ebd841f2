"""Regenerates tests/data/librdkafka/: record batches exactly as librdkafka writes them.

    python tests/data/capture_librdkafka.py

Our record-batch code is checked against bytes a real client produced, not
only against our own encoder. This script runs a minimal Kafka broker on
127.0.0.1 that implements just what confluent-kafka's Producer needs to send
Produce requests — ApiVersions (v0-v3), Metadata (v1), InitProducerId (v0-v1,
for the idempotent run) and Produce (v3-v7) — and saves each partition's
`records` bytes verbatim, next to the records that were sent, once per
compression codec, and once more with enable.idempotence=true so the batches
carry a producer id, epoch and base sequences.

For each run, <name>.bin holds the batches concatenated as they arrived (two
batches: the records are produced in two rounds, flushed apart) and
<name>.json the records sent (keys, values and header values in base64,
timestamps), the producer config and the client versions. Regenerate after a
client upgrade and let tests/native/test_golden.py judge the new bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socketserver
import struct
import threading
from pathlib import Path
from typing import Any

import confluent_kafka

OUT = Path(__file__).parent / "librdkafka"
TOPIC = "golden"
UNSUPPORTED_VERSION = 35
SPLIT = 5  # records in the first batch
LARGE = 96 * 1024  # a repetitive value that compresses well; the files stay under 1 MiB
BASE_TIMESTAMP = 1_760_000_000_000
PRODUCER_ID, PRODUCER_EPOCH = 4242, 7  # what InitProducerId hands out

# (api key, min version, max version) this broker implements exactly. Fetch (1)
# and FindCoordinator (10) are advertised but never sent by a producer:
# librdkafka infers features from them — the v2 batch format needs Fetch v4,
# zstd Fetch v10, and lz4 FindCoordinator.
APIS = {18: (0, 3), 3: (1, 1), 22: (0, 1), 0: (3, 7), 1: (4, 10), 10: (0, 0)}


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str | None:
        length = self.take(">h")
        if length < 0:
            return None
        value = self.data[self.pos : self.pos + length].decode()
        self.pos += length
        return value

    def nullable_bytes(self) -> bytes | None:
        length = self.take(">i")
        if length < 0:
            return None
        value = self.data[self.pos : self.pos + length]
        self.pos += length
        return value

    def uvarint(self) -> int:
        shift = value = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.pos += self.uvarint()


def string(value: str) -> bytes:
    encoded = value.encode()
    return struct.pack(">h", len(encoded)) + encoded


def uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class Broker(socketserver.BaseRequestHandler):
    captured: list[bytes]
    next_offset: list[int]
    port: int

    def handle(self) -> None:
        while True:
            head = self._read(4)
            if head is None:
                return
            (size,) = struct.unpack(">i", head)
            body = self._read(size)
            if body is None:
                return
            request = Reader(body)
            api_key, version, correlation = (
                request.take(">h"),
                request.take(">h"),
                request.take(">i"),
            )
            request.string()  # client id
            if api_key == 18 and version >= 3:
                request.skip_tagged_fields()  # flexible request header (v2)
            response = self._answer(api_key, version, request)
            frame = struct.pack(">i", correlation) + response
            self.request.sendall(struct.pack(">i", len(frame)) + frame)

    def _read(self, size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            chunk = self.request.recv(size - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def _answer(self, api_key: int, version: int, request: Reader) -> bytes:
        if api_key == 18:
            return self._api_versions(version)
        if api_key == 3:
            return self._metadata(request)
        if api_key == 22:
            return struct.pack(">ihqh", 0, 0, PRODUCER_ID, PRODUCER_EPOCH)
        if api_key == 0:
            return self._produce(version, request)
        raise RuntimeError(f"unexpected api key {api_key}")

    def _api_versions(self, version: int) -> bytes:
        if version > 3:  # answered in v0 layout, as Kafka does, so the client retries lower
            entries = b"".join(struct.pack(">hhh", k, lo, hi) for k, (lo, hi) in APIS.items())
            return struct.pack(">hi", UNSUPPORTED_VERSION, len(APIS)) + entries
        if version < 3:
            entries = b"".join(struct.pack(">hhh", k, lo, hi) for k, (lo, hi) in APIS.items())
            tail = struct.pack(">i", 0) if version >= 1 else b""
            return struct.pack(">hi", 0, len(APIS)) + entries + tail
        entries = b"".join(struct.pack(">hhh", k, lo, hi) + b"\x00" for k, (lo, hi) in APIS.items())
        return (
            struct.pack(">h", 0) + uvarint(len(APIS) + 1) + entries + struct.pack(">i", 0) + b"\x00"
        )

    def _metadata(self, request: Reader) -> bytes:
        count = request.take(">i")
        topics = [request.string() for _ in range(max(count, 0))] or [TOPIC]
        brokers = struct.pack(">i", 1) + struct.pack(">i", 0) + string("127.0.0.1")
        brokers += struct.pack(">i", self.port) + struct.pack(">h", -1)
        body = brokers + struct.pack(">i", 0) + struct.pack(">i", len(topics))
        for name in topics:
            partition = (
                struct.pack(">hii", 0, 0, 0) + struct.pack(">ii", 1, 0) + struct.pack(">ii", 1, 0)
            )
            body += struct.pack(">h", 0) + string(name or TOPIC) + b"\x00"
            body += struct.pack(">i", 1) + partition
        return body

    def _produce(self, version: int, request: Reader) -> bytes:
        request.string()  # transactional id
        request.take(">h")  # acks
        request.take(">i")  # timeout
        out = b""
        topics = request.take(">i")
        out += struct.pack(">i", topics)
        for _ in range(topics):
            name = request.string() or ""
            partitions = request.take(">i")
            out += string(name) + struct.pack(">i", partitions)
            for _ in range(partitions):
                index = request.take(">i")
                records = request.nullable_bytes() or b""
                self.captured.append(records)
                # The idempotent producer checks that acknowledged offsets advance.
                base_offset = self.next_offset[0]
                self.next_offset[0] += record_count(records)
                out += struct.pack(">ihqq", index, 0, base_offset, -1)
                if version >= 5:
                    out += struct.pack(">q", 0)  # log start offset
        return out + struct.pack(">i", 0)  # throttle time


def record_count(records: bytes) -> int:
    """Records in concatenated v2 batches: batchLength at 8, recordCount at 57."""
    count = position = 0
    while position < len(records):
        (length,) = struct.unpack_from(">i", records, position + 8)
        count += struct.unpack_from(">i", records, position + 57)[0]
        position += 12 + length
    return count


def records_to_send() -> list[dict[str, Any]]:
    """The records, in order; each round (see SPLIT) holds something compressible,
    since librdkafka sends a batch uncompressed when compressing does not shrink it."""
    # SHA-256 in counter mode: deterministic bytes no codec can shrink.
    incompressible = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(64))
    return [
        {
            "key": b"order-1",
            "value": b'{"tool":"lookup","args":{"id":1}}',
            "headers": [("trace", b"t1")],
        },
        {"key": None, "value": b"null key", "headers": []},
        {"key": b"large", "value": (b"agent memory stream " * 4916)[:LARGE], "headers": []},
        {"key": b"null-value", "value": None, "headers": []},
        {"key": b"empty-value", "value": b"", "headers": [("h-null", None), ("h-empty", b"")]},
        {
            "key": bytes(range(256)),
            "value": bytes(range(255, -1, -1)),
            "headers": [("bin", b"\x00\xff")],
        },
        {
            "key": "clé-✓".encode(),
            "value": "décision: approuvé ✓".encode(),
            "headers": [("ünï", "çødé".encode()), ("trace", b"t2")],
        },
        {"key": b"incompressible", "value": incompressible, "headers": []},
        {"key": b"verdicts", "value": b'{"verdict":"allow"},' * 100, "headers": []},
    ]


def timestamp_of(index: int) -> int:
    # One record goes back in time, so a record's timestamp delta can be negative.
    return BASE_TIMESTAMP + index * 1000 - (2500 if index == 3 else 0)


def config_for(codec: str, idempotent: bool) -> dict[str, Any]:
    return {
        "compression.type": codec,
        "linger.ms": 200,  # records produced together land in one batch
        "enable.idempotence": idempotent,
        "acks": "all",
    }


def capture(config: dict[str, Any]) -> tuple[list[bytes], list[dict[str, Any]]]:
    captured: list[bytes] = []
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Broker)
    server.daemon_threads = True
    Broker.captured = captured
    Broker.next_offset = [0]
    Broker.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    producer = confluent_kafka.Producer({"bootstrap.servers": f"127.0.0.1:{Broker.port}", **config})
    sent = records_to_send()
    remaining = 0
    # Two rounds, flushed apart: two batches, so the files hold concatenated
    # batches and the idempotent one shows base sequences advancing.
    for round_ in (sent[:SPLIT], sent[SPLIT:]):
        for record in round_:
            index = sent.index(record)
            record["timestamp"] = timestamp_of(index)
            producer.produce(
                TOPIC,
                value=record["value"],
                key=record["key"],
                headers=record["headers"],
                timestamp=record["timestamp"],
                partition=0,
            )
        remaining += producer.flush(30)
    server.shutdown()
    server.server_close()
    if remaining:
        raise RuntimeError(f"{remaining} records were not delivered")
    return captured, sent


def b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


def main() -> None:
    OUT.mkdir(exist_ok=True)
    runs = [(codec, False) for codec in ("none", "gzip", "snappy", "lz4", "zstd")]
    runs.append(("lz4", True))
    for codec, idempotent in runs:
        config = config_for(codec, idempotent)
        requests, sent = capture(config)
        data = b"".join(requests)
        name = f"{codec}-idempotent" if idempotent else codec
        (OUT / f"{name}.bin").write_bytes(data)
        description = {
            "client": {
                "confluent-kafka": confluent_kafka.__version__,
                "librdkafka": confluent_kafka.libversion()[0],
            },
            "config": config,
            "init_producer_id": (
                {"producer_id": PRODUCER_ID, "producer_epoch": PRODUCER_EPOCH}
                if idempotent
                else None
            ),
            "produce_requests": len(requests),
            "bytes": len(data),
            "records": [
                {
                    "timestamp": r["timestamp"],
                    "key": b64(r["key"]),
                    "value": b64(r["value"]),
                    "headers": [[k, b64(v)] for k, v in r["headers"]],
                }
                for r in sent
            ],
        }
        (OUT / f"{name}.json").write_text(json.dumps(description, indent=1) + "\n")
        print(f"{name}: {len(data)} bytes in {len(requests)} produce request(s)")


if __name__ == "__main__":
    main()
