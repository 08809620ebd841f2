"""bench/gil_waits.py and its probe, bench/gil_probe/gil_probe.c: a thread's
wait for the GIL after an fdatasync, counted in a real process whose other
thread holds the GIL, and the acknowledgement's chain joined from a sync to
the loop's turn that ran its wake-up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.run import load_bench

gil_waits = load_bench("gil_waits.py", "bench_gil_waits")

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None or not sys.platform.startswith("linux"),
    reason="the probe is an LD_PRELOAD library built with the system's C compiler",
)

SYNCS = 50
CHILD = f"""
import os, sys, threading
stop = False
def spin():
    while not stop:
        pass
threading.Thread(target=spin, name="spinner", daemon=True).start()
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT)
reader, writer = os.pipe()
for _ in range({SYNCS}):
    os.pwrite(fd, b"x" * 4096, 0)  # pwrite64: not counted as a wake-up
    os.fdatasync(fd)
    os.write(writer, b"w")
stop = True
os.fdatasync(fd)  # ends the loop's last episode
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built: Path = gil_waits.build_probe(tmp_path_factory.mktemp("probe"))
    return built


def _run_with_probe(
    probe: Path, prefix: Path, script: str, *arguments: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -c script arguments...`` with the probe preloaded, writing
    to ``prefix``."""
    return subprocess.run(
        [sys.executable, "-c", script, *arguments],
        env=dict(os.environ, LD_PRELOAD=str(probe), TIDELOG_GIL_PROBE=str(prefix), **env),
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )


def test_a_syncing_thread_beside_a_spinning_one_waits_for_the_gil(
    probe: Path, tmp_path: Path
) -> None:
    _run_with_probe(probe, tmp_path / "gil", CHILD, str(tmp_path / "data"))
    [written] = [p for p in tmp_path.glob("gil.*") if p.suffix[1:].isdigit()]
    _, records = gil_waits.read_records(written)
    # The last sync's episode is written if the exit blocks on a lock after it.
    syncs = [r for r in records if r[7] == 1][:SYNCS]
    assert len(syncs) == SYNCS
    # Every episode between two syncs wrote to the pipe once (a wake-up).
    assert [r[8] for r in syncs] == [1] * SYNCS
    # The spinner takes the GIL while the main thread is in fdatasync: the
    # main thread waits to have it back. (The spinner's forced drop is seen
    # only when it reaches its switch wait before the main thread runs: not
    # on every hand-off, so not asserted here.)
    assert any(r[3] > 0 for r in syncs)
    # The wake-up is the episode's last step but one: its waits before it
    # are within its whole.
    assert all(r[10] <= r[3] and r[11] <= r[9] for r in syncs)
    # A wait's run delay is a part of it.
    assert all(r[9] <= r[3] for r in records if r[7] != gil_waits.FORCED_DROP)
    summary = gil_waits.summarize(syncs, 1.0)["wal_sync"]
    assert summary["waited_share"] > 0
    assert 0 <= summary["gil_run_delay_share"] <= 1


THREADS = 40
MANY_THREADS = f"""
import os, threading
stop = False
def spin():
    while not stop:
        pass
spinner = threading.Thread(target=spin, daemon=True)
spinner.start()
for _ in range({THREADS}):
    # Each runs Python longer than a switch interval beside the spinner:
    # made to let the GIL go, it waits to have it back (and reads its
    # schedstat).
    worker = threading.Thread(target=sum, args=(range(400_000),))
    worker.start()
    worker.join()
open_schedstats = sum(
    os.readlink(f"/proc/self/fd/{{fd}}").endswith("/schedstat")
    for fd in os.listdir("/proc/self/fd")
    if os.path.exists(f"/proc/self/fd/{{fd}}")
)
stop = True
print(open_schedstats)
"""


def test_a_threads_schedstat_file_is_closed_when_the_thread_ends(
    probe: Path, tmp_path: Path
) -> None:
    done = _run_with_probe(probe, tmp_path / "gil", MANY_THREADS)
    # The main thread's and the spinner's, and the last worker's if it is
    # still ending (a join returns before the thread's own exit), never
    # one per thread that ended.
    assert int(done.stdout) <= 3


def test_the_servers_records_are_found_beside_its_names_and_a_short_file(
    probe: Path, tmp_path: Path
) -> None:
    _run_with_probe(probe, tmp_path / "gil", CHILD, str(tmp_path / "data"))
    [written] = tmp_path.glob("gil.[0-9]*")
    pid = int(written.name[len("gil.") :])
    # Written after the records, as the server's names are: looked at first.
    (tmp_path / f"gil.names.{pid}").write_text(f'{{"{pid}": "MainThread"}}')
    (tmp_path / f"gil.{pid + 1}").write_bytes(b"")  # a process ended before its probe sized it
    found = gil_waits.server_records(tmp_path, 0.0, 2e9)
    assert found is not None
    records, names = found
    assert sum(1 for r in records if r[7] == 1) >= SYNCS
    assert names == {pid: "MainThread"}


def test_the_probe_records_only_in_a_process_with_the_argument_asked_for(
    probe: Path, tmp_path: Path
) -> None:
    for argument in ("client", "serve"):
        _run_with_probe(
            probe,
            tmp_path / argument,
            CHILD,
            str(tmp_path / "data"),
            argument,
            TIDELOG_GIL_PROBE_ARGUMENT="serve",
        )
    assert list(tmp_path.glob("client.*")) == []
    [written] = tmp_path.glob("serve.*")
    _, records = gil_waits.read_records(written)
    assert sum(1 for r in records if r[7] == 1) >= SYNCS


WOKEN_AND_POLLED = """
import select, socket, threading
wake = threading.Event()
def woken():
    for _ in range(20):
        wake.wait()  # a semaphore wait with the GIL let go
        wake.clear()
waiter = threading.Thread(target=woken, name="waiter")
waiter.start()
poller = select.epoll()
ours, theirs = socket.socketpair()
poller.register(ours, select.EPOLLIN)
for _ in range(20):
    theirs.send(b"x")
    poller.poll(1.0)  # epoll_wait
    ours.recv(1)
    poller.poll(0.005)  # nothing to read: the waiter has 5 ms to block
    wake.set()
    while wake.is_set() and waiter.is_alive():
        poller.poll(0.001)
waiter.join()
print(waiter.native_id)
"""


def test_a_lock_wait_and_a_poll_each_begin_an_episode(probe: Path, tmp_path: Path) -> None:
    done = _run_with_probe(probe, tmp_path / "gil", WOKEN_AND_POLLED)
    [written] = tmp_path.glob("gil.[0-9]*")
    _, records = gil_waits.read_records(written)
    waiter = int(done.stdout)
    # The waiter's wake-ups: a set before it blocks wakes nobody, so not
    # all 20 (under load) are asked for.
    assert sum(1 for r in records if r[7] == gil_waits.WOKEN and r[5] == waiter) >= 10
    # The main thread's polls, each but the last ended by its next block.
    assert sum(1 for r in records if r[7] == 2 and r[5] != waiter) >= 20


def _record(
    kind: int,
    returned_ms: float,
    length_ms: float,
    gil_ms: float,
    first_send_ms: float = 0.0,
    gil_after_send_ms: float = 0.0,
) -> tuple[int, ...]:
    ms = 1_000_000
    sends = 1 if first_send_ms else 0
    before_send_ms = gil_ms - gil_after_send_ms
    return (
        int(returned_ms * ms),
        0,
        int(length_ms * ms),
        int(gil_ms * ms),
        int(first_send_ms * ms),
        1,
        1 if gil_ms else 0,
        kind,
        sends,
        int(gil_ms * ms / 2),  # half of it runnable without a CPU
        int(before_send_ms * ms),
        int(before_send_ms * ms / 2),
    )


def test_a_syncs_chain_ends_with_the_first_loop_turn_after_its_wake_up() -> None:
    records = [
        _record(2, 0.0, 1.0, 0.5),  # a loop turn before the sync's wake-up
        _record(1, 0.5, 2.0, 1.5, first_send_ms=1.8),  # woke the loop at 2.3 ms
        _record(2, 3.0, 0.5, 0.25),  # the turn that ran it
        _record(2, 4.0, 9.0, 0.0),
        _record(1, 5.0, 0.1, 0.0),  # woke no loop: no chain
    ]
    assert gil_waits.chains_of(records) == [(3.0, 1.75, 0.875)]
    summary = gil_waits.summarize(records, 1.0)
    assert summary["ack_chain"]["syncs"] == 1
    assert summary["ack_chain"]["gil_share_of_slowest_1pct"] == round(1.75 / 3.0, 3)
    assert summary["ack_chain"]["run_delay_share_of_their_gil"] == 0.5
    assert summary["loop"]["episodes"] == 3
    assert summary["loop"]["waited_share"] == round(2 / 3, 3)


def test_a_syncs_waits_for_the_gil_after_its_wake_up_are_no_part_of_its_chain() -> None:
    # The sync waited 0.5 ms before its wake-up and 2 ms after it, while the
    # loop ran the turn it woke (2 ms of 2.5): those 2 ms are the loop's
    # work, not a wait of the chain's.
    records = [
        _record(1, 0.0, 5.0, 2.5, first_send_ms=1.0, gil_after_send_ms=2.0),
        _record(2, 1.2, 2.5, 0.1),
    ]
    assert gil_waits.chains_of(records) == [(3.7, 0.6, 0.3)]


def test_forced_drops_are_counted_for_python_threads_only() -> None:
    drop = (0, 4_000_000, 0, 0, 0, 7, 0, gil_waits.FORCED_DROP, 0, 0)
    unnamed = (0, 4_000_000, 0, 0, 0, 8, 0, gil_waits.FORCED_DROP, 0, 0)
    rates = gil_waits.forced_drops([drop, drop, unnamed], {7: "MainThread"}, 2.0)
    assert rates == {"MainThread": 1.0}


def test_the_syncs_are_counted_by_the_thread_that_made_them() -> None:
    # The WAL's writer syncs a lone group itself; the sync thread the rest.
    syncs = [_record(1, float(at), 0.1, 0.0) for at in range(3)]
    by_writer = [(*r[:5], 8, *r[6:]) for r in syncs[:2]]
    rows = gil_waits.syncs_by_thread(
        [*by_writer, syncs[2], _record(2, 0.0, 1.0, 0.0)],
        {1: "wal-sync", 8: "wal-group-commit"},
    )
    assert rows == {"wal-group-commit": 2, "wal-sync": 1}


def test_waits_after_a_wake_up_are_kept_by_thread() -> None:
    woken = [
        (0, 0, 1_000_000, gil, 0, 7, 1, gil_waits.WOKEN, 0, 0) for gil in (0, 2_000_000, 4_000_000)
    ]
    rows = gil_waits.woken_by_thread(woken, {7: "wal-group-commit"}, 2.0)
    assert rows == {
        "wal-group-commit": {
            "episodes": 3,
            "gil_p99_ms": 4.0,
            "gil_p999_ms": 4.0,
            "gil_ms_per_s": 3.0,
        }
    }
