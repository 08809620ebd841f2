"""``tidelog group``: list, describe, show the lag of, reset the offsets of
and delete consumer groups on any Kafka broker, as Kafka's
kafka-consumer-groups.sh does (ConsumerGroupCommand): lag is the log end
offset less the committed offset; reset-offsets is a dry run unless
``--execute``, and the broker refuses it while the group has members; a
group the broker does not know is said not to exist (exit 1) by describe,
lag and delete. reset-offsets takes one, as Kafka's tool does (a Dead group
may be reset): it is how a group's offsets are set before its first member
starts."""

from __future__ import annotations

import argparse
from typing import Any

from engine.cli import table
from engine.cli.help_format import HelpFormatter
from engine.cli.topic import all_topics, partition_offsets
from engine.cli.wire_admin import (
    CANNOT_RUN,
    FAILED,
    TIMEOUT_S,
    CommandError,
    add_connection,
    add_json,
    admin,
    guarded,
    wait,
)
from engine.cli.wire_replay import parse_time

_FORMATTER = HelpFormatter
_LAG_COLUMNS = ("group", "topic", "partition", "committed", "log_end_offset", "lag")


def add_command(commands: Any) -> None:
    group = commands.add_parser(
        "group",
        help="list, describe, lag, reset-offsets and delete consumer groups on a Kafka broker",
        description="Manage consumer groups on any Kafka broker over the wire.",
        epilog="example:\n  tidelog group lag billing --bootstrap-server 127.0.0.1:9092",
        formatter_class=_FORMATTER,
    )
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    _action(
        actions, "list", "list consumer groups", "tidelog group list --bootstrap-server H:P", _list
    )
    describe = _action(
        actions,
        "describe",
        "a group's members, assignments, committed offsets and lag",
        "tidelog group describe billing --json --bootstrap-server H:P",
        _describe,
    )
    describe.add_argument("group", metavar="GROUP")
    lag = _action(
        actions,
        "lag",
        "lag per partition of one group, or of every group",
        "tidelog group lag --bootstrap-server H:P",
        _lag,
    )
    lag.add_argument("group", nargs="?", metavar="GROUP")
    reset = _action(
        actions,
        "reset-offsets",
        "move a group's committed offsets of a topic (a dry run unless --execute)",
        "tidelog group reset-offsets billing --topic orders --to-datetime 2026-01-01T00:00:00 "
        "--execute --bootstrap-server H:P",
        _reset,
    )
    reset.add_argument("group", metavar="GROUP")
    reset.add_argument(
        "--topic", required=True, metavar="TOPIC", help="the topic whose offsets move"
    )
    to = reset.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-earliest", action="store_true", help="to each partition's log start")
    to.add_argument("--to-latest", action="store_true", help="to each partition's log end")
    to.add_argument("--to-offset", type=int, metavar="N", help="clamped to each partition's log")
    to.add_argument("--to-datetime", metavar="ISO8601", help="the first record at or after it")
    reset.add_argument("--execute", action="store_true", help="commit the offsets (else: show)")
    delete = _action(
        actions,
        "delete",
        "delete consumer groups",
        "tidelog group delete billing --bootstrap-server H:P",
        _delete,
    )
    delete.add_argument("groups", nargs="+", metavar="GROUP")


def _action(
    actions: Any, name: str, help_text: str, example: str, run: Any
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = actions.add_parser(
        name,
        help=help_text,
        description=help_text[0].upper() + help_text[1:] + ".",
        epilog="example:\n  " + example,
        formatter_class=_FORMATTER,
    )
    add_connection(parser)
    add_json(parser)
    parser.set_defaults(run=lambda args: guarded(lambda: run(args)))
    return parser


def _list(args: argparse.Namespace) -> None:
    kafka, client = admin(args)
    found = wait(kafka, client.list_consumer_groups(request_timeout=TIMEOUT_S), "list groups")
    rows = [
        {"group": g.group_id, "state": g.state.name if g.state is not None else None}
        for g in sorted(found.valid, key=lambda g: g.group_id)
    ]
    table.emit(rows, ("group", "state"), as_json=args.json, title="consumer groups")


def _committed(kafka: Any, client: Any, group: str) -> dict[tuple[str, int], int]:
    request = [kafka.ConsumerGroupTopicPartitions(group)]
    answer = wait(kafka, client.list_consumer_group_offsets(request)[group], f"offsets of {group}")
    return {(tp.topic, tp.partition): tp.offset for tp in answer.topic_partitions if tp.offset >= 0}


def _lag_rows(kafka: Any, client: Any, group: str) -> list[dict[str, Any]]:
    committed = _committed(kafka, client, group)
    by_topic: dict[str, list[int]] = {}
    for topic, partition in committed:
        by_topic.setdefault(topic, []).append(partition)
    rows = []
    for topic, partitions in sorted(by_topic.items()):
        ends = partition_offsets(kafka, client, topic, sorted(partitions))
        for p in sorted(partitions):
            offset = committed[(topic, p)]
            end = ends[p][1]
            rows.append(
                {
                    "group": group,
                    "topic": topic,
                    "partition": p,
                    "committed": offset,
                    "log_end_offset": end,
                    "lag": max(0, end - offset),
                }
            )
    return rows


def _existing(kafka: Any, client: Any, group: str, as_json: bool) -> Any:
    """The group as the broker describes it; a CommandError (exit 1) saying
    that it does not exist if the broker does not know it."""
    found = client.describe_consumer_groups([group], request_timeout=TIMEOUT_S)
    described = wait(kafka, found[group], f"describe {group}")
    # A broker describes a group it does not know as Dead, with no error
    # (DescribeGroups before v6; librdkafka asks no later version), and
    # Kafka's ConsumerGroupCommand says it does not exist, in these words.
    if described.state == kafka.ConsumerGroupState.DEAD:
        if as_json:
            table.emit_object({"group": group, "exists": False}, as_json=True)
        raise CommandError(f"Consumer group '{group}' does not exist.", FAILED)
    return described


def _describe(args: argparse.Namespace) -> None:
    kafka, client = admin(args)
    described = _existing(kafka, client, args.group, args.json)
    members = [
        {
            "member_id": m.member_id,
            "client_id": m.client_id,
            "host": m.host,
            "group_instance_id": m.group_instance_id,
            "assignment": sorted(
                f"{tp.topic}-{tp.partition}"
                for tp in (m.assignment.topic_partitions if m.assignment else [])
            ),
        }
        for m in sorted(described.members, key=lambda m: m.member_id)
    ]
    offsets = _lag_rows(kafka, client, args.group)
    info = {
        "group": args.group,
        "exists": True,
        "state": described.state.name if described.state is not None else None,
        # An empty group has none: librdkafka gives "", printed as missing.
        "assignor": described.partition_assignor or None,
        "coordinator": described.coordinator.id if described.coordinator else None,
        "members": members,
        "offsets": offsets,
    }
    if args.json:
        table.emit_object(info, as_json=True)
        return
    table.emit_object(
        {k: info[k] for k in ("group", "state", "assignor", "coordinator")}, as_json=False
    )
    table.emit(
        members,
        ("member_id", "client_id", "host", "assignment"),
        as_json=False,
        title="members",
    )
    table.emit(offsets, _LAG_COLUMNS, as_json=False, title="offsets")


def _lag(args: argparse.Namespace) -> None:
    kafka, client = admin(args)
    if args.group is not None:
        _existing(kafka, client, args.group, args.json)
        groups = [args.group]
    else:
        found = wait(kafka, client.list_consumer_groups(request_timeout=TIMEOUT_S), "groups")
        groups = sorted(g.group_id for g in found.valid)
    rows = [row for group in groups for row in _lag_rows(kafka, client, group)]
    table.emit(rows, _LAG_COLUMNS, as_json=args.json, title="lag")


def _reset(args: argparse.Namespace) -> None:
    kafka, client = admin(args)
    described = wait(kafka, all_topics(client), "metadata").topics.get(args.topic)
    if described is None or described.error is not None:
        raise CommandError(f"topic {args.topic!r} does not exist", FAILED)
    partitions = sorted(described.partitions)
    bounds = partition_offsets(kafka, client, args.topic, partitions)
    committed = _committed(kafka, client, args.group)
    targets = _targets(kafka, client, args, partitions, bounds)
    rows = [
        {
            "group": args.group,
            "topic": args.topic,
            "partition": p,
            "current": committed.get((args.topic, p)),
            "new": targets[p],
        }
        for p in partitions
    ]
    if args.execute:
        request = kafka.ConsumerGroupTopicPartitions(
            args.group, [kafka.TopicPartition(args.topic, p, targets[p]) for p in partitions]
        )
        answer = wait(
            kafka,
            client.alter_consumer_group_offsets([request])[args.group],
            f"reset offsets of {args.group}",
        )
        for tp in answer.topic_partitions:
            if tp.error is not None:
                raise CommandError(f"{tp.topic}-{tp.partition}: {tp.error.str()}", FAILED)
    table.emit(
        rows,
        ("group", "topic", "partition", "current", "new"),
        as_json=args.json,
        title="offsets reset" if args.execute else "offsets a reset would commit (dry run)",
    )


def _targets(
    kafka: Any,
    client: Any,
    args: argparse.Namespace,
    partitions: list[int],
    bounds: dict[int, tuple[int, int]],
) -> dict[int, int]:
    if args.to_earliest:
        return {p: bounds[p][0] for p in partitions}
    if args.to_latest:
        return {p: bounds[p][1] for p in partitions}
    if args.to_offset is not None:
        # As Kafka's tool: an offset outside the log is moved to its nearest end.
        return {p: min(max(args.to_offset, bounds[p][0]), bounds[p][1]) for p in partitions}
    try:
        at = parse_time(args.to_datetime)
    except CommandError as error:
        raise CommandError(f"--to-datetime: {error}", CANNOT_RUN) from error
    spec = kafka.admin.OffsetSpec.for_timestamp(at)
    futures = client.list_offsets({kafka.TopicPartition(args.topic, p): spec for p in partitions})
    found = {tp.partition: wait(kafka, f, "offsets by time").offset for tp, f in futures.items()}
    # No record at or after the time: the log end, as Kafka's tool does.
    return {p: found[p] if found[p] >= 0 else bounds[p][1] for p in partitions}


def _delete(args: argparse.Namespace) -> None:
    kafka, client = admin(args)
    futures = client.delete_consumer_groups(list(args.groups), request_timeout=TIMEOUT_S)
    for group in args.groups:
        wait(kafka, futures[group], f"delete {group}")
    table.emit(
        [{"group": g, "deleted": True} for g in args.groups],
        ("group", "deleted"),
        as_json=args.json,
    )
