"""``tidelog verify [TOPIC[:PARTITION]]``: prove partitions' hash chains from the object store.

Reads the committed manifest, the objects it names and the catalog as
uploaded; writes nothing and takes no epoch, so it runs beside a serving
engine without fencing it. Exit 0 if every chain verified (and, with
``--expect-head``, ends at that head and holds no rewritten range unless
``--accept-rewrites``), 1 if not or if the catalog naming the topics is
damaged, 2 if it could not run. See
docs/tamper-evidence.md and docs/cli.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from engine.cli.help_format import HelpFormatter, examples
from engine.cli.offline import add_data_options, file_config, read_object_store
from engine.errors import CatalogDamaged
from engine.server.config import ConfigFileError
from engine.verify import PartitionVerdict, VerifyReport, verify_partitions
from s3stream import ObjectStore

BROKEN = 1
CANNOT_RUN = 2


def add_command(commands: Any) -> None:
    parser = commands.add_parser(
        "verify",
        help="prove partitions' hash chains from the object store (read-only)",
        description=(
            "Re-read every committed batch of the selected partitions from the object store "
            "and prove each partition's hash chain; print the range proven and the head link. "
            "Read-only: safe while the engine serves. Exit 1 if a batch was changed, removed "
            "or reordered, if the catalog that names the topics is damaged, or with "
            "--expect-head if the head is another or a range was rewritten by the log cleaner "
            "(unless --accept-rewrites); 2 if it cannot run."
        ),
        epilog=examples(
            "tidelog verify --data-dir ./data",
            "tidelog verify audit:0 --data-dir ./data --expect-head "
            "7cba4c72fca67ee173a12edfdfccbde65237a875accb6a7eb6ffaa7969310aa3",
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "selection",
        nargs="?",
        metavar="TOPIC[:PARTITION]",
        help="a topic, or one partition of it (default: every topic)",
    )
    add_data_options(parser)
    parser.add_argument(
        "--from-offset",
        type=int,
        default=0,
        metavar="N",
        help="start at the committed range holding offset N (its kept link is trusted)",
    )
    parser.add_argument(
        "--expect-head",
        metavar="HEX",
        help=(
            "the head link recorded earlier for the one selected partition; a mismatch fails, "
            "and so does a range the log cleaner rewrote (its records are not proven by the head)"
        ),
    )
    parser.add_argument(
        "--accept-rewrites",
        action="store_true",
        help=(
            "with --expect-head: accept ranges the log cleaner rewrote (a compacted topic's "
            "audit); they are proven by their own links only"
        ),
    )
    parser.set_defaults(run=run)


def _selection(text: str | None) -> tuple[str | None, int | None]:
    if text is None:
        return None, None
    topic, colon, partition = text.rpartition(":")
    if colon and partition.isdigit() and topic:
        return topic, int(partition)
    return text, None


def _head(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ValueError(
            f"--expect-head {text!r} is not hex: give the head link verify printed"
        ) from None


def run(args: argparse.Namespace) -> int:
    try:
        file = file_config(args)
        expected = _head(args.expect_head) if args.expect_head else None
    except (ConfigFileError, OSError, ValueError) as error:
        print(f"tidelog verify: {error}", file=sys.stderr)
        return CANNOT_RUN
    topic, partition = _selection(args.selection)

    def verify(store: ObjectStore) -> VerifyReport | CatalogDamaged:
        with _progress() as advance:
            try:
                return verify_partitions(
                    store,
                    topic,
                    partition,
                    from_offset=args.from_offset,
                    on_progress=advance,
                    expect_head=expected,
                    accept_rewrites=args.accept_rewrites,
                )
            except CatalogDamaged as damage:
                # Found, not a failure to run: the store was read, and what
                # it holds is damaged (an empty catalog would verify nothing).
                return damage

    report = read_object_store("verify", args, file, verify)
    if report is None:
        return CANNOT_RUN
    if isinstance(report, CatalogDamaged):
        print(f"catalog: DAMAGED: {report}; its topics cannot be read, so none was verified")
        return BROKEN
    failed = False
    for verdict in report.partitions:
        failed |= not _print_verdict(verdict)
    return BROKEN if failed else 0


def _print_verdict(found: PartitionVerdict) -> bool:
    name = f"{found.topic}:{found.partition}"
    verdict = found.verdict
    if verdict.unlinked_end is not None:
        print(
            f"{name}: offsets below {verdict.unlinked_end} were written before the chain "
            "existed; not proven"
        )
    if verdict.ranges_without_object_links:
        print(
            f"{name}: {verdict.ranges_without_object_links} ranges are in objects written "
            "before objects kept links; proven from the manifest's links"
        )
    for rewrite in verdict.rewrites:
        print(
            f"{name}: offsets [{rewrite.start_offset}, {rewrite.end_offset}) were rewritten "
            f"by the log cleaner (replaced chain {rewrite.old_before.hex()} .. "
            f"{rewrite.old_after.hex()})"
        )
    for broken in verdict.breaks:
        print(
            f"{name}: BROKEN at offset {broken.offset} (range up to {broken.end_offset}, "
            f"object {broken.key}): {broken.reason}"
        )
    if not verdict.ok:
        return False
    if verdict.head is None:
        print(f"{name}: nothing linked in the object store yet")
        return found.expected_head is None
    origin = "genesis" if verdict.from_genesis else "kept link"
    print(
        f"{name}: verified offsets [{verdict.start_offset}, {verdict.end_offset}) from its "
        f"{origin}, {verdict.batches} batches, {verdict.bytes} bytes; head {verdict.head.hex()}"
    )
    made_with = ", ".join(
        f"{algorithm.title} ({count} {'range' if count == 1 else 'ranges'})"
        for algorithm, count in sorted(verdict.algorithms.items())
    )
    print(f"{name}: links made with {made_with}")
    print(found.stamped_statement())
    for failure in found.anchor_failures():
        print(failure)
    return found.ok


def _progress() -> AbstractContextManager[Callable[[int], None] | None]:
    """A rich progress bar of bytes hashed on a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        return nullcontext(None)
    return _RichProgress()


class _RichProgress(AbstractContextManager[Callable[[int], None] | None]):
    def __enter__(self) -> Callable[[int], None]:
        self._progress = Progress(
            TextColumn("verifying"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            transient=True,
            console=Console(stderr=True),
        )
        self._progress.start()
        task = self._progress.add_task("verify", total=None)

        def advance(size: int) -> None:
            self._progress.advance(task, size)

        return advance

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()
