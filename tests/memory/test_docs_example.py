"""docs/memory.md's "Typed agent records" example runs as written and
prints what its comments say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "memory.md"


def example() -> str:
    section = DOC.read_text().split("## Typed agent records", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None, "the section has no Python example"
    return found.group(1)


def test_the_typed_agent_records_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(example(), str(DOC), "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "agent.actions:0:5:1",
        "['tool_call', 'denial', 'approval', 'decision', 'compensation']",
    ]
    assert (tmp_path / "support-memory").is_dir()
