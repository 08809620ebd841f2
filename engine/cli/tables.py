"""``tidelog tables status``: each table topic's Iceberg table as its
catalog sees it (docs/tables.md).

Reads the catalog and the tables' metadata only: no engine is opened, so it
runs beside a serving one. The lag (settled records not in a table yet) is
the serving engine's ``tidelog_table_lag_records`` metric.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

from engine.cli import table
from engine.cli.help_format import HelpFormatter
from engine.cli.offline import (
    CONFIG_HELP,
    add_data_options,
    data_dir,
    file_config,
    object_store_url,
)
from engine.server.config import ConfigFileError
from engine.tables import TablesConfig
from engine.tables.settings import WAREHOUSE_PREFIX
from s3stream import open_store
from s3stream.store import redact_url

CANNOT_RUN = 2
COLUMNS = ("table", "topic", "rows", "files", "snapshots", "last_commit", "positions")


def add_command(commands: Any) -> None:
    parser = commands.add_parser(
        "tables",
        help="table topics' Iceberg tables (read-only)",
        description="Table topics' Apache Iceberg tables, read from their catalog: rows, "
        "data files, snapshots, the last commit and the next offset per partition. "
        "Read-only: safe while the engine serves.",
        epilog="example:\n  tidelog tables status --data-dir ./tidelog-data --json",
        formatter_class=HelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    status = actions.add_parser(
        "status",
        help="each table's rows, files and positions",
        description="Each table topic's table: rows, data files, snapshots, the last commit "
        "and the next offset per partition (its snapshot summary's tidelog.offsets).",
        epilog="example:\n  tidelog tables status --config tidelog.toml",
        formatter_class=HelpFormatter,
    )
    add_data_options(status, config_help=f"{CONFIG_HELP} ([tables])")
    status.add_argument("--json", action="store_true", help="a JSON array")
    status.set_defaults(run=run_status)


def run_status(args: argparse.Namespace) -> int:
    try:
        file = file_config(args)
    except (ConfigFileError, OSError) as error:
        print(f"tidelog tables: {error}", file=sys.stderr)
        return CANNOT_RUN
    config: TablesConfig = file.engine.get("tables", TablesConfig())
    directory = data_dir(args, file)
    url = object_store_url(args, file)
    default_catalog = os.path.join(directory, WAREHOUSE_PREFIX, "catalog.db")
    if config.catalog == "sql" and not config.uri and not os.path.exists(default_catalog):
        table.emit([], COLUMNS, as_json=args.json, title="table topics")  # none was ever kept
        return 0
    try:
        from engine.tables.catalogs import open_catalog  # noqa: PLC0415  (the tables extra)
        from engine.tables.writer import OFFSETS, TOPIC  # noqa: PLC0415
    except ImportError as error:
        print(f"tidelog tables: needs the tables extra ({error})", file=sys.stderr)
        return CANNOT_RUN
    try:
        store = open_store(url)
    except ValueError as error:
        print(f"tidelog tables: {error}", file=sys.stderr)
        return CANNOT_RUN
    rows = []
    try:
        catalog = open_catalog(config, directory, store)
        names = catalog.list_tables(config.namespace) if _has_namespace(catalog, config) else []
        for identifier in sorted(names):
            found = catalog.load_table(identifier)
            if TOPIC not in found.properties:
                continue  # not a table topic's
            snapshot = found.current_snapshot()
            summary = snapshot.summary if snapshot is not None else None
            rows.append(
                {
                    "table": ".".join(identifier),
                    "topic": found.properties[TOPIC],
                    "rows": int(summary.get("total-records") or 0) if summary else 0,
                    "files": int(summary.get("total-data-files") or 0) if summary else 0,
                    "snapshots": len(found.snapshots()),
                    "last_commit": _when(snapshot.timestamp_ms) if snapshot else "",
                    "positions": json.loads(summary.get(OFFSETS) or "{}") if summary else {},
                }
            )
    except Exception as error:  # the catalog's and the store's own errors
        reason = f"{type(error).__name__}: {error}"
        print(f"tidelog tables: {redact_url(url)}: {reason}", file=sys.stderr)
        return CANNOT_RUN
    finally:
        store.close()
    table.emit(rows, COLUMNS, as_json=args.json, title="table topics")
    return 0


def _has_namespace(catalog: Any, config: TablesConfig) -> bool:
    return (config.namespace,) in {tuple(n) for n in catalog.list_namespaces()}


def _when(timestamp_ms: int) -> str:
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat(timespec="seconds")
