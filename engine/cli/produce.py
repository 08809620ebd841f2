"""``tidelog produce TOPIC``: records from stdin, one a line, to any Kafka
broker with acks=all and an idempotent producer. Exit 0 when every record
was acknowledged, 1 when any delivery failed, 2 when the command cannot
run (a line that is not a record in ``--format json``: the lines before
it are sent, none after)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from engine.cli.help_format import HelpFormatter
from engine.cli.wire_admin import (
    CANNOT_RUN,
    FAILED,
    TIMEOUT_S,
    CommandError,
    add_connection,
    client_config,
    guarded,
    kafka,
    kafka_reason,
)


def add_command(commands: Any) -> None:
    parser = commands.add_parser(
        "produce",
        help="send records from stdin (one a line) to a topic on a Kafka broker",
        description=(
            "Send each line of stdin as one record to TOPIC, acks=all, idempotent. "
            "--format text: the line is the value; json: the line is "
            '{"key": .., "value": .., "headers": {..}} (key and headers optional; values are '
            "strings, or any JSON, sent as its text). Exit 1 if any delivery failed."
        ),
        epilog=(
            "example:\n  printf 'a\\nb\\n' | tidelog produce orders --key k1 --header src=cli "
            "--bootstrap-server 127.0.0.1:9092"
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("topic", metavar="TOPIC")
    add_connection(parser)
    parser.add_argument("--key", help="every record's key (text format)")
    parser.add_argument(
        "--header", action="append", default=[], metavar="K=V", help="on every record; repeatable"
    )
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text: a line is the value (default); json: a line is a record, as above",
    )
    parser.add_argument("--partition", type=int, metavar="N", help="default: the partitioner's")
    parser.set_defaults(run=lambda args: guarded(lambda: _produce(args, sys.stdin)))


def _produce(args: argparse.Namespace, lines: TextIO) -> None:
    module = kafka()
    headers = []
    for item in args.header:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise CommandError(f"--header {item!r}: expected K=V", CANNOT_RUN)
        headers.append((key, value.encode()))
    producer = module.Producer({**client_config(args), "acks": "all", "enable.idempotence": True})
    failures: list[str] = []
    sent = 0

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            failures.append(f"{message.topic()}-{message.partition()}: {error.str()}")

    extra = {} if args.partition is None else {"partition": args.partition}
    try:
        for number, raw in enumerate(lines, start=1):
            line = raw.rstrip("\n")
            if args.format == "json":
                key, value, own = _json_record(line, number)
                record_headers = headers + own
            else:
                key, value, record_headers = args.key, line, headers
            _send(module, producer, args.topic, key, value, record_headers, delivered, extra)
            sent += 1
    finally:
        left = producer.flush(TIMEOUT_S)
    if left:
        raise CommandError(f"{left} records were not acknowledged in {TIMEOUT_S:g} s", FAILED)
    if failures:
        raise CommandError(
            f"{len(failures)} of {sent} records failed: " + "; ".join(failures[:5]), FAILED
        )
    noun = "record" if sent == 1 else "records"
    print(f"tidelog produce: {sent} {noun} acknowledged", file=sys.stderr)


def _send(
    module: Any,
    producer: Any,
    topic: str,
    key: str | None,
    value: str | None,
    headers: list[tuple[str, bytes]],
    delivered: Any,
    extra: dict[str, int],
) -> None:
    while True:
        try:
            producer.produce(
                topic,
                value=None if value is None else value.encode(),
                key=None if key is None else key.encode(),
                headers=headers or None,
                on_delivery=delivered,
                **extra,
            )
            return
        except BufferError:
            producer.poll(0.1)  # the local queue is full: let deliveries drain it
        except module.KafkaException as error:
            raise CommandError(f"produce: {kafka_reason(error)}", FAILED) from error
        finally:
            producer.poll(0)


def _json_record(line: str, number: int) -> tuple[str | None, str | None, list[tuple[str, bytes]]]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise CommandError(f"stdin line {number}: not JSON: {error}", CANNOT_RUN) from error
    if not isinstance(record, dict) or not set(record) <= {"key", "value", "headers"}:
        raise CommandError(
            f'stdin line {number}: expected {{"key": .., "value": .., "headers": {{..}}}}',
            CANNOT_RUN,
        )
    headers = record.get("headers") or {}
    if not isinstance(headers, dict):
        raise CommandError(f"stdin line {number}: headers must be an object", CANNOT_RUN)
    return (
        _as_text(record.get("key")),
        _as_text(record.get("value")),
        [(str(k), (_as_text(v) or "").encode()) for k, v in headers.items()],
    )


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))
