"""The README's Python examples of the engine, the WAL, record batches and
streams on object storage run as written, each in a fresh directory (only
the s3stream example's bucket, a fixed path under /tmp, is moved into it).
The Kafka-client example needs a server: tests/server/test_readme.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "file:///tmp/tidelog-bucket"


def _examples() -> dict[str, str]:
    """Each Python block of the README under a "### ... from Python" heading."""
    examples = {}
    for section in re.split(r"^### ", (ROOT / "README.md").read_text(), flags=re.M)[1:]:
        heading = section.splitlines()[0]
        block = re.search(r"```python\n(.*?)```", section, re.S)
        if heading.endswith("from Python") and block is not None:
            examples[heading] = block.group(1)
    return examples


# What each example prints of the data it wrote: it ran to its end.
PRINTS = {
    "The engine from Python": "b'session-17' b'{\"tool\": \"search\"}'",
    "The write-ahead log from Python": "b'tool_call: lookup_order(42)'",
    "Record batches from Python": "key=b'key', value=b'value', headers=(('trace', b't1'),)",
    "Streams on object storage from Python": "0 10 b'ten records, stored as given'",
}


def test_the_readme_has_the_examples_run_here() -> None:
    assert set(_examples()) >= set(PRINTS)


@pytest.mark.parametrize("heading", sorted(PRINTS))
def test_a_readme_example_runs_as_written(tmp_path: Path, heading: str) -> None:
    code = _examples()[heading].replace(BUCKET, (tmp_path / "bucket").as_uri())
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert PRINTS[heading] in result.stdout
