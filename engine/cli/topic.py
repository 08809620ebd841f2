"""``tidelog topic``: create, list, describe, alter and delete topics on any
Kafka broker (tidelog or Kafka) over the wire, with confluent-kafka's
AdminClient. Exit 0 when done, 1 when the broker refused, 2 when the
command cannot run."""

from __future__ import annotations

import argparse
from typing import Any

from engine.cli import table
from engine.cli.help_format import HelpFormatter
from engine.cli.wire_admin import (
    CANNOT_RUN,
    CommandError,
    add_connection,
    add_json,
    admin,
    guarded,
    wait,
)

_FORMATTER = HelpFormatter


def add_command(commands: Any) -> None:
    topic = commands.add_parser(
        "topic",
        help="create, list, describe, alter and delete topics on a Kafka broker",
        description="Manage topics on any Kafka broker over the wire.",
        epilog="example:\n  tidelog topic create orders -p 3 -c retention.ms=86400000 "
        "--bootstrap-server 127.0.0.1:9092",
        formatter_class=_FORMATTER,
    )
    actions = topic.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = _action(
        actions,
        "create",
        "create a topic",
        "tidelog topic create orders -p 3 -c cleanup.policy=compact --bootstrap-server H:P",
    )
    create.add_argument("name", metavar="NAME")
    create.add_argument(
        "-p", "--partitions", type=int, default=1, metavar="N", help="partitions (default 1)"
    )
    create.add_argument(
        "-r",
        "--replication-factor",
        type=int,
        default=1,
        metavar="N",
        help="replicas per partition (default 1; tidelog keeps one, on object storage)",
    )
    create.add_argument(
        "-c", "--config", action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    create.set_defaults(run=lambda args: guarded(lambda: _create(args)))

    listing = _action(actions, "list", "list topics", "tidelog topic list --bootstrap-server H:P")
    listing.add_argument("--internal", action="store_true", help="include internal topics")
    listing.set_defaults(run=lambda args: guarded(lambda: _list(args)))

    describe = _action(
        actions,
        "describe",
        "a topic's partitions, offsets and configs",
        "tidelog topic describe orders --json --bootstrap-server H:P",
    )
    describe.add_argument("name", metavar="NAME")
    describe.set_defaults(run=lambda args: guarded(lambda: _describe(args)))

    alter = _action(
        actions,
        "alter",
        "set or delete a topic's configs",
        "tidelog topic alter orders -c retention.ms=3600000 --delete cleanup.policy "
        "--bootstrap-server H:P",
    )
    alter.add_argument("name", metavar="NAME")
    alter.add_argument(
        "-c", "--config", action="append", default=[], metavar="KEY=VALUE", help="set; repeatable"
    )
    alter.add_argument(
        "--delete",
        action="append",
        default=[],
        metavar="KEY",
        help="back to the default; repeatable",
    )
    alter.set_defaults(run=lambda args: guarded(lambda: _alter(args)))

    delete = _action(
        actions, "delete", "delete topics", "tidelog topic delete orders --bootstrap-server H:P"
    )
    delete.add_argument("names", nargs="+", metavar="NAME")
    delete.set_defaults(run=lambda args: guarded(lambda: _delete(args)))


def _action(actions: Any, name: str, help_text: str, example: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = actions.add_parser(
        name,
        help=help_text,
        description=help_text[0].upper() + help_text[1:] + ".",
        epilog="example:\n  " + example,
        formatter_class=_FORMATTER,
    )
    add_connection(parser)
    add_json(parser)
    return parser


def parse_configs(items: list[str], flag: str = "-c") -> dict[str, str]:
    configs: dict[str, str] = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise CommandError(f"{flag} {item!r}: expected KEY=VALUE", CANNOT_RUN)
        configs[key] = value
    return configs


def _create(args: argparse.Namespace) -> None:
    if args.partitions < 1:
        raise CommandError("-p: a topic needs at least one partition", CANNOT_RUN)
    kafka, client = admin(args)
    new = kafka.admin.NewTopic(
        args.name,
        num_partitions=args.partitions,
        replication_factor=args.replication_factor,
        config=parse_configs(args.config),
    )
    wait(kafka, client.create_topics([new])[args.name], f"create {args.name}")
    table.emit_object(
        {"topic": args.name, "partitions": args.partitions, "created": True}, as_json=args.json
    )


def _list(args: argparse.Namespace) -> None:
    kafka, client = admin(args)
    metadata = wait(kafka, all_topics(client), "metadata")
    rows = [
        {"topic": name, "partitions": len(described.partitions)}
        for name, described in sorted(metadata.topics.items())
        if args.internal or not name.startswith("__")
    ]
    table.emit(rows, ("topic", "partitions"), as_json=args.json, title="topics")


def all_topics(client: Any) -> Any:
    """list_topics (every topic) as a future-like object, so :func:`wait`
    maps its errors."""
    return _Call(lambda timeout: client.list_topics(timeout=timeout))


class _Call:
    """A blocking call that looks like a future to :func:`wait`."""

    def __init__(self, call: Any) -> None:
        self._call = call

    def result(self, timeout: float) -> Any:
        return self._call(timeout)


def partition_offsets(kafka: Any, client: Any, topic: str, partitions: list[int]) -> Any:
    """{partition: (earliest, latest)} from ListOffsets."""
    spec = kafka.admin.OffsetSpec
    found: dict[int, list[int]] = {p: [0, 0] for p in partitions}
    for index, which in enumerate((spec.earliest(), spec.latest())):
        if not partitions:
            break
        futures = client.list_offsets({kafka.TopicPartition(topic, p): which for p in partitions})
        for tp, future in futures.items():
            found[tp.partition][index] = wait(kafka, future, f"offsets of {topic}").offset
    return {p: (low, high) for p, (low, high) in found.items()}


def _describe(args: argparse.Namespace) -> None:
    kafka, client = admin(args)
    # Every topic, not this one: a Metadata request naming a topic creates it
    # on a broker with auto.create.topics.enable.
    metadata = wait(kafka, all_topics(client), "metadata")
    described = metadata.topics.get(args.name)
    if described is None or described.error is not None:
        reason = "" if described is None else f": {described.error.str()}"
        raise CommandError(f"topic {args.name!r} does not exist{reason}", 1)
    numbers = sorted(described.partitions)
    offsets = partition_offsets(kafka, client, args.name, numbers)
    resource = kafka.admin.ConfigResource(kafka.admin.ResourceType.TOPIC, args.name)
    entries = wait(kafka, client.describe_configs([resource])[resource], "configs")
    partitions = [
        {
            "partition": p,
            "leader": described.partitions[p].leader,
            "replicas": list(described.partitions[p].replicas),
            "isr": list(described.partitions[p].isrs),
            "log_start_offset": offsets[p][0],
            "high_watermark": offsets[p][1],
        }
        for p in numbers
    ]
    configs = {
        name: {
            "value": entry.value,
            "source": kafka.admin.ConfigSource(entry.source).name,
            "default": entry.is_default,
        }
        for name, entry in sorted(entries.items())
    }
    if args.json:
        table.emit_object(
            {"topic": args.name, "partitions": partitions, "configs": configs}, as_json=True
        )
        return
    table.emit(
        partitions,
        ("partition", "leader", "replicas", "isr", "log_start_offset", "high_watermark"),
        as_json=False,
        title=f"{args.name}: partitions",
    )
    table.emit(
        [{"config": k, **v} for k, v in configs.items() if not v["default"]],
        ("config", "value", "source"),
        as_json=False,
        title=f"{args.name}: configs (set)",
    )


def _alter(args: argparse.Namespace) -> None:
    setting = parse_configs(args.config)
    if not setting and not args.delete:
        raise CommandError("alter: nothing to change (-c KEY=VALUE or --delete KEY)", CANNOT_RUN)
    kafka, client = admin(args)
    op = kafka.admin.AlterConfigOpType
    entries = [
        kafka.admin.ConfigEntry(k, v, incremental_operation=op.SET) for k, v in setting.items()
    ] + [kafka.admin.ConfigEntry(k, None, incremental_operation=op.DELETE) for k in args.delete]
    resource = kafka.admin.ConfigResource(
        kafka.admin.ResourceType.TOPIC, args.name, incremental_configs=entries
    )
    wait(kafka, client.incremental_alter_configs([resource])[resource], f"alter {args.name}")
    table.emit_object(
        {"topic": args.name, "set": setting, "deleted": list(args.delete)}, as_json=args.json
    )


def _delete(args: argparse.Namespace) -> None:
    kafka, client = admin(args)
    futures = client.delete_topics(list(args.names))
    for name in args.names:
        wait(kafka, futures[name], f"delete {name}")
    table.emit(
        [{"topic": n, "deleted": True} for n in args.names], ("topic", "deleted"), as_json=args.json
    )
