"""The `tidelog` command line.

Each command's module is imported only when that command runs (or when the
help lists them all): `tidelog serve` does not pay for the imports of the
operator commands (rich tables, Kafka admin clients, the offline
inspectors), and they do not pay for the server's."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from engine import __version__

_COMMANDS: dict[str, tuple[str, ...]] = {
    "serve": ("serve",),
    "recover": ("recover",),
    "users": ("users",),
    "unmask": ("unmask",),
    "verify": ("verify",),
    "lookup": ("lookup",),
    "state": ("state",),
    "fork": ("fork",),
    "schemas": ("schemas",),
    "tables": ("tables",),
    "snapshot": ("wire_replay",),
    "consume": ("wire_replay", "consume_open"),
    "topic": ("topic",),
    "group": ("group",),
    "produce": ("produce",),
    "cluster": ("cluster",),
    "mirror": ("mirror",),
    "inspect": ("inspect",),
    "wal-bench": ("wal_bench",),
}
"""Each command, in the order the help lists them, and the modules of
engine.cli that add it to the parser: a module's ``add_command``, or
``add_flags`` to a command another module added."""


def _register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], modules: list[str]
) -> None:
    """Lets each module add its commands or flags, once each."""
    for module_name in modules:
        module = importlib.import_module(f"engine.cli.{module_name}")
        if hasattr(module, "add_command"):
            module.add_command(commands)
        else:
            module.add_flags(commands)


def _build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for ``command`` alone, or for every command if None."""
    parser = argparse.ArgumentParser(
        prog="tidelog",
        description="An embedded streaming engine that speaks the Kafka protocol.",
    )
    parser.add_argument("--version", action="version", version=f"tidelog {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = list(_COMMANDS) if command is None else [command]
    _register(commands, list(dict.fromkeys(m for name in names for m in _COMMANDS[name])))
    return parser


def _command_named(argv: Sequence[str]) -> str | None:
    """The command ``argv`` runs, if its first word names one; otherwise
    (help, a typo, nothing) None, and every command is registered so that
    argparse can list them."""
    return argv[0] if argv and argv[0] in _COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    parser = _build_parser(_command_named(words))
    args = parser.parse_args(words)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    result: int = args.run(args)
    return result
