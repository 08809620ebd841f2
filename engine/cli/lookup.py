"""``tidelog lookup TOPIC... --header NAME --value V``: every record whose
header has a value, from the object store (read-only).

Reads the committed manifest, the catalog as uploaded and the objects'
header indexes; writes nothing and takes no epoch, so it runs beside a
serving engine without fencing it. Records still only in a WAL are not
seen. ``--isolation-level read_committed`` reads as a read_committed
consumer does (Engine.lookup's isolation_level; read_uncommitted, its
default, unless asked). Exit 0 with one line per record (none found is no error), 2 if it
could not run. See docs/memory.md, "Lookup by header".
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from typing import Any

from engine.cli.help_format import HelpFormatter, examples
from engine.cli.offline import add_data_options, file_config, read_object_store
from engine.engine import READ_COMMITTED, READ_UNCOMMITTED
from engine.memory.lookup import FoundRecord
from engine.memory.uploaded_lookup import lookup_uploaded
from engine.server.config import ConfigFileError

CANNOT_RUN = 2


def add_command(commands: Any) -> None:
    parser = commands.add_parser(
        "lookup",
        help="every record whose header has a value, from the object store (read-only)",
        description=(
            "Find the records of the topics whose header NAME has value V, reading only the "
            "batches the topics' header indexes list (tidelog.index.headers) and scanning "
            "what no index covers. Read-only: safe while the engine serves; records not "
            "uploaded yet are not seen."
        ),
        epilog=examples(
            "tidelog lookup decisions --header tidelog.context --value run-42 --data-dir ./data"
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("topics", nargs="+", metavar="TOPIC")
    parser.add_argument("--header", required=True, metavar="NAME", help="the header's name")
    parser.add_argument("--value", required=True, metavar="V", help="the value, as UTF-8")
    parser.add_argument(
        "--isolation-level",
        choices=(READ_UNCOMMITTED, READ_COMMITTED),
        default=READ_UNCOMMITTED,
        help=(
            "read_committed: only below each partition's last stable offset, without aborted "
            "transactions' records (found in each partition's last uploaded checkpoint and "
            "the batches after it); the "
            "default reads every record, as Engine.lookup does"
        ),
    )
    add_data_options(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        file = file_config(args)
    except (ConfigFileError, OSError) as error:
        print(f"tidelog lookup: {error}", file=sys.stderr)
        return CANNOT_RUN
    found = read_object_store(
        "lookup",
        args,
        file,
        lambda store: lookup_uploaded(
            store,
            args.topics,
            args.header,
            args.value.encode(),
            read_committed=args.isolation_level == READ_COMMITTED,
        ),
    )
    if found is None:
        return CANNOT_RUN
    for record in found:
        print(_json(record) if args.json else _line(record))
    return 0


def _text(data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode()


def _line(record: FoundRecord) -> str:
    return f"{record.ref}\t{record.timestamp}\t{_text(record.value)}"


def _json(record: FoundRecord) -> str:
    return json.dumps(
        {
            "ref": str(record.ref),
            "timestamp": record.timestamp,
            "key": _text(record.key),
            "value": _text(record.value),
            "headers": [[name, _text(value)] for name, value in record.headers],
        }
    )
