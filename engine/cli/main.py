"""The `tidelog` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from engine import __version__
from engine.cli import (
    cluster,
    consume_open,
    fork,
    group,
    inspect,
    lookup,
    mirror,
    produce,
    recover,
    schemas,
    serve,
    state,
    tables,
    topic,
    unmask,
    users,
    verify,
    wal_bench,
    wire_replay,
)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tidelog",
        description="An embedded streaming engine that speaks the Kafka protocol.",
    )
    parser.add_argument("--version", action="version", version=f"tidelog {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve.add_command(commands)
    recover.add_command(commands)
    users.add_command(commands)
    unmask.add_command(commands)
    verify.add_command(commands)
    lookup.add_command(commands)
    state.add_command(commands)
    fork.add_command(commands)
    schemas.add_command(commands)
    tables.add_command(commands)
    wire_replay.add_command(commands)
    consume_open.add_flags(commands)
    topic.add_command(commands)
    group.add_command(commands)
    produce.add_command(commands)
    cluster.add_command(commands)
    mirror.add_command(commands)
    inspect.add_command(commands)
    wal_bench.add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    result: int = args.run(args)
    return result
