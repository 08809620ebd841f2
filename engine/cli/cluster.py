"""``tidelog cluster info``: who a Kafka broker says the cluster is — its
id, controller, brokers, how many topics and partitions it holds — and
which API versions the bootstrap broker serves (ApiVersions v0, asked on a
plain socket when the connection needs no TLS or SASL)."""

from __future__ import annotations

import argparse
import socket
import struct
from typing import Any

from engine.cli import table
from engine.cli.help_format import HelpFormatter
from engine.cli.topic import all_topics
from engine.cli.wire_admin import (
    FAILED,
    TIMEOUT_S,
    CommandError,
    add_connection,
    add_json,
    admin,
    client_config,
    guarded,
    wait,
)

_API_VERSIONS = 18
# An ApiVersions answer lists under a hundred keys of 6 bytes each.
_MAX_ANSWER = 64 * 1024


def add_command(commands: Any) -> None:
    cluster = commands.add_parser(
        "cluster",
        help="what a Kafka broker says about its cluster",
        description="Describe the cluster a Kafka broker belongs to.",
        epilog="example:\n  tidelog cluster info --bootstrap-server 127.0.0.1:9092",
        formatter_class=HelpFormatter,
    )
    actions = cluster.add_subparsers(dest="action", metavar="ACTION", required=True)
    info = actions.add_parser(
        "info",
        help="brokers, controller, cluster id, topic/partition counts, API versions",
        description=(
            "Print the cluster id, the controller, the brokers, the number of topics and "
            "partitions, and the API versions the bootstrap broker serves."
        ),
        epilog="example:\n  tidelog cluster info --json --bootstrap-server 127.0.0.1:9092",
        formatter_class=HelpFormatter,
    )
    add_connection(info)
    add_json(info)
    info.set_defaults(run=lambda args: guarded(lambda: _info(args)))


def _info(args: argparse.Namespace) -> None:
    kafka, client = admin(args)
    described = wait(kafka, client.describe_cluster(), "describe cluster")
    metadata = wait(kafka, all_topics(client), "metadata")
    topics = [t for name, t in metadata.topics.items() if not name.startswith("__")]
    config = client_config(args)
    plain = config.get("security.protocol", "plaintext").lower() == "plaintext"
    versions = api_versions(args.bootstrap_server) if plain else None
    info = {
        "cluster_id": described.cluster_id,
        "controller": None if described.controller is None else described.controller.id,
        "brokers": [
            {"id": node.id, "host": node.host, "port": node.port, "rack": node.rack}
            for node in sorted(described.nodes, key=lambda n: n.id)
        ],
        "topics": len(topics),
        "partitions": sum(len(t.partitions) for t in topics),
        "api_versions": versions,
    }
    if args.json:
        table.emit_object(info, as_json=True)
        return
    summary = {k: v for k, v in info.items() if k not in ("brokers", "api_versions")}
    summary["api_keys"] = "-" if versions is None else len(versions)
    table.emit_object(summary, as_json=False)
    table.emit(info["brokers"], ("id", "host", "port", "rack"), as_json=False, title="brokers")
    if versions is not None:
        table.emit(versions, ("key", "min", "max"), as_json=False, title="API versions")


def api_versions(bootstrap: str) -> list[dict[str, int]]:
    """[{key, min, max}] from an ApiVersions v0 request (every broker answers
    v0, whatever it serves)."""
    first = bootstrap.split(",", maxsplit=1)[0].strip()
    host, _, port = first.rpartition(":")
    host = host.strip("[]")  # an IPv6 address: [::1]:9092
    body = struct.pack(">hhih", _API_VERSIONS, 0, 1, len(b"tidelog")) + b"tidelog"
    try:
        with socket.create_connection((host, int(port)), timeout=TIMEOUT_S) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            (size,) = struct.unpack(">i", _exactly(sock, 4))
            if not 10 <= size <= _MAX_ANSWER:
                raise CommandError(f"ApiVersions: an answer of {size} bytes", FAILED)
            answer = _exactly(sock, size)
    except (OSError, ValueError) as error:
        raise CommandError(f"ApiVersions to {bootstrap}: {error}", FAILED) from error
    _, code, count = struct.unpack_from(">ihi", answer)
    if code != 0 or not 0 <= count <= (size - 10) // 6:
        raise CommandError(f"ApiVersions: error code {code}", FAILED)
    return [
        dict(
            zip(("key", "min", "max"), struct.unpack_from(">hhh", answer, 10 + 6 * i), strict=True)
        )
        for i in range(count)
    ]


def _exactly(sock: socket.socket, size: int) -> bytes:
    parts = bytearray()
    while len(parts) < size:
        chunk = sock.recv(size - len(parts))
        if not chunk:
            raise ValueError("the broker closed the connection")
        parts += chunk
    return bytes(parts)
