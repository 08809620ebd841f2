"""What ``tidelog mirror`` adds for checking a migration: ``--verify``
(compare the source and the target cluster, engine.mirror.verify) and
``translate`` (a record reference or offset vector carried over to the
target through its offset syncs, engine.mirror.translation).

The mirror command builds its parser and calls the hooks here:
:func:`add_verify_arguments` and :func:`run_verify` for ``--verify``,
:func:`add_translate_parser` for the ``translate`` subcommand. They use the
mirror's flag names (``--from``, ``--to``, ``--from-config``,
``--to-config``, ``--topics``) and add a flag only where the parser does not
have it yet, reading each value under the name the parser stores it.
Exit status: 0 same (or translated), 1 different (or not translatable),
2 could not run. See docs/migration.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from engine.cli.help_format import HelpFormatter
from engine.cli.table import emit
from engine.cli.wire_replay import CommandError, read_vector
from engine.errors import EngineError
from engine.memory.translate import NotTranslated
from engine.memory.vector import InvalidVector, OffsetVector, RecordRef
from engine.mirror.reading import DEFAULT_TIMEOUT_S, Cluster, ClusterReadError
from engine.mirror.translation import Translator
from engine.mirror.verify import MirrorReport, verify_mirror

DIFFERENT = 1
CANNOT_RUN = 2

_DESTS = "mirror_tools_dests"
"""The parser default that maps each flag to the name its value is stored under."""

_CONNECTION_FLAGS: dict[str, dict[str, Any]] = {
    "--from": {"metavar": "BOOTSTRAP", "help": "the source cluster's bootstrap servers"},
    "--to": {"metavar": "BOOTSTRAP", "help": "the target cluster's bootstrap servers"},
    "--from-config": {
        "action": "append",
        "default": [],
        "metavar": "K=V",
        "help": "a client property for the source (security.protocol, sasl.*, ssl.*); repeatable",
    },
    "--to-config": {
        "action": "append",
        "default": [],
        "metavar": "K=V",
        "help": "a client property for the target; repeatable",
    },
}


MASKED_COPIES_FLAG: dict[str, Any] = {
    "action": "store_true",
    "help": "copy (and compare) topics the source masks for this principal as masked values: "
    "without it they are refused, since their copies would hold masks, not the data",
}


def _flag(
    parser: argparse.ArgumentParser, dests: dict[str, str], flag: str, **options: Any
) -> None:
    """Adds ``flag`` unless the parser has it; notes the name it is stored under."""
    # argparse keeps its flags in _option_string_actions; nothing public says
    # whether a flag is taken, and the mirror's parser defines the shared ones.
    existing = parser._option_string_actions.get(flag)
    if existing is None:
        existing = parser.add_argument(flag, **options)
    dests[flag] = existing.dest


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags ``--verify`` reads (those the parser lacks)."""
    dests: dict[str, str] = {}
    for flag, options in _CONNECTION_FLAGS.items():
        _flag(parser, dests, flag, **options)
    _flag(
        parser,
        dests,
        "--topics",
        metavar="REGEX",
        help="verify the topics whose whole name matches (default: all but internal ones)",
    )
    _flag(
        parser,
        dests,
        "--since",
        metavar="VECTOR",
        help="verify from this offset vector on (JSON, or @file): the partitions it names",
    )
    _flag(
        parser,
        dests,
        "--until",
        metavar="VECTOR",
        help="verify below this offset vector (JSON, or @file): the partitions it names",
    )
    _flag(parser, dests, "--masked-copies", **MASKED_COPIES_FLAG)
    _flag(
        parser,
        dests,
        "--json",
        action="store_true",
        help="print a JSON array: one object per partition and per mismatched topic",
    )
    _flag(
        parser,
        dests,
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"the longest a read waits for a record it is owed (default {DEFAULT_TIMEOUT_S:g})",
    )
    parser.set_defaults(**{_DESTS: {**_dests(parser), **dests}})


def _dests(parser: argparse.ArgumentParser) -> dict[str, str]:
    found = parser.get_default(_DESTS)
    return dict(found) if isinstance(found, Mapping) else {}


def _value(args: argparse.Namespace, flag: str) -> Any:
    dests: Mapping[str, str] = getattr(args, _DESTS, {})
    return getattr(args, dests.get(flag, flag.lstrip("-").replace("-", "_")), None)


def _properties(raw: Any, flag: str) -> dict[str, str]:
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    properties: dict[str, str] = {}
    for item in raw or ():
        key, equals, value = str(item).partition("=")
        if not equals or not key:
            raise CommandError(f"{flag} {item!r}: expected K=V", CANNOT_RUN)
        properties[key] = value
    return properties


def _cluster(args: argparse.Namespace, side: str) -> Cluster:
    bootstrap = _value(args, f"--{side}")
    if not bootstrap:
        raise CommandError(f"--{side} BOOTSTRAP is needed", CANNOT_RUN)
    return Cluster(
        str(bootstrap), _properties(_value(args, f"--{side}-config"), f"--{side}-config")
    )


def run_verify(args: argparse.Namespace) -> int:
    """Compares the clusters; one line per partition (and per mismatched
    topic), or JSON with ``--json``. 0 same, 1 different, 2 cannot run."""
    try:
        source, target = _cluster(args, "from"), _cluster(args, "to")
        since_text, until_text = _value(args, "--since"), _value(args, "--until")
        since = read_vector(since_text, "--since") if since_text else None
        until = read_vector(until_text, "--until") if until_text else None
        timeout = _value(args, "--timeout") or DEFAULT_TIMEOUT_S
        with _progress() as progress:
            report = verify_mirror(
                source,
                target,
                topics=_value(args, "--topics"),
                since=since,
                until=until,
                progress=progress,
                timeout=float(timeout),
                masked_copies=bool(_value(args, "--masked-copies")),
            )
    except CommandError as error:
        print(f"tidelog mirror --verify: {error}", file=sys.stderr)
        return error.status
    except (EngineError, ImportError, OSError) as error:
        print(f"tidelog mirror --verify: {error}", file=sys.stderr)
        return CANNOT_RUN
    _print_report(report, as_json=bool(_value(args, "--json")))
    return 0 if report.same else DIFFERENT


def _print_report(report: MirrorReport, *, as_json: bool) -> None:
    rows: list[dict[str, Any]] = [mismatch.to_json() for mismatch in report.topics]
    rows += [verdict.to_json() for verdict in report.partitions]
    status = "masked-copies" if report.masked_copies else "masked"
    rows += [
        {"topic": topic, "status": status, "detail": line}
        for topic, line in zip(report.masked, report.masked_lines(), strict=True)
    ]
    if as_json:
        emit(rows, (), as_json=True)
        return
    lines = [mismatch.describe() for mismatch in report.topics]
    for verdict in report.partitions:
        name = f"{verdict.topic}:{verdict.partition}"
        if verdict.difference is None:
            checked = "" if verdict.offsets_checked else " (no offset syncs: offsets not checked)"
            lines.append(
                f"{name}: same, {verdict.source_records} records, "
                f"sha256 {verdict.source_sha256}{checked}"
            )
        else:
            lines.append(
                f"{name}: DIFFERENT: {verdict.difference.describe()}; "
                f"{verdict.source_records} records on the source, "
                f"{verdict.target_records} on the target"
            )
    _print_lines(lines + report.masked_lines())


def _print_lines(lines: list[str]) -> None:
    """One line per partition, on a terminal and in a pipe alike (grep-able);
    a reader that leaves early (``| head``) ends the command with status 1."""
    try:
        for line in lines:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # later flushes (at exit) go nowhere
        raise SystemExit(DIFFERENT) from None


def add_translate_parser(subparsers: Any) -> None:
    """``translate REF_OR_VECTOR --to BOOTSTRAP [--to-config K=V ...]``."""
    parser = subparsers.add_parser(
        "translate",
        help="carry a record reference or offset vector over to the target cluster",
        description=(
            "Translate a record reference (topic:partition:offset:epoch[@topic-id]) or an "
            "offset vector (JSON, or @file) recorded against the source to the target "
            "cluster, through the offset syncs the mirror wrote there; print the translated "
            "text. A reference gets the target's leader epoch; a vector's positions stop at "
            "most at the target's end. With --from, a record that was not mirrored is named "
            "aborted, absent or deleted on the source. Exit 1 if it cannot be translated."
        ),
        epilog="example:\n  tidelog mirror translate orders:0:41:3 --to broker1:9092",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("reference", metavar="REF_OR_VECTOR")
    dests: dict[str, str] = {}
    for flag, options in _CONNECTION_FLAGS.items():
        if flag == "--from":
            why = "the source cluster: name why a record was not mirrored"
            _flag(parser, dests, flag, **{**options, "help": why})
        else:
            _flag(parser, dests, flag, **options)
    _flag(
        parser,
        dests,
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"the longest a read waits (default {DEFAULT_TIMEOUT_S:g})",
    )
    parser.set_defaults(run=run_translate, **{_DESTS: dests})


def run_translate(args: argparse.Namespace) -> int:
    """Prints the translated reference or vector; 1 if not translatable."""
    try:
        target = _cluster(args, "to")
        source = _cluster(args, "from") if _value(args, "--from") else None
        text = str(args.reference)
        vector, ref = _reference(text)
        topics = vector.topics if vector is not None else [ref.topic] if ref else []
        timeout = float(_value(args, "--timeout") or DEFAULT_TIMEOUT_S)
        with Translator(target, source=source, topics=topics, timeout=timeout) as translator:
            if vector is not None:
                print(translator.vector(vector).to_text())
            elif ref is not None:
                print(translator.ref(ref))
    except CommandError as error:
        print(f"tidelog mirror translate: {error}", file=sys.stderr)
        return error.status
    except NotTranslated as error:
        print(f"tidelog mirror translate: {error}", file=sys.stderr)
        return DIFFERENT
    except (ClusterReadError, EngineError, ImportError) as error:
        print(f"tidelog mirror translate: {error}", file=sys.stderr)
        return CANNOT_RUN
    return 0


def _reference(text: str) -> tuple[OffsetVector | None, RecordRef | None]:
    if text.startswith(("{", "@")):
        return read_vector(text, "REF_OR_VECTOR"), None
    try:
        return None, RecordRef.parse(text)
    except InvalidVector as error:
        raise CommandError(str(error), CANNOT_RUN) from error


def _progress() -> AbstractContextManager[_RecordProgress | None]:
    """A rich progress bar of source records compared, on a terminal only."""
    if not sys.stderr.isatty():
        return nullcontext(None)
    return _RecordProgress()


class _RecordProgress(AbstractContextManager["_RecordProgress"]):
    def __enter__(self) -> _RecordProgress:
        self._bar = Progress(
            TextColumn("verifying"),
            BarColumn(),
            MofNCompleteColumn(),
            transient=True,
            console=Console(stderr=True),
        )
        self._bar.start()
        self._task = self._bar.add_task("verify", total=None)
        return self

    def planned(self, records: int) -> None:
        self._bar.update(self._task, total=records)

    def advance(self, records: int) -> None:
        self._bar.advance(self._task, records)

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()
