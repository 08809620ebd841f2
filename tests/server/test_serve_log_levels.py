"""``tidelog serve --log-level``: the root logger's level, then single
loggers' (LOGGER=LEVEL, comma-separated); a bad value is refused before
anything is opened."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli.serve import log_levels


@pytest.mark.parametrize("level", ["info", "DEBUG", "WARNING", "critical"])
def test_the_root_level_alone_any_that_logging_knows(level: str) -> None:
    assert log_levels(level) == (level.upper(), {})


def test_single_loggers_after_the_root() -> None:
    assert log_levels("WARNING, tidelog.stalls=debug,tidelog.wal=ERROR") == (
        "WARNING",
        {"tidelog.stalls": "DEBUG", "tidelog.wal": "ERROR"},
    )


@pytest.mark.parametrize(
    "text", ["LOUD", "INFO,tidelog.stalls", "INFO,=DEBUG", "INFO,tidelog.stalls=LOUD"]
)
def test_a_bad_value_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="--log-level"):
        log_levels(text)


def test_serve_refuses_a_bad_value_with_status_2_and_opens_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-m", "engine", "serve", "--data-dir", str(data),
         "--listen", "127.0.0.1:0", "--log-level", "INFO,tidelog.stalls"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "'tidelog.stalls' is not LOGGER=LEVEL" in result.stderr
    assert not data.exists()
