"""A served process that crashes under a benchmark is named as crashed:
its signal and its log's tail follow the client's own error, where a
segfault of the server read as "Connection reset by peer" alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.bench.run import BENCH, load_bench, run_bench

tail = load_bench("tail_instructions.py", "bench_tail_instructions_served_ends")
harness = tail._harness  # the one its _Server raises from

CRASHES_ON_SIGUSR1 = r"""
import os, signal, sys, runpy
def crash(signum, frame):
    print("about to crash", flush=True)
    signal.signal(signal.SIGSEGV, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGSEGV)
signal.signal(signal.SIGUSR1, crash)
sys.argv = ["engine"] + sys.argv[1:]
runpy.run_module("engine", run_name="__main__", alter_sys=True)
"""
"""A server that segfaults when the bench starts counting."""


def test_a_server_that_crashed_before_its_stop_is_named_with_its_signal_and_log(
    tmp_path: Path,
) -> None:
    server = tail._Server(BENCH.parent, tmp_path, "crashing", (CRASHES_ON_SIGUSR1, []))
    os.kill(server.process.pid, signal.SIGUSR1)
    server.process.wait(60)
    with pytest.raises(harness.ServerEnded) as ended:
        server.stop()
    said = str(ended.value)
    assert "killed by SIGSEGV (11)" in said
    assert "about to crash" in said  # the log's tail
    assert server.log.closed


def test_a_server_that_runs_is_stopped_without_a_word(tmp_path: Path) -> None:
    server = tail._Server(BENCH.parent, tmp_path, "plain")
    server.stop()
    assert server.process.returncode == 0
    assert server.log.closed


def test_an_exit_code_and_an_unknown_signal_are_named() -> None:
    assert harness.how_it_ended(3) == "exited with code 3"
    assert harness.how_it_ended(-signal.SIGKILL) == "killed by SIGKILL (9)"
    assert harness.how_it_ended(-200) == "killed by an unknown signal (200)"


def test_a_child_ended_by_a_signal_fails_its_stop_with_the_signal(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("the last line\n")
    child = subprocess.Popen([sys.executable, "-c", "import os; os.abort()"])
    child.wait(60)
    with pytest.raises(harness.ServerEnded, match=r"killed by SIGABRT \(6\).*\n.*the last line"):
        harness.stop_server(child, log)


def test_a_benchmark_killed_by_a_signal_is_named_so(tmp_path: Path) -> None:
    script = tmp_path / "crashes.py"  # an absolute path: BENCH / script is the script
    script.write_text("import os, sys\nprint('half a table', file=sys.stderr)\nos.abort()\n")
    with pytest.raises(AssertionError, match=r"crashes.py killed by SIGABRT \(6\):\nhalf a table"):
        run_bench(str(script))


def test_a_child_that_crashes_as_it_is_stopped_is_named_so(tmp_path: Path) -> None:
    # As a crash whose closed sockets the client saw before its process ended.
    log = tmp_path / "server.log"
    crashes_on_sigterm = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: os.abort())\n"
        "print('listening', flush=True)\n"
        "time.sleep(60)\n"
    )
    with log.open("wb") as out:
        child = subprocess.Popen([sys.executable, "-c", crashes_on_sigterm], stdout=out)
    while b"listening" not in log.read_bytes():
        assert child.poll() is None
        time.sleep(0.01)
    with pytest.raises(harness.ServerEnded, match=r"killed by SIGABRT \(6\) as it was stopped"):
        harness.stop_server(child, log)
