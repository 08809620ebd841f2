"""The `tidelog` command line: `serve`, `recover` and `wal-bench`."""

from engine.cli.main import main

__all__ = ["main"]
