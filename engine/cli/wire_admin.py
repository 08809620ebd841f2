"""What the operator commands over the wire share: the connection flags and
client config of ``tidelog consume`` (engine/cli/wire_replay.py), an
AdminClient, and waiting on its futures with a timeout, a broker's error
becoming a :class:`CommandError` (exit 1)."""

from __future__ import annotations

import argparse
from typing import Any

from engine.cli import client_log
from engine.cli.wire_replay import (
    _TIMEOUT_S,
    CANNOT_RUN,
    FAILED,
    CommandError,
    _client_config,
    _connection,
    _guarded,
    _kafka,
    kafka_reason,
)

__all__ = [
    "CANNOT_RUN",
    "FAILED",
    "TIMEOUT_S",
    "CommandError",
    "add_connection",
    "add_json",
    "admin",
    "client_config",
    "guarded",
    "kafka",
    "kafka_reason",
    "wait",
]

TIMEOUT_S = _TIMEOUT_S
add_connection = _connection
client_config = _client_config
guarded = _guarded
kafka = _kafka


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print JSON instead of a table (or tab-separated lines)"
    )


def admin(args: argparse.Namespace) -> tuple[Any, Any]:
    """(the confluent_kafka module, an AdminClient for ``args``)."""
    module = kafka()
    return module, client_log.watch(module.admin.AdminClient(client_config(args)))


def wait(module: Any, future: Any, what: str) -> Any:
    """The future's result; a broker's error (or no answer in time) is a
    :class:`CommandError` naming ``what``."""
    try:
        return future.result(TIMEOUT_S)
    except module.KafkaException as error:
        raise CommandError(f"{what}: {kafka_reason(error)}", FAILED) from error
    except TimeoutError as error:
        raise CommandError(f"{what}: no answer in {TIMEOUT_S:g} s", FAILED) from error
