"""docs/engine.md's tutorial runs as written."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "engine.md"


def _tutorial_source() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    return next(block for block in blocks if "async def main" in block)


def test_the_tutorial_records_and_replays_tool_calls(tmp_path: Path) -> None:
    namespace: dict[str, object] = {"__name__": "tutorial"}
    exec(compile(_tutorial_source(), str(DOC), "exec"), namespace)
    main = namespace["main"]
    # The tutorial asserts its own replays, before and after a restart.
    asyncio.run(main(str(tmp_path / "memory")))  # type: ignore[operator]
