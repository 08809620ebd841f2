"""docs/governance.md's worked example runs as written against a real
``tidelog serve`` (only its addresses and data directory are changed to
the test's), and says what it shows: the refusal naming the missing field,
the broker's provenance stamps, the masked tool input and the verified
hash chain."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.server.conftest import ServerProcess, free_port

GOVERNANCE = Path(__file__).resolve().parents[1] / "docs" / "governance.md"
SECTION = "## A worked example"
STAMP = (
    r"(\d+) refund-7 tidelog\.principal=User:ANONYMOUS,tidelog\.client\.id=rdkafka,"
    r"tidelog\.listener=PLAINTEXT,tidelog\.client\.address=127\.0\.0\.1:\d+,"
    r"tidelog\.received\.ms=\d+"
)
VERIFIED = (
    r"support\.actions:0: verified offsets \[0, 5\) from its genesis, \d+ batches?, \d+ bytes; "
    r"head [0-9a-f]{64}\n"
    r"support\.actions:0: links made with [A-Z0-9-]+ \(\d+ ranges?\)"
    r"(, [A-Z0-9-]+ \(\d+ ranges?\))*\n"
    r"support\.actions:0: stamped by the broker in offsets \[0, end\); "
    r"elsewhere stamp-named headers are the writer's own"
)
READY = "Schema Registry API on"


def example_blocks() -> list[tuple[str, str]]:
    """The example's fenced blocks in order: (language, text)."""
    section = GOVERNANCE.read_text().split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, re.DOTALL)


class Example:
    """Runs the example's commands with the test server's addresses."""

    def __init__(self, server: ServerProcess, registry: str, cwd: Path) -> None:
        self.server, self.registry, self.cwd = server, registry, cwd

    def localize(self, code: str) -> str:
        return (
            code.replace("127.0.0.1:9092", self.server.bootstrap)
            .replace("http://127.0.0.1:8081", self.registry)
            .replace("--data-dir support-memory", f"--data-dir {self.server.data_dir}")
            # the tidelog under test, whichever is first on PATH
            .replace("tidelog ", f"{sys.executable} -m engine ")
        )

    def run(self, language: str, code: str) -> subprocess.CompletedProcess[str]:
        command = ["bash", "-euo", "pipefail", "-c"] if language == "sh" else [sys.executable, "-c"]
        return subprocess.run(
            [*command, self.localize(code)],
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture
def example(tmp_path: Path) -> Example:
    registry_port = free_port()
    server = ServerProcess(
        tmp_path / "support-memory", args=["--schema-registry", f"127.0.0.1:{registry_port}"]
    )
    server.start()
    deadline = time.monotonic() + 60
    while READY not in server.log():
        assert time.monotonic() < deadline and server.running, server.log()
        time.sleep(0.05)
    try:
        yield Example(server, f"http://127.0.0.1:{registry_port}", tmp_path)
    finally:
        server.stop()


def test_the_governance_example_runs_as_written_and_shows_what_it_says(
    example: Example,
) -> None:
    blocks = example_blocks()
    commands = [(i, lang, code) for i, (lang, code) in enumerate(blocks) if lang != "text"]
    shown = {i: code for i, (lang, code) in enumerate(blocks) if lang == "text"}
    serve = commands.pop(0)
    assert serve[2].startswith("tidelog serve --data-dir support-memory --schema-registry")

    outputs: dict[int, str] = {}
    for index, language, code in commands:
        if "tidelog verify" in code:
            continue  # below: it proves what the object store holds, once uploaded
        result = example.run(language, code)
        assert result.returncode == 0, (code, result.stdout, result.stderr)
        outputs[index] = result.stdout
    verify_index, _, verify_code = next(c for c in commands if "tidelog verify" in c[2])

    def output_shown_after(index: int) -> str:
        return outputs[index].strip()

    refusal = next(i for i, _, code in commands if "InvalidRecordError" in code)
    assert output_shown_after(refusal) == shown[refusal + 1].strip()
    assert "'actor' is a required property" in shown[refusal + 1]

    stamps = next(i for i, _, code in commands if "%h" in code)
    lines = output_shown_after(stamps).splitlines()
    assert [re.fullmatch(STAMP, line) is not None for line in lines] == [True] * 5, lines
    assert [int(re.fullmatch(STAMP, line)[1]) for line in lines] == list(range(5))  # type: ignore[index]
    assert re.fullmatch(STAMP, shown[stamps + 1].splitlines()[0])  # the doc shows the real shape

    masked = next(i for i, _, code in commands if "support.tool-inputs -e" in code)
    read, documented = json.loads(output_shown_after(masked)), json.loads(shown[masked + 1])
    for record in (read, documented):
        assert record["customer"]["email"] == "***" and "card" not in record
        assert re.fullmatch(r"[0-9a-f]{32}", record["customer"]["name"])
    read["customer"]["name"] = documented["customer"]["name"]  # a per-topic random key
    assert read == documented

    assert re.fullmatch(VERIFIED, shown[verify_index + 1].strip())
    deadline = time.monotonic() + 60
    while True:  # the stored batches reach the object store within the upload interval
        verified = example.run("sh", verify_code)
        if verified.returncode == 0 and re.fullmatch(VERIFIED, verified.stdout.strip()):
            break
        assert time.monotonic() < deadline, (verified.stdout, verified.stderr)
        time.sleep(0.5)
