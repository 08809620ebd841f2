"""Runs a benchmark of bench/ as people run it: a child process, its
command line, its output read back."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from tests.child_ends import how_it_ended

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run_bench(script: str, *args: str, timeout: float = 280) -> str:
    """bench/``script`` run with ``args``; what it printed, once it exited 0."""
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{script} {how_it_ended(result.returncode)}:\n{result.stderr}"
    return result.stdout


def load_bench(script: str, name: str) -> ModuleType:
    """bench/``script`` imported as module ``name``, for tests of its parts.
    It is registered under that name (dataclasses look their module up by
    name), and bench/ is on the path only while it loads, for its imports of
    its neighbours, as when it runs as a script."""
    spec = importlib.util.spec_from_file_location(name, BENCH / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(BENCH))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module
