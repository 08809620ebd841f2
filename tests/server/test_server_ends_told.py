"""A test that fails beside a server that crashed says how the server
ended (its signal, its log's tail), and a fixture's teardown fails on a
server that ended unasked, where it passed it by as already stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.child_ends import how_it_ended
from tests.server.conftest import ServerProcess

ROOT = Path(__file__).resolve().parents[2]

FAILS_BESIDE_A_CRASH = """
import os, signal, socket
from pathlib import Path

from tests.server.conftest import ServerProcess


def test_beside_a_crash(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    os.kill(server.process.pid, signal.SIGSEGV)
    server.process.wait(60)
    socket.create_connection(("127.0.0.1", server.port), timeout=5)
"""


def _segfaulted(server: ServerProcess) -> None:
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSEGV)
    server.process.wait(60)


def test_a_teardown_fails_on_a_server_that_ended_unasked(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    _segfaulted(server)
    assert not server.running
    with pytest.raises(AssertionError, match=r"killed by SIGSEGV \(11\); its log's tail:\n"):
        server.end_at_teardown(graceful=True)
    assert server.process is None


def test_a_teardown_stops_a_running_server_quietly(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    assert server.ended_unasked() is None
    server.end_at_teardown(graceful=True)
    assert server.process is None and server.ended_unasked() is None


def test_a_failed_test_is_told_how_the_server_beside_it_ended(tmp_path: Path) -> None:
    (tmp_path / "test_beside.py").write_text(FAILS_BESIDE_A_CRASH)
    (tmp_path / "conftest.py").write_text(
        "from tests.server.conftest import pytest_runtest_makereport  # noqa: F401\n"
    )
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(tmp_path / "test_beside.py")],
        cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "ConnectionRefusedError" in ran.stdout
    assert "how the server ended" in ran.stdout, ran.stdout
    assert "killed by SIGSEGV (11); its log's tail:" in ran.stdout, ran.stdout


def test_an_exit_code_and_a_signal_are_named() -> None:
    assert how_it_ended(0) == "exited with code 0"
    assert how_it_ended(-signal.SIGSEGV) == "killed by SIGSEGV (11)"
    assert how_it_ended(-200) == "killed by an unknown signal (200)"
