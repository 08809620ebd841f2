"""``tidelog state TOPIC --at MS|ISO8601``: a compacted topic's keys and values
as of a time, read from the object store.

Read-only like ``tidelog verify`` (it opens the store the same way and takes
no epoch), so it runs beside a serving engine; records still only in the
server's WAL are not seen. Prints one JSON line per key, then one line with
each partition's exactness (docs/memory.md, "State as of T"). Exit 0 when
every partition's answer is exact, 1 when one is not, 2 if it could not run.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from datetime import datetime
from typing import Any

from engine.cli.help_format import HelpFormatter, examples
from engine.cli.offline import add_data_options, file_config, read_object_store
from engine.memory.state_at import TopicState
from engine.memory.stored_state import stored_state_at
from engine.server.config import ConfigFileError

INEXACT = 1
CANNOT_RUN = 2


def add_command(commands: Any) -> None:
    parser = commands.add_parser(
        "state",
        help="a compacted topic's state as of a time (read-only)",
        description=(
            "Rebuild each key's latest value as of a time from what the object store holds, "
            "and say per partition whether compaction kept the history to answer exactly. "
            "Read-only: safe while the engine serves. Exit 1 if an answer is not exact."
        ),
        epilog=examples("tidelog state accounts --at 2026-01-01T00:00:00Z --data-dir ./data"),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("topic", metavar="TOPIC")
    parser.add_argument(
        "--at",
        required=True,
        metavar="MS|ISO8601",
        type=time_argument,
        help="milliseconds since the epoch, or an ISO 8601 time with a zone (2026-12-01T09:00Z)",
    )
    parser.add_argument("--partition", type=int, action="append", help="only this partition")
    add_data_options(parser)
    parser.set_defaults(run=run)


def parse_time(text: str) -> int:
    """Milliseconds since the epoch from ``text``: an integer, or ISO 8601 with a zone."""
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"the time {text!r} is neither milliseconds since the epoch nor ISO 8601"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"the time {text!r} has no zone (add Z or +hh:mm)")
    return round(moment.timestamp() * 1000)


def time_argument(text: str) -> int:
    """parse_time as an argparse type: a bad time is a usage error that
    names its flag, found before anything is opened."""
    try:
        return parse_time(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _text(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode()


def run(args: argparse.Namespace) -> int:
    try:
        file = file_config(args)
    except (ConfigFileError, OSError, ValueError) as error:
        print(f"tidelog state: {error}", file=sys.stderr)
        return CANNOT_RUN
    answer = read_object_store(
        "state",
        args,
        file,
        lambda store: stored_state_at(store, args.topic, args.at, partitions=args.partition),
    )
    if answer is None:
        return CANNOT_RUN
    _print(answer)
    return 0 if answer.exact else INEXACT


def _print(answer: TopicState) -> None:
    for key in sorted(answer.values):
        kept = answer.values[key]
        line = {
            "key": _text(key),
            "value": _text(kept.value),
            "ref": str(kept.ref),
            "timestamp": kept.timestamp,
        }
        print(json.dumps(line))
    partitions = [
        {
            "partition": p.partition,
            "exact": p.exact,
            "as_of_ms": p.as_of_ms,
            "pending": p.pending,
            "log_start_offset": p.log_start_offset,
            "note": p.describe(),
        }
        for p in answer.partitions
    ]
    print(json.dumps({"exact": answer.exact, "partitions": partitions}))
