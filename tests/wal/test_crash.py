"""Crash safety: damage after the last durable record never costs a durable one.

A crash can only damage bytes that were not yet synced: the tail of the last
segment past the durable point. The model: append records, pick the durable
point, then truncate at a random byte past it or scribble over bytes past it.
After reopening, the records are a prefix of what was appended that includes
every durable one, and nothing else (no stale or torn record ever comes back).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.wal.conftest import segment_files
from wal import WriteAheadLog

SEGMENT = 2048


def _recovered(directory: Path) -> list[bytes]:
    with WriteAheadLog(directory, segment_bytes=SEGMENT) as log:
        return [bytes(e.payload) for e in log.replay()]


@settings(max_examples=60)
@given(
    sizes=st.lists(st.integers(0, 700), min_size=1, max_size=25),
    durable_fraction=st.floats(0, 1),
    damage=st.sampled_from(["truncate", "scribble", "zero"]),
    cut=st.floats(0, 1),
    seed=st.integers(0, 2**32 - 1),
    reopen_first=st.booleans(),
)
def test_recovery_returns_a_prefix_holding_every_durable_record(
    tmp_path_factory: pytest.TempPathFactory,
    sizes: list[int],
    durable_fraction: float,
    damage: str,
    cut: float,
    seed: int,
    reopen_first: bool,
) -> None:
    directory = tmp_path_factory.mktemp("crash")
    rng = random.Random(seed)
    appended = [rng.randbytes(size) for size in sizes]
    if reopen_first:  # an earlier, empty life of the log: a sealed segment before ours
        WriteAheadLog(directory, segment_bytes=SEGMENT).close()
    with WriteAheadLog(directory, segment_bytes=SEGMENT) as log:
        positions = [log.append(p) for p in appended]
        last_segment = positions[-1].segment
        # Only records in the last segment can be unsynced: a roll syncs the old one.
        in_last = [i for i, p in enumerate(positions) if p.segment == last_segment]
        durable_count = in_last[0] + round(durable_fraction * (len(in_last) - 1 + 1))
        durable_count = min(durable_count, len(appended))
        log.close()
    tail = segment_files(directory)[-1]
    raw = bytearray(tail.read_bytes())
    start = positions[durable_count].offset if durable_count < len(appended) else len(raw)
    start = min(start, len(raw))
    point = start + int(cut * (len(raw) - start))
    if damage == "truncate":
        raw = raw[:point]
    elif damage == "scribble":
        for i in range(point, min(len(raw), point + 64)):
            raw[i] = rng.randrange(256)
    else:
        raw[point:] = bytes(len(raw) - point)
    tail.write_bytes(raw)

    try:
        recovered = _recovered(directory)
        assert recovered == appended[: len(recovered)]
        assert len(recovered) >= durable_count
        # Recovery is idempotent: a second open finds the same records.
        assert _recovered(directory) == recovered
    finally:
        shutil.rmtree(directory, ignore_errors=True)  # not kept per example


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
    acked = -1
    deadline = time.monotonic() + 0.5 + random.random()
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
