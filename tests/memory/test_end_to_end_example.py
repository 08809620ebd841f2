"""docs/memory.md's end-to-end example runs as written and prints what its
comments say: the decision's history, exactly the events the agent had seen
(not the one after its decision), and a fork that replays them with its own
event while the parent keeps its own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.memory.doc_examples import python_example, run


def example() -> str:
    return python_example("## End to end:")


def test_the_end_to_end_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    run(example())
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "['decision', 'approval', 'compensation']",
        "['placed', 'delivered', 'refund-requested']",
        "['placed', 'delivered', 'refund-requested', 'escalated']",
        "(0, 4)",
    ]
    # each printed line is what the example's comment next to it says
    comments = re.findall(r"print\(.*\)(?:  #|\n\s*#) (.*)", example())
    assert len(comments) == len(printed)
    for comment, line in zip(comments, printed, strict=True):
        assert comment.startswith(line), (comment, line)
