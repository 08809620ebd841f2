"""docs/memory.md's runnable examples: the first Python block of a section."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "memory.md"


def python_example(heading: str) -> str:
    """The first ```python block of the section whose heading starts with
    ``heading`` (e.g. "## Typed agent records")."""
    section = DOC.read_text().split(heading, 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None, f"the section {heading!r} has no Python example"
    return found.group(1)


def run(example: str) -> None:
    """Runs an example as a script of its own would run (in the caller's cwd)."""
    exec(compile(example, str(DOC), "exec"), {})
