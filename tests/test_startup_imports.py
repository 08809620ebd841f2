"""What starting tidelog imports: `tidelog serve` on its embedded default, the
in-process test broker and `import engine` load none of the heavy libraries
they do not use (test tools, clients of other systems, web and metrics
stacks, schema libraries), and `tidelog serve` loads the HTTP stack only
when it serves HTTP. Each runs in a child process of its own, with only this
checkout on its path (hypothesis is installed here, as in a development
environment, and nothing hides it), so a start-up made slow by a new import
fails here without timing anything (bench/startup_bench.py has the times).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli.main import _COMMANDS, _build_parser

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 120.0

HEAVY = (
    "hypothesis",  # a test tool; kio imports it whenever it can
    "pytest",
    "moto",
    "botocore",  # only for an s3:// object store
    "boto3",  # a plain S3 client of the tests and benchmarks
    "aiohttp",  # only for the schema registry and /metrics
    "prometheus_client",  # only once something reads the metrics
    "jsonschema",  # only when an agent action or a JSON schema is checked
    "fastavro",
    "google.protobuf",  # only when a PROTOBUF schema is registered or checked
    "grpc_tools",
    "engine.schemas.proto_files",  # what only Protobuf schemas need, and its imports
    "rich",  # the operator commands' tables
    "matplotlib",
    "pyiceberg",
    "pyarrow",
    "duckdb",
    "confluent_kafka",
    "kafka",
    "aiokafka",
    "crc32c",  # the pure twin's (its import reads every installed package's metadata)
    "tomllib",  # only for --config
    "engine.server.handlers.requests",  # every version's kio request class
    "engine.client.consumer",  # the embedded clients, agent memory's readers
    "engine.memory.replay",
    "engine.verify",
)

PRINT_LOADED = f"print(json.dumps([n for n in {HEAVY!r} if sys.modules.get(n) is not None]))"

SERVE = """
import json, logging, os, signal, sys

class _Listening(logging.Handler):
    # Called on the server's loop as it logs that it listens: the engine is
    # open and the Kafka listener started; what else is configured starts
    # before the signal is handled, and the serve command then stops cleanly.
    def emit(self, record):
        if record.getMessage().startswith("listening on"):
            os.kill(os.getpid(), signal.SIGTERM)

logging.getLogger("tidelog.server").addHandler(_Listening())
from engine.cli.main import main
status = main(["serve", "--listen", "127.0.0.1:0", "--data-dir", sys.argv[1], *sys.argv[2:]])
PRINT_LOADED
sys.exit(status)
""".replace("PRINT_LOADED", PRINT_LOADED)

TEST_BROKER = """
import json, sys
import engine.testing
with engine.testing.start() as broker:
    broker.create_topic("t")
    PRINT_LOADED
""".replace("PRINT_LOADED", PRINT_LOADED)

IMPORT_ENGINE = "import json, sys, engine\n" + PRINT_LOADED


def _loaded_by(code: str, *args: str) -> list[str]:
    """The heavy modules a child running ``code`` had loaded when it printed them."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # nothing first on the path (no child_site)
    env.pop("TIDELOG_PURE", None)
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.stdout, f"the child printed nothing (exit {done.returncode}): {done.stderr}"
    loaded: list[str] = json.loads(done.stdout.splitlines()[0])
    return loaded


def test_the_child_can_import_hypothesis_so_its_absence_is_the_engines_doing() -> None:
    assert _loaded_by("import json, sys, hypothesis\n" + PRINT_LOADED) == ["hypothesis"]


def test_import_engine_loads_no_heavy_library() -> None:
    assert _loaded_by(IMPORT_ENGINE) == []


def test_serve_on_its_default_loads_no_heavy_library(tmp_path: Path) -> None:
    assert _loaded_by(SERVE, str(tmp_path / "data")) == []


def test_serve_loads_the_http_stack_when_it_serves_metrics(tmp_path: Path) -> None:
    loaded = _loaded_by(SERVE, str(tmp_path / "data"), "--http", "127.0.0.1:0")
    assert {"aiohttp", "prometheus_client"} <= set(loaded)
    assert "hypothesis" not in loaded


def test_the_test_broker_loads_no_heavy_library() -> None:
    assert _loaded_by(TEST_BROKER) == []


# -- the command line registers only the command it runs ----------------------


def _options(parser: object) -> dict[str, list[str]]:
    """Each command of a parser and the option strings of its own parser."""
    commands = next(
        action
        for action in parser._actions  # type: ignore[attr-defined]
        if action.dest == "command"
    )
    return {
        name: sorted(o for a in sub._actions for o in a.option_strings)
        for name, sub in commands.choices.items()
    }


def test_the_command_table_names_every_command_the_modules_add() -> None:
    assert list(_options(_build_parser())) == list(_COMMANDS)


@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_a_command_parsed_alone_has_every_option_it_has_among_all(command: str) -> None:
    alone = _options(_build_parser(command))
    assert alone[command] == _options(_build_parser())[command]
