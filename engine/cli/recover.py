"""``tidelog recover DATA_DIR``: what recovery will find in a WAL, and a salvage.

Without flags it is a dry run: every segment is judged by the recovery rule
(docs/wal-format.md) and nothing is changed; the exit code is 1 if there is
damage to acknowledged data. With ``--accept-data-loss`` every damaged
segment is salvaged (its readable records kept, each dropped byte range
logged) and the log then opens normally.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from engine import refusal
from engine.cli.help_format import HelpFormatter, examples
from wal import Inspection, WriteAheadLog, inspect
from wal.directory_lock import lock_directory
from wal.segment import END_OF_FILE, UNWRITTEN

log = logging.getLogger("tidelog.recover")

DAMAGED = 1
CANNOT_RUN = 2


def add_command(commands: Any) -> None:
    parser = commands.add_parser(
        "recover",
        help="check a data directory's write-ahead log; salvage it if damaged",
        description=(
            "Report what recovery finds in DATA_DIR's write-ahead log (a dry run: exit 1 "
            "on damage to acknowledged data). With --accept-data-loss, salvage it: keep every "
            "readable record, drop and log the damaged bytes."
        ),
        epilog=examples(
            "tidelog recover ./tidelog-data",
            "tidelog recover --accept-data-loss ./tidelog-data",
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("data_dir", metavar="DATA_DIR", help="the engine's data directory")
    parser.add_argument(
        "--accept-data-loss",
        action="store_true",
        help="rewrite damaged segments with their readable records (the damaged bytes are lost)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    data_dir: str = args.data_dir
    directory = os.path.join(data_dir, "wal")
    if not os.path.isdir(directory):
        print(
            f"tidelog recover: no write-ahead log in {data_dir} ({directory} is not a directory)",
            file=sys.stderr,
        )
        return CANNOT_RUN
    try:
        if args.accept_data_loss:
            return _salvage(directory)
        lock = lock_directory(directory)
        try:
            found = inspect(directory)
        finally:
            lock.release()
    except refusal.REFUSALS as error:
        print(f"tidelog recover: {refusal.describe(error, data_dir)}", file=sys.stderr)
        return CANNOT_RUN
    _print_inspection(found)
    damage = found.damage
    if damage:
        print(
            f"{len(damage)} damaged ranges in acknowledged data: the engine will not open. "
            f"`tidelog recover --accept-data-loss {data_dir}` keeps every readable record "
            "and drops them",
            file=sys.stderr,
        )
        return DAMAGED
    print("no damage: the log opens as it is")
    return 0


def _print_inspection(found: Inspection) -> None:
    for verdict in found.verdicts:
        name = os.path.basename(verdict.path)
        if verdict.survey is None:
            print(f"{name}: missing")
            continue
        state = "sealed" if verdict.survey.sealed else "open"
        print(f"{name}: {len(verdict.keep)} records, {state}")
        for damage in verdict.damage:
            print(f"  damaged: {damage.describe()}")
            print(
                f"    beyond it: {damage.bytes_beyond} bytes, {damage.records_beyond} readable "
                "records"
            )
        if verdict.cut is not None and (
            verdict.torn_records or verdict.cut_reason not in (END_OF_FILE, UNWRITTEN)
        ):
            print(
                f"  torn tail: at byte {verdict.cut} ({verdict.cut_reason}), cut on open "
                f"({verdict.torn_records} valid records past it, never acknowledged)"
            )


def _salvage(directory: str) -> int:
    with WriteAheadLog(directory, preallocate=False, accept_data_loss=True) as salvaged:
        report = salvaged.recovery
    for damage in report.dropped:
        print(f"dropped: {damage.describe()}")
    print(
        f"salvaged: {report.records} records kept in {report.segments} segments, "
        f"{len(report.dropped)} damaged ranges dropped; the log opens normally now"
    )
    return 0
