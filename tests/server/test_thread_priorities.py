"""`tidelog serve` lays its threads out in priorities (docs/operations.md,
"Thread priorities"): with ``[store] background_nice`` set, the server's
background threads run that much below it once it uploads, while its
main thread, the event loop, keeps the priority it started with."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from tests.server.conftest import ServerProcess, quiet_librdkafka

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's"
)

BACKGROUND_NICE = 6
TIMEOUT = 30.0


def _nice_of_threads(pid: int) -> dict[int, int]:
    """Each thread's nice value, from /proc/PID/task/TID/stat (field 19)."""
    found = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        found[int(task)] = int(fields[16])  # fields 3.. follow the name: 19 is nice
    return found


def test_the_server_lowers_its_background_threads_and_never_its_event_loop(
    tmp_path: Path,
) -> None:
    config = tmp_path / "tidelog.toml"
    config.write_text(f"[store]\nbackground_nice = {BACKGROUND_NICE}\nupload_interval_s = 0.2\n")
    server = ServerProcess(tmp_path / "data", args=["--config", str(config)]).start()
    try:
        assert server.process is not None
        pid = server.process.pid
        base = os.getpriority(os.PRIO_PROCESS, 0)  # the server inherits the test's
        lowered = min(19, base + BACKGROUND_NICE)
        producer = Producer({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
        for _ in range(2000):
            producer.produce("priorities", b"v" * 1024)
        assert producer.flush(TIMEOUT) == 0
        deadline = time.monotonic() + TIMEOUT
        while lowered not in _nice_of_threads(pid).values():  # the first upload is on its way
            assert time.monotonic() < deadline, _nice_of_threads(pid)
            time.sleep(0.05)
        threads = _nice_of_threads(pid)
        assert threads[pid] == base  # the main thread runs the event loop
        assert sum(1 for nice in threads.values() if nice == base) > 2  # the loop, the WAL's, ...
        assert set(threads.values()) <= {base, lowered, min(19, base + 5)}  # 5: read_nice
    finally:
        server.end_at_teardown(graceful=True)
