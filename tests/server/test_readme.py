"""The README's Kafka-client example runs as written against the server
(only its bootstrap address is changed to the test server's)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.server.conftest import ServerProcess

README = Path(__file__).resolve().parents[2] / "README.md"


def client_example() -> str:
    section = README.read_text().split("### Any Kafka client", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the README's Kafka-client section has no Python example"
    return match.group(1)


def test_the_readme_client_example_produces_and_replays(kafka_server: ServerProcess) -> None:
    code = client_example()
    assert "127.0.0.1:9092" in code
    result = subprocess.run(
        [sys.executable, "-c", code.replace("127.0.0.1:9092", kafka_server.bootstrap)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == """b'{"tool": "search"}'"""
