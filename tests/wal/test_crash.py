"""Crash safety with a real kill -9: every acknowledged append comes back.

Crash images of every other kind (power loss with unsynced sectors lost in
any order) are built from a journal in test_recovery_rule.py.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wal import WriteAheadLog

SEGMENT = 2048


_WRITER = """
import sys
from wal import WriteAheadLog
log = WriteAheadLog(sys.argv[1], segment_bytes=65536)
i = 0
while True:
    log.append(b"record-%08d" % i + b"." * (i % 200))
    sys.stdout.write("%d\\n" % i)
    sys.stdout.flush()
    i += 1
"""


@pytest.mark.parametrize("run", range(2))
def test_sigkill_at_a_random_moment_loses_no_acknowledged_append(tmp_path: Path, run: int) -> None:
    directory = tmp_path / "wal"
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(directory)], stdout=subprocess.PIPE, env=env
    )
    assert child.stdout is not None
    # The moment is drawn once the writer has started: its start-up alone
    # (an interpreter, imports, the open) takes most of a second on a busy machine.
    acked = int(child.stdout.readline() or b"-1")
    deadline = time.monotonic() + 0.1 + random.random()
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        acked = int(line)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert acked > 0, "the writer acknowledged nothing before the kill"
    with WriteAheadLog(directory, segment_bytes=65536) as log:
        recovered = [bytes(e.payload) for e in log.replay()]
    expected = [b"record-%08d" % i + b"." * (i % 200) for i in range(len(recovered))]
    assert recovered == expected
    assert len(recovered) >= acked + 1
