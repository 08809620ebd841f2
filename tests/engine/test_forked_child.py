"""A process forked without exec (os.fork, multiprocessing's fork start
method) from one with an open engine never holds its data directory: the
child closes its copy of the WAL lock's descriptor at the fork, the
parent's lock stays the parent's, and once the parent closes the engine it
opens the directory again while the child still runs. The child's exit
leaves the directory and the reopened engine alone."""

from __future__ import annotations

import json
import multiprocessing
import os
import select
from collections.abc import Callable
from pathlib import Path

import pytest

import engine
from tests.engine.conftest import EngineFactory
from tests.engine.helpers_records import batch, child_command, read_partition, run_child
from wal.directory_lock import lock_directory
from wal.errors import LogLocked

LOCKED, NOT_LOCKED = b"L", b"U"


def _child(wal_directory: str, report: int, go: int) -> int:
    """What the forked child does: tries the directory's lock (still the
    parent's: LOCKED), then waits for the parent's word, at most a minute."""
    try:
        lock_directory(wal_directory).release()
        os.write(report, NOT_LOCKED)
    except LogLocked:
        os.write(report, LOCKED)
    ready, _, _ = select.select([go], [], [], 60)
    return 0 if ready else 3


def _forked_by_os(wal_directory: str, report: int, go: int) -> Callable[[], int]:
    pid = os.fork()
    if pid == 0:  # the child: never back into the test's process
        code = 1
        try:
            code = _child(wal_directory, report, go)
        finally:
            os._exit(code)

    def exit_code() -> int:
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    return exit_code


def _mp_target(wal_directory: str, report: int, go: int) -> None:
    raise SystemExit(_child(wal_directory, report, go))


def _forked_by_multiprocessing(wal_directory: str, report: int, go: int) -> Callable[[], int]:
    child = multiprocessing.get_context("fork").Process(
        target=_mp_target, args=(wal_directory, report, go)
    )
    child.start()

    def exit_code() -> int:
        child.join(60)
        assert child.exitcode is not None, "the child did not exit"
        return child.exitcode

    return exit_code


@pytest.mark.parametrize("fork", [_forked_by_os, _forked_by_multiprocessing])
def test_a_forked_child_never_holds_the_directory_its_parent_closed(
    engine_factory: EngineFactory,
    tmp_path: Path,
    fork: Callable[[str, int, int], Callable[[], int]],
) -> None:
    data_dir = tmp_path / "node"
    e = engine_factory(data_dir)
    e.create_topic("t", 1)
    e.produce("t", 0, batch([b"before the fork"]))
    wal_directory = str(data_dir / "wal")
    report_read, report_write = os.pipe()
    go_read, go_write = os.pipe()
    try:
        exit_code = fork(wal_directory, report_write, go_read)
        # Closing its copy left the parent's lock as it was.
        assert os.read(report_read, 1) == LOCKED
        e.close()
        with engine.open(data_dir) as reopened:  # the child still runs
            reopened.produce("t", 0, batch([b"after the fork"]))
            os.write(go_write, b"x")
            assert exit_code() == 0
            # The child's exit left the directory and its lock to the engine.
            with pytest.raises(LogLocked):
                lock_directory(wal_directory)
            reopened.produce("t", 0, batch([b"after the child"]))
            values = [r.value for r in read_partition(reopened, "t", 0)]
        assert values == [b"before the fork", b"after the fork", b"after the child"]
    finally:
        for fd in (report_read, report_write, go_read, go_write):
            os.close(fd)


def test_a_forked_child_s_exit_closes_none_of_its_parent_s_engines(tmp_path: Path) -> None:
    """A child that exits through the interpreter's exit (atexit and all)
    closes no engine its parent opened: it has none of their threads, and
    their files and store are the parent's."""
    done = run_child(child_command("child_forks_and_exits.py", str(tmp_path / "node")))
    assert json.loads(done.stdout) == {
        "child_exit": 0,
        "values": ["before the fork", "after the fork", "after the child"],
    }
    assert "did not close within" not in done.stderr  # the child tried no close
