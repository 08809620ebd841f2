"""``tidelog consume`` without ``--until-vector``: read topics from a start
(``--from-beginning``, ``--offset N``, ``--from-time``, a group's committed
offsets, else the end) up to the end each partition had when the command
began, or on with ``--follow``; ``--max-messages`` stops sooner. With
``--group`` the offsets read up to are committed under that group when the
command ends (as Kafka's console consumer leaves its group's offsets)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any, TextIO

from engine import clock
from engine.cli.wire_replay import (
    _TIMEOUT_S,
    CANNOT_RUN,
    FAILED,
    CommandError,
    _client_config,
    _guarded,
    _kafka,
    _line,
    _partitions,
    kafka_reason,
    parse_time,
    run_consume,
)
from engine.types import TopicPartition

_CONSUMER_GROUP = "tidelog-consume"
_NEVER = 2**63 - 1


def add_flags(commands: Any) -> None:
    """Adds the open-ended flags to ``tidelog consume`` (made by
    engine/cli/wire_replay.py) and takes over running it."""
    consume = commands.choices["consume"]
    consume.add_argument("--from-beginning", action="store_true", help="start at the log start")
    consume.add_argument("--offset", type=int, metavar="N", help="start at offset N")
    consume.add_argument(
        "--from-time", metavar="MS|ISO8601", help="start at the first record at or after it"
    )
    consume.add_argument("--follow", action="store_true", help="go on reading new records")
    consume.add_argument("--max-messages", type=int, metavar="N", help="stop after N records")
    consume.add_argument(
        "--group", metavar="GROUP", help="start at and commit this group's offsets"
    )
    consume.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    def command() -> None:
        check_flags(args)
        if args.until_vector is None:
            consume_open(_kafka(), _client_config(args), args, sys.stdout)

    status = _guarded(command)
    if status != 0 or args.until_vector is None:
        return status
    return run_consume(args)


def check_flags(args: argparse.Namespace) -> None:
    """The open-ended flags, refused beside ``--until-vector``."""
    starts = [args.from_beginning, args.offset is not None, args.from_time is not None]
    if sum(starts) > 1:
        raise CommandError("choose one of --from-beginning, --offset and --from-time", CANNOT_RUN)
    open_ended = any(starts) or args.follow or args.group or args.max_messages is not None
    if args.until_vector is not None and open_ended:
        raise CommandError(
            "--until-vector reads from --from-vector: --from-beginning, --offset, --from-time, "
            "--follow, --max-messages and --group do not apply",
            CANNOT_RUN,
        )
    if args.from_time is not None:
        try:
            parse_time(args.from_time)
        except CommandError as error:
            raise CommandError(
                f"--from-time {args.from_time!r}: not ms nor ISO 8601", CANNOT_RUN
            ) from error
    if args.until_vector is None and args.from_vector is not None:
        raise CommandError("--from-vector needs --until-vector", CANNOT_RUN)
    if args.max_messages is not None and args.max_messages < 1:
        raise CommandError("--max-messages: at least 1", CANNOT_RUN)


def consume_open(kafka: Any, config: dict[str, Any], args: argparse.Namespace, out: TextIO) -> None:
    partitions = _partitions(kafka, config, args.topics)
    consumer = kafka.Consumer(
        {
            **config,
            "group.id": args.group or _CONSUMER_GROUP,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )
    try:
        starts, ends = _starts_and_ends(kafka, consumer, partitions, args)
        owed = {tp for tp in partitions if args.follow or starts[tp] < ends[tp]}
        consumer.assign(
            [kafka.TopicPartition(tp.topic, tp.partition, starts[tp]) for tp in partitions]
        )
        positions = _read(kafka, consumer, ends, owed, args, out)
        if args.group:
            read = [
                kafka.TopicPartition(tp.topic, tp.partition, offset)
                for tp, offset in {**starts, **positions}.items()
            ]
            try:
                consumer.commit(offsets=read, asynchronous=False)
            except kafka.KafkaException as error:
                reason = kafka_reason(error)
                raise CommandError(f"commit to group {args.group}: {reason}", FAILED) from error
    finally:
        consumer.close()


def _starts_and_ends(
    kafka: Any, consumer: Any, partitions: list[TopicPartition], args: argparse.Namespace
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    starts: dict[TopicPartition, int] = {}
    ends: dict[TopicPartition, int] = {}
    for tp in partitions:
        try:
            low, high = consumer.get_watermark_offsets(
                kafka.TopicPartition(tp.topic, tp.partition), timeout=_TIMEOUT_S
            )
        except kafka.KafkaException as error:
            reason = kafka_reason(error)
            raise CommandError(f"{tp.topic}-{tp.partition}: {reason}", FAILED) from error
        ends[tp] = _NEVER if args.follow else high
        if args.from_beginning:
            starts[tp] = low
        elif args.offset is not None:
            starts[tp] = min(max(args.offset, low), high)
        else:
            starts[tp] = high
    wanted = [kafka.TopicPartition(tp.topic, tp.partition) for tp in partitions]
    try:
        if args.from_time is not None:
            at = parse_time(args.from_time)
            found = consumer.offsets_for_times(
                [kafka.TopicPartition(t.topic, t.partition, at) for t in wanted],
                timeout=_TIMEOUT_S,
            )
            for ktp in found:
                if ktp.offset >= 0:  # else no record at or after it: the end
                    starts[TopicPartition(ktp.topic, ktp.partition)] = ktp.offset
        elif args.group and not args.from_beginning and args.offset is None:
            for ktp in consumer.committed(wanted, timeout=_TIMEOUT_S):
                if ktp.offset >= 0:
                    starts[TopicPartition(ktp.topic, ktp.partition)] = ktp.offset
    except kafka.KafkaException as error:
        reason = kafka_reason(error)
        raise CommandError(f"start offsets: {reason}", FAILED) from error
    return starts, ends


def _read(
    kafka: Any,
    consumer: Any,
    ends: dict[TopicPartition, int],
    owed: set[TopicPartition],
    args: argparse.Namespace,
    out: TextIO,
) -> dict[TopicPartition, int]:
    """Prints records until every owed partition reached its end (never,
    with --follow) or --max-messages were printed; returns the offset after
    the last record printed per partition."""
    positions: dict[TopicPartition, int] = {}
    # Ctrl-C is how --follow stops: what was printed is committed, with --group.
    with contextlib.suppress(KeyboardInterrupt):
        _print(kafka, consumer, ends, owed, args, out, positions)
    return positions


def _print(
    kafka: Any,
    consumer: Any,
    ends: dict[TopicPartition, int],
    owed: set[TopicPartition],
    args: argparse.Namespace,
    out: TextIO,
    positions: dict[TopicPartition, int],
) -> None:
    printed = 0
    deadline = clock.monotonic() + args.timeout
    while owed and (args.max_messages is None or printed < args.max_messages):
        if not args.follow and clock.monotonic() > deadline:
            shown = ", ".join(f"{tp.topic}-{tp.partition}" for tp in sorted(owed))
            raise CommandError(f"no progress in {args.timeout:g} s on {shown}", FAILED)
        message = consumer.poll(0.5)
        if message is None:
            continue
        error = message.error()
        tp = TopicPartition(message.topic(), message.partition())
        if error is not None:
            if error.code() != kafka.KafkaError._PARTITION_EOF:
                raise CommandError(str(error), FAILED)
            if message.offset() >= ends.get(tp, _NEVER):
                owed.discard(tp)
            continue
        if message.offset() >= ends[tp]:
            owed.discard(tp)
            consumer.pause([kafka.TopicPartition(tp.topic, tp.partition)])
            continue
        out.write(_line(message, args.format) + "\n")
        out.flush()
        printed += 1
        positions[tp] = message.offset() + 1
        deadline = clock.monotonic() + args.timeout
        if message.offset() + 1 >= ends[tp]:
            owed.discard(tp)
