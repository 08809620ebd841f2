"""docs/memory.md's "Typed agent records" example runs as written and
prints what its comments say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.memory.doc_examples import python_example, run


def example() -> str:
    return python_example("## Typed agent records")


def test_the_typed_agent_records_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    run(example())
    printed = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"agent\.actions:0:5:1@[A-Za-z0-9_-]{22}", printed[0])
    assert printed[1:] == ["['tool_call', 'denial', 'approval', 'decision', 'compensation']"]
    assert (tmp_path / "support-memory").is_dir()
