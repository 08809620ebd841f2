"""``tidelog unmask grant|revoke|list``: who reads masked topics in clear
(docs/governance.md, "Masked replay"). The permission is an ACL binding on
the reserved resource name ``tidelog.unmask:<topic>`` kept in the catalog,
so this writes what CreateAcls would; it opens the engine's store as
``tidelog serve`` does (so not while a server runs on the same data
directory). A running server is managed with a Kafka admin client instead.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from engine.acl_bindings import TOPIC, AclPermission, PatternType
from engine.cli.help_format import HelpFormatter, add_action, examples
from engine.cli.offline import add_data_options, file_config, open_engine
from engine.errors import EngineError
from engine.masking.unmask import UNMASK_PREFIX
from engine.server.config import ConfigFileError

CANNOT_RUN = 2


_EXAMPLES = {
    "grant": "tidelog unmask --data-dir ./data grant payments User:auditor",
    "revoke": "tidelog unmask --data-dir ./data revoke payments User:auditor",
    "list": "tidelog unmask --data-dir ./data list",
}


def add_command(commands: Any) -> None:
    parser = commands.add_parser(
        "unmask",
        help="grant, revoke and list who reads masked topics in clear",
        description="Manage the unmask permission kept with the ACLs (not while it serves).",
        epilog=examples(*_EXAMPLES.values()),
        formatter_class=HelpFormatter,
    )
    add_data_options(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, text in (
        ("grant", "let a principal read a topic in clear"),
        ("revoke", "undo a grant"),
    ):
        command = add_action(actions, action, text, _EXAMPLES[action])
        command.add_argument("topic", metavar="TOPIC")
        command.add_argument("principal", metavar="PRINCIPAL", help="e.g. User:auditor")
        command.add_argument(
            "--prefixed", action="store_true", help="every topic whose name starts with TOPIC"
        )
    add_action(actions, "list", "list the unmask bindings", _EXAMPLES["list"])
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if args.action != "list" and ":" not in args.principal:
        print(f"tidelog unmask: {args.principal!r} is not TYPE:NAME", file=sys.stderr)
        return CANNOT_RUN
    try:
        file = file_config(args)
    except (ConfigFileError, OSError) as error:
        print(f"tidelog unmask: {error}", file=sys.stderr)
        return CANNOT_RUN
    engine = open_engine("unmask", args, file, create=args.action != "list")
    if engine is None:
        return CANNOT_RUN
    try:
        if args.action == "grant":
            engine.grant_unmask(args.topic, args.principal, prefixed=args.prefixed)
            print(f"{args.principal} reads {_named(args.topic, args.prefixed)} in clear")
        elif args.action == "revoke":
            engine.revoke_unmask(args.topic, args.principal, prefixed=args.prefixed)
            print(
                f"{args.principal} no longer granted unmask on {_named(args.topic, args.prefixed)}"
            )
        else:
            for acl in engine.catalog.state.acls:
                if acl.resource_type != TOPIC or not acl.name.startswith(UNMASK_PREFIX):
                    continue
                topic = acl.name[len(UNMASK_PREFIX) :]
                prefixed = acl.pattern_type == PatternType.PREFIXED
                verb = "DENY" if acl.permission == AclPermission.DENY else "ALLOW"
                print(f"{verb} {acl.principal} {_named(topic, prefixed)} host {acl.host}")
    except EngineError as error:
        print(f"tidelog unmask: {error}", file=sys.stderr)
        return 1
    finally:
        engine.close()
    return 0


def _named(topic: str, prefixed: bool) -> str:
    return f"topics {topic}*" if prefixed else f"topic {topic}"
