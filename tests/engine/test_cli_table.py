"""How the operator commands print rows: a table on a terminal, tab-separated
lines in a pipe, JSON with --json."""

from __future__ import annotations

import io
import json

import pytest

from engine.cli.table import emit, emit_object

ROWS = [
    {"topic": "orders", "partitions": 3, "configs": {"a": "1"}},
    {"topic": "x", "partitions": None},
]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_pipe_gets_one_tab_separated_line_per_row() -> None:
    out = io.StringIO()
    emit(ROWS, ("topic", "partitions", "configs"), as_json=False, out=out)
    assert out.getvalue().splitlines() == ['orders\t3\t{"a":"1"}', "x\t-\t-"]


def test_json_is_the_rows_themselves() -> None:
    out = io.StringIO()
    emit(ROWS, ("topic",), as_json=True, out=out)
    assert json.loads(out.getvalue()) == ROWS
    one = io.StringIO()
    emit_object({"cluster_id": "c", "brokers": [1]}, as_json=True, out=one)
    assert json.loads(one.getvalue()) == {"cluster_id": "c", "brokers": [1]}


def test_a_terminal_gets_a_table_with_a_header() -> None:
    out = _Terminal()
    emit(ROWS, ("topic", "partitions"), as_json=False, title="topics", out=out)
    text = out.getvalue()
    lines = text.splitlines()
    header = next(line for line in lines if "topic" in line and "partitions" in line)
    assert "\t" not in text
    assert lines.index(header) < next(i for i, line in enumerate(lines) if "orders" in line)
    assert any("x" in line and "-" in line for line in lines)


class _ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_reader_that_leaves_early_ends_the_command_quietly() -> None:
    with pytest.raises(SystemExit) as exit_:
        emit(ROWS, ("topic",), as_json=False, out=_ClosedPipe())
    assert exit_.value.code == 1
    with pytest.raises(SystemExit):
        emit_object({"a": 1}, as_json=True, out=_ClosedPipe())
