"""``tidelog users add|remove|list|tokens|remove-token``: the users SASL
clients authenticate as, kept in the catalog in the object store
(engine/credentials.py), and the delegation tokens they made
(engine/delegation_tokens.py): listed, or one removed by its id, which
revokes it (a running server's clients expire tokens with
ExpireDelegationToken instead).

It opens the engine's store as ``tidelog serve`` does (so not while a
server runs on the same data directory); a server started afterwards, on
this machine or a fresh one on the same bucket, knows the users. A password
is read from a file (``--password-file``, its first line) or prompted for
without echo, and is never printed or logged: only its salted keys are kept.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.cli.help_format import HelpFormatter, add_action, examples
from engine.cli.offline import add_data_options, file_config, open_engine
from engine.credentials import MECHANISMS, SCRAM_HASHES
from engine.delegation_tokens import TokenInformation
from engine.errors import EngineError
from engine.server.config import ConfigFileError

CANNOT_RUN = 2


_ADD = "tidelog users --data-dir ./data add ops --mechanism SCRAM-SHA-256 --password-file pw"
_REMOVE = "tidelog users --data-dir ./data remove ops"
_LIST = "tidelog users --data-dir ./data list"
_TOKENS = "tidelog users --data-dir ./data tokens"
_REMOVE_TOKEN = "tidelog users --data-dir ./data remove-token 9b1d9a1e-8f0c-4c55-9d0e-1d3e0f6a2b7c"


def add_command(commands: Any) -> None:
    parser = commands.add_parser(
        "users",
        help="add, remove and list the users SASL clients authenticate as",
        description="Manage the SASL users kept in the engine's catalog (not while it serves).",
        epilog=examples(_ADD, _REMOVE, _LIST, _TOKENS, _REMOVE_TOKEN),
        formatter_class=HelpFormatter,
    )
    add_data_options(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = add_action(actions, "add", "add a user, or set its password for a mechanism", _ADD)
    add.add_argument("name", metavar="NAME")
    add.add_argument(
        "--mechanism",
        choices=MECHANISMS,
        action="append",
        help="SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN; repeat for several (default: all three)",
    )
    add.add_argument(
        "--password-file", help="a file whose first line is the password (default: prompt)"
    )
    remove = add_action(actions, "remove", "remove a user and all its credentials", _REMOVE)
    remove.add_argument("name", metavar="NAME")
    add_action(actions, "list", "list the users and their mechanisms", _LIST)
    add_action(actions, "tokens", "list the delegation tokens: owner, renewers, expiry", _TOKENS)
    remove_token = add_action(
        actions, "remove-token", "remove (revoke) a delegation token by its id", _REMOVE_TOKEN
    )
    remove_token.add_argument("token_id", metavar="TOKEN_ID")
    parser.set_defaults(run=run)


def _password(args: argparse.Namespace) -> str:
    if args.password_file:
        lines = Path(args.password_file).read_text().splitlines()
        password = lines[0] if lines else ""
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise ValueError("the passwords differ")
    if not password:
        raise ValueError("the password is empty")
    return password


def _timestamp(ms: int) -> str:
    """A token's timestamp in UTC, or in ms since the epoch past what a
    calendar holds (the max lifetime setting takes any long, as Kafka's)."""
    try:
        return f"{datetime.fromtimestamp(ms / 1000, UTC):%Y-%m-%dT%H:%M:%SZ}"
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms since the epoch"


def describe_token(info: TokenInformation, now_ms: int) -> str:
    """One line of ``tidelog users tokens``: never the HMAC."""
    renewers = ", ".join(info.renewers) or "none"
    state = " (expired)" if info.expired(now_ms) else ""
    return (
        f"{info.token_id}: owner {info.owner}, requested by {info.requester},"
        f" renewers {renewers}, expires {_timestamp(info.expiry_timestamp_ms)}{state},"
        f" at most {_timestamp(info.max_timestamp_ms)}"
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        file = file_config(args)
        password = _password(args) if args.action == "add" else ""
    except (ConfigFileError, OSError, ValueError) as error:
        print(f"tidelog users: {error}", file=sys.stderr)
        return CANNOT_RUN
    engine = open_engine("users", args, file, create=args.action not in ("list", "tokens"))
    if engine is None:
        return CANNOT_RUN
    try:
        credentials = engine.credentials
        if args.action == "add":
            for mechanism in args.mechanism or MECHANISMS:
                credentials.add(args.name, mechanism, password)
            print(f"user {args.name}: {', '.join(args.mechanism or MECHANISMS)}")
        elif args.action == "remove":
            credentials.remove_user(args.name)
            print(f"user {args.name} removed")
        elif args.action == "tokens":
            for info in engine.delegation_tokens.stored():
                print(describe_token(info, engine.clock.time_ms()))
        elif args.action == "remove-token":
            engine.delegation_tokens.remove(args.token_id)
            print(f"delegation token {args.token_id} removed")
        else:
            for name in credentials.users():
                mechanisms = credentials.mechanisms(name)
                described = [
                    f"{m} ({c.iterations} iterations)" if m in SCRAM_HASHES else m
                    for m, c in sorted(mechanisms.items())
                ]
                print(f"{name}: {', '.join(described)}")
    except EngineError as error:
        print(f"tidelog users: {error}", file=sys.stderr)
        return 1
    finally:
        engine.close()
    return 0
