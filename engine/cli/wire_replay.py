"""``tidelog snapshot`` and ``tidelog consume``: points in time and bounded
replay against any Kafka broker (tidelog or Kafka), over the wire.

``snapshot`` prints the OffsetVector of topics now (ListOffsets latest,
read committed: the last stable offset) or at a time (ListOffsets by
timestamp for T + 1: the first record after T). ``consume`` reads every
partition a vector names, from a start vector (else offset 0) up to the
vector, read committed, prints the records and exits (without a vector,
engine/cli/consume_open.py takes the command over). Both speak the wire
through confluent-kafka, the ``kafka`` extra (docs/memory.md, "Over the
wire"). Exit 0 when done, 1 on a broker error or a stall, 2 when the
command cannot run (bad arguments, confluent-kafka missing, records below
a partition's log start).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from engine import clock
from engine.cli import client_log
from engine.cli.help_format import HelpFormatter, examples
from engine.memory.vector import InvalidVector, OffsetVector, Position
from engine.topic_id import NO_TOPIC_ID, from_java_bits, uuid_text
from engine.types import TopicPartition

FAILED = 1
CANNOT_RUN = 2
_INSTALL = "confluent-kafka: pip install 'tidelog[kafka]'"
_NEEDS = "this command needs " + _INSTALL
_TIMEOUT_S = 30.0


class CommandError(Exception):
    """The command cannot go on; ``status`` is its exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def add_command(commands: Any) -> None:
    snapshot = commands.add_parser(
        "snapshot",
        help="print the offset vector of topics on a Kafka broker, now or at a time",
        description=(
            "Print the offset vector (docs/memory.md) of TOPICs on any Kafka broker: per "
            "partition the last stable offset now, or with --at the first offset whose "
            "record's timestamp is after the time. Needs " + _INSTALL + "."
        ),
        epilog=examples(
            "tidelog snapshot orders --bootstrap-server 127.0.0.1:9092 > vector.json",
            "tidelog snapshot orders payments --at 2026-12-01T09:00:00 "
            "--bootstrap-server 127.0.0.1:9092",
        ),
        formatter_class=HelpFormatter,
    )
    snapshot.add_argument("topics", nargs="+", metavar="TOPIC")
    _connection(snapshot)
    snapshot.add_argument(
        "--at",
        metavar="MS|ISO8601",
        help="a time: ms since the epoch, or ISO 8601 (UTC if no zone)",
    )
    snapshot.set_defaults(run=run_snapshot)

    consume = commands.add_parser(
        "consume",
        help="read topics on a Kafka broker: up to an offset vector, to the end, or following",
        description=(
            "Read, read committed, every partition of TOPICs that --until-vector names, from "
            "--from-vector (else offset 0) up to the vector, print the records and exit. "
            "Records below a partition's log start are an error (exit 2), never skipped. "
            "Without --until-vector: from --from-beginning, --offset, --from-time, the "
            "--group's committed offsets, else the end, up to the end each partition had at "
            "the start (--follow: on and on; --max-messages: stop sooner). Needs " + _INSTALL + "."
        ),
        epilog=(
            "examples:\n  tidelog consume orders --until-vector @vector.json "
            "--bootstrap-server 127.0.0.1:9092\n  tidelog consume orders --from-beginning "
            "--max-messages 10 --format text --bootstrap-server 127.0.0.1:9092"
        ),
        formatter_class=HelpFormatter,
    )
    consume.add_argument("topics", nargs="+", metavar="TOPIC")
    _connection(consume)
    consume.add_argument(
        "--until-vector",
        metavar="TEXT|@FILE",
        help="read exactly the records below this offset vector (JSON, or @file), then exit",
    )
    consume.add_argument(
        "--from-vector",
        metavar="TEXT|@FILE",
        help="with --until-vector: start at this offset vector (default: offset 0)",
    )
    consume.add_argument(
        "--format",
        choices=("json", "text"),
        default="json",
        help="json: a record per line, with its position and headers (default); text: the value",
    )
    consume.add_argument(
        "--timeout",
        type=float,
        default=_TIMEOUT_S,
        metavar="S",
        help=f"give up after S seconds without progress (default {_TIMEOUT_S:g})",
    )
    consume.set_defaults(run=run_consume)


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap-server",
        required=True,
        metavar="HOST:PORT",
        help="a broker of the cluster: tidelog serve, or any Kafka-compatible one",
    )
    parser.add_argument(
        "--property",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a librdkafka client property (security.protocol, sasl.*, ssl.*); repeatable",
    )


def run_snapshot(args: argparse.Namespace) -> int:
    return _guarded(lambda: _snapshot(args))


def run_consume(args: argparse.Namespace) -> int:
    return _guarded(lambda: _consume(args, sys.stdout))


def _guarded(command: Any) -> int:
    client_log.forget()
    try:
        command()
    except CommandError as error:
        seen = client_log.last_warning() if error.status == FAILED else None
        print(f"tidelog: {error}" + (f" ({seen})" if seen else ""), file=sys.stderr)
        return error.status
    return 0


def _client_config(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = {"bootstrap.servers": args.bootstrap_server}
    for item in args.property:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise CommandError(f"--property {item!r}: expected KEY=VALUE", CANNOT_RUN)
        config[key] = value
    if "debug" not in config:  # asked for, librdkafka's own lines go to stderr as they come
        config["logger"] = client_log.LOGGER
    return config


def kafka_reason(error: Any) -> str:
    """A KafkaException's reason, as its KafkaError words it (not the
    ``KafkaError{code=...}`` form of its str())."""
    inner = error.args[0] if error.args else None
    if inner is not None and hasattr(inner, "str"):
        return str(inner.str())
    return str(error)


def _kafka() -> Any:
    try:
        import confluent_kafka  # noqa: PLC0415 - an optional extra
        import confluent_kafka.admin  # noqa: PLC0415
    except ImportError as error:
        raise CommandError(_NEEDS, CANNOT_RUN) from error
    return confluent_kafka


def parse_time(text: str) -> int:
    """Milliseconds since the epoch from ``MS`` or an ISO 8601 time (UTC
    unless it names a zone)."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise CommandError(
            f"--at {text!r}: not ms since the epoch nor ISO 8601", CANNOT_RUN
        ) from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def read_vector(text: str, flag: str) -> OffsetVector:
    """A vector from its text, or from a file given as ``@path``."""
    try:
        raw = Path(text[1:]).read_text() if text.startswith("@") else text
        return OffsetVector.from_text(raw)
    except OSError as error:
        raise CommandError(f"{flag}: {error}", CANNOT_RUN) from error
    except InvalidVector as error:
        raise CommandError(f"{flag}: {error}", CANNOT_RUN) from error


def _partitions(kafka: Any, config: dict[str, Any], topics: list[str]) -> list[TopicPartition]:
    admin = client_log.watch(kafka.admin.AdminClient(config))
    try:
        metadata = admin.list_topics(timeout=_TIMEOUT_S)
    except kafka.KafkaException as error:
        reason = kafka_reason(error)
        raise CommandError(f"metadata: {reason}", FAILED) from error
    found: list[TopicPartition] = []
    for topic in topics:
        described = metadata.topics.get(topic)
        if described is None or described.error is not None:
            raise CommandError(f"topic {topic!r} does not exist", FAILED)
        found += [TopicPartition(topic, p) for p in sorted(described.partitions)]
    return found


def _list_offsets(
    kafka: Any, config: dict[str, Any], specs: dict[TopicPartition, Any]
) -> dict[TopicPartition, tuple[int, int]]:
    """ListOffsets, read committed: per partition (offset, leader epoch)."""
    admin = client_log.watch(kafka.admin.AdminClient(config))
    request = {kafka.TopicPartition(tp.topic, tp.partition): spec for tp, spec in specs.items()}
    futures = admin.list_offsets(
        request, isolation_level=kafka.IsolationLevel.READ_COMMITTED, request_timeout=_TIMEOUT_S
    )
    out: dict[TopicPartition, tuple[int, int]] = {}
    for ktp, future in futures.items():
        try:
            info = future.result(_TIMEOUT_S)
        except kafka.KafkaException as error:
            raise CommandError(
                f"ListOffsets {ktp.topic}-{ktp.partition}: {kafka_reason(error)}", FAILED
            ) from error
        epoch = info.leader_epoch if info.leader_epoch is not None else -1
        out[TopicPartition(ktp.topic, ktp.partition)] = (info.offset, epoch)
    return out


def _snapshot(args: argparse.Namespace) -> None:
    kafka = _kafka()
    config = _client_config(args)
    at = None if args.at is None else parse_time(args.at)
    partitions = _partitions(kafka, config, args.topics)
    spec = kafka.admin.OffsetSpec
    latest = _list_offsets(kafka, config, dict.fromkeys(partitions, spec.latest()))
    found = (
        {}
        if at is None
        else _list_offsets(kafka, config, dict.fromkeys(partitions, spec.for_timestamp(at + 1)))
    )
    positions: dict[TopicPartition, Position] = {}
    for tp in partitions:
        end, epoch = latest[tp]
        offset = found.get(tp, (-1, -1))[0]
        if 0 <= offset < end:
            # ListOffsets names the epoch of the first record left out; the
            # last one included may be older, so it is not claimed.
            positions[tp] = Position(offset, -1)
        else:
            positions[tp] = Position(end, epoch if end > 0 else -1)
    print(OffsetVector(positions).to_text())


def _consume(args: argparse.Namespace, out: TextIO) -> None:
    if args.until_vector is None:  # the other starts: engine/cli/consume_open.py
        raise CommandError("--until-vector is required", CANNOT_RUN)
    kafka = _kafka()
    config = _client_config(args)
    until = read_vector(args.until_vector, "--until-vector")
    since = read_vector(args.from_vector, "--from-vector") if args.from_vector else OffsetVector()
    wanted = set(args.topics)
    bounds = {tp: p.offset for tp, p in until.items() if tp.topic in wanted}
    starts = {tp: since[tp].offset if tp in since else 0 for tp in bounds}
    for tp, start in starts.items():
        if start > bounds[tp]:
            raise CommandError(
                f"{tp.topic}-{tp.partition}: --from-vector is past --until-vector", CANNOT_RUN
            )
    consumer = kafka.Consumer(
        {
            **config,
            "group.id": "tidelog-consume",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "error",
            "enable.partition.eof": True,
        }
    )
    named = {t: i for t in wanted for v in (until, since) if (i := v.topic_id(t)) != NO_TOPIC_ID}
    try:
        _check_topic_ids(kafka, config, named)
        _check_log_starts(kafka, consumer, starts, bounds)
        owed = {tp for tp in bounds if starts[tp] < bounds[tp]}
        consumer.assign([kafka.TopicPartition(tp.topic, tp.partition, starts[tp]) for tp in owed])
        _read(kafka, consumer, bounds, owed, args, out)
        # Ids are never reused: the same id after the read means the records
        # printed were the vector's topic's throughout.
        _check_topic_ids(kafka, config, named, after=True)
    finally:
        consumer.close()


def _check_topic_ids(
    kafka: Any, config: dict[str, Any], named: dict[str, bytes], *, after: bool = False
) -> None:
    """Exit 2 if a topic the vectors name by id (cut embedded) was deleted:
    a topic of the name now is another, whose records at the vector's
    offsets are not the ones it names (docs/memory.md, "Record references")."""
    if not named:
        return
    admin = client_log.watch(kafka.admin.AdminClient(config))
    described = admin.describe_topics(kafka.TopicCollection(sorted(named)))
    for topic, wanted in sorted(named.items()):
        try:
            uuid_ = described[topic].result(_TIMEOUT_S)
        except kafka.KafkaException as error:
            failure = error.args[0]
            if failure.code() != kafka.KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise CommandError(f"describing {topic}: {kafka_reason(error)}", FAILED) from error
            found = None
        else:
            topic_id = uuid_.topic_id
            found = from_java_bits(
                topic_id.get_most_significant_bits(), topic_id.get_least_significant_bits()
            )
        if found != wanted:
            meanwhile = (
                " while it was read: the records printed are not the vector's" if after else ""
            )
            raise CommandError(
                f"topic {topic!r} with id {uuid_text(wanted)} does not exist (deleted; a topic "
                f"of that name now, if any, is another){meanwhile}",
                CANNOT_RUN,
            )


def _check_log_starts(
    kafka: Any, consumer: Any, starts: dict[TopicPartition, int], bounds: dict[TopicPartition, int]
) -> None:
    for tp, start in starts.items():
        if start >= bounds[tp]:
            continue
        try:
            low, high = consumer.get_watermark_offsets(
                kafka.TopicPartition(tp.topic, tp.partition), timeout=_TIMEOUT_S
            )
        except kafka.KafkaException as error:
            reason = kafka_reason(error)
            raise CommandError(f"{tp.topic}-{tp.partition}: {reason}", FAILED) from error
        if start < low:
            raise CommandError(
                f"{tp.topic}-{tp.partition}: records from {start} were removed (log start {low})",
                CANNOT_RUN,
            )
        if bounds[tp] > high:
            raise CommandError(
                f"{tp.topic}-{tp.partition}: the vector's {bounds[tp]} is past the log end {high}",
                CANNOT_RUN,
            )


def _read(
    kafka: Any,
    consumer: Any,
    bounds: dict[TopicPartition, int],
    owed: set[TopicPartition],
    args: argparse.Namespace,
    out: TextIO,
) -> None:
    deadline = clock.monotonic() + args.timeout
    while owed:
        if clock.monotonic() > deadline:
            shown = ", ".join(f"{tp.topic}-{tp.partition}" for tp in sorted(owed))
            raise CommandError(f"no progress in {args.timeout:g} s on {shown}", FAILED)
        message = consumer.poll(0.5)
        if message is not None:
            error = message.error()
            if error is not None and error.code() != kafka.KafkaError._PARTITION_EOF:
                if error.code() == kafka.KafkaError._AUTO_OFFSET_RESET:
                    raise CommandError(f"records were removed meanwhile: {error}", CANNOT_RUN)
                raise CommandError(str(error), FAILED)
            tp = TopicPartition(message.topic(), message.partition())
            if error is not None and tp in owed and message.offset() >= bounds[tp]:
                owed.discard(tp)  # at the log's end, which is past the bound
            elif error is None and message.offset() < bounds[tp]:
                out.write(_line(message, args.format) + "\n")
                deadline = clock.monotonic() + args.timeout
        # The fetch position moves past markers and aborted records too.
        for position in consumer.position(
            [kafka.TopicPartition(tp.topic, tp.partition) for tp in owed]
        ):
            tp = TopicPartition(position.topic, position.partition)
            if position.offset >= bounds[tp]:
                owed.discard(tp)
                consumer.pause([position])
    out.flush()


def _line(message: Any, form: str) -> str:
    if form == "text":
        value = message.value()
        return "" if value is None else value.decode(errors="replace")
    return json.dumps(
        {
            "topic": message.topic(),
            "partition": message.partition(),
            "offset": message.offset(),
            "timestamp": message.timestamp()[1],
            "key": _text(message.key()),
            "value": _text(message.value()),
            "headers": [[k, _text(v)] for k, v in (message.headers() or [])],
        },
        separators=(",", ":"),
    )


def _text(raw: bytes | None) -> str | None:
    """UTF-8 text as is; other bytes as ``base64:...``."""
    if raw is None:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw).decode()
