"""``tidelog fork TOPIC NAME [--at VECTOR | --at-time T]``: a fork of a topic
for evaluation (docs/memory.md, "Forks for evaluation"): a new topic reading
the parent's records below the fork point from the parent's own objects and
taking its own records after.

A fork is made by the engine that owns the data directory (it commits to
the manifest and the catalog), so this opens it as ``tidelog serve`` does —
not while a server runs on the same data directory; an agent process that
embeds the engine calls ``Engine.fork`` instead. Prints the fork point, one
line per partition (JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from engine.cli.help_format import HelpFormatter
from engine.cli.offline import add_data_options, file_config, open_engine
from engine.cli.state import time_argument
from engine.cli.topic import parse_configs
from engine.engine import READ_UNCOMMITTED
from engine.errors import EngineError
from engine.memory.vector import OffsetVector
from engine.server.config import ConfigFileError
from engine.types import TopicPartition

CANNOT_RUN = 2

_EXAMPLE = """example:
  tidelog fork agent.actions agent.actions.eval-1 --data-dir ./data
  tidelog fork orders orders.eval-2 --at-time 2026-12-01T09:00Z -c retention.ms=86400000 \\
      --data-dir ./data"""


def add_command(commands: Any) -> None:
    parser = commands.add_parser(
        "fork",
        help="fork a topic for evaluation (offline, not while serving)",
        description=(
            "Create topic NAME reading TOPIC's records below a fork point (default: the "
            "high watermark of every partition) without copying them, and taking its own "
            "records after. Opens the data directory, so not while a server holds it."
        ),
        epilog=_EXAMPLE,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("topic", metavar="TOPIC", help="the parent topic")
    parser.add_argument("name", metavar="NAME", help="the fork's topic name")
    point = parser.add_mutually_exclusive_group()
    point.add_argument(
        "--at",
        metavar="VECTOR",
        help="an offset vector's JSON text (e.g. a decision's tidelog.context header)",
    )
    point.add_argument(
        "--at-time",
        metavar="MS|ISO8601",
        type=time_argument,
        help="what the parent held durably at that time (its read_committed snapshot)",
    )
    parser.add_argument(
        "-c",
        "--config",
        dest="configs",
        action="append",
        default=[],
        metavar="K=V",
        help="a config of the fork's own (over the parent's overrides); repeatable",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    # -c/--config is a topic config of the fork's own, as for tidelog topic.
    add_data_options(parser, config_option="--config-file")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        file = file_config(args)
        configs = parse_configs(args.configs)
        at = OffsetVector.from_text(args.at) if args.at is not None else None
    except (ConfigFileError, OSError, ValueError, EngineError) as error:
        print(f"tidelog fork: {error}", file=sys.stderr)
        return CANNOT_RUN
    engine = open_engine("fork", args, file, create=False)  # the parent must exist
    if engine is None:
        return CANNOT_RUN
    try:
        if args.at_time is not None:
            at = engine.snapshot([args.topic], at=args.at_time)
        # Offline, nothing appends meanwhile: the high watermarks read here
        # are where a fork without a vector (or a partition the vector
        # leaves out) stops reading the parent.
        heads = engine.snapshot([args.topic], isolation_level=READ_UNCOMMITTED)
        fork = engine.fork(args.topic, at, name=args.name, configs=configs)
    except EngineError as error:
        print(f"tidelog fork: {error}", file=sys.stderr)
        return 1
    finally:
        engine.close()
    rows = []
    for info in fork.partitions:
        tp = TopicPartition(args.topic, info.partition)
        position = (at or heads).get(tp) or heads[tp]
        rows.append({"partition": info.partition, "fork_point": position.offset})
    if args.json:
        print(json.dumps({"topic": args.name, "parent": args.topic, "partitions": rows}))
    else:
        for row in rows:
            print(f"{args.name}\t{row['partition']}\t{row['fork_point']}")
    return 0
