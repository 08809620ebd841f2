"""How the operator commands print rows: a ``rich`` table on a terminal,
tab-separated lines in a pipe (one row a line, no header, so ``cut`` and
``awk`` read them), a JSON array with ``--json``."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table


@contextmanager
def _reader_may_leave(stream: TextIO) -> Iterator[None]:
    """A reader that stops early (``| head``) ends the command quietly, with
    status 1, instead of with a traceback (as the Python docs advise for
    SIGPIPE)."""
    try:
        yield
    except BrokenPipeError:
        if stream is sys.stdout:
            # Later flushes (at exit) would fail again: point stdout at nothing.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(1) from None


def emit(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    *,
    as_json: bool,
    title: str | None = None,
    out: TextIO | None = None,
) -> None:
    """Print ``rows`` (each a dict holding at least ``columns``)."""
    stream = out if out is not None else sys.stdout
    with _reader_may_leave(stream):
        _emit(rows, columns, as_json, title, stream)


def _emit(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    as_json: bool,
    title: str | None,
    stream: TextIO,
) -> None:
    if as_json:
        stream.write(json.dumps(list(rows), separators=(",", ":")) + "\n")
    elif stream.isatty():
        table = Table(title=title)
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(_cell(row.get(column)) for column in columns))
        Console(file=stream).print(table)
    else:
        for row in rows:
            stream.write("\t".join(_cell(row.get(column)) for column in columns) + "\n")
    stream.flush()


def emit_object(value: dict[str, Any], *, as_json: bool, out: TextIO | None = None) -> None:
    """Print one record: JSON with ``--json``, else ``key<TAB>value`` lines
    (nested lists and objects as compact JSON)."""
    stream = out if out is not None else sys.stdout
    if not as_json:
        emit(
            [{"key": key, "value": item} for key, item in value.items()],
            ("key", "value"),
            as_json=False,
            out=stream,
        )
        return
    with _reader_may_leave(stream):
        stream.write(json.dumps(value, separators=(",", ":")) + "\n")
        stream.flush()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
