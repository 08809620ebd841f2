"""Fetch long-polling: a Fetch short of ``min_bytes`` waits for new data
(woken by the engine, not by polling) or for ``max_wait``, whichever first."""

from __future__ import annotations

import datetime
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.protocol.apis import request_schema, response_schema
from tests.engine.appended_together import appended_as_one, batches_of
from tests.engine.conftest import QUIET_STORE
from tests.server.conftest import ServerProcess
from tests.server.in_process import InProcessServer
from tests.server.test_bad_input import batch, produce
from tests.server.wire import Wire, build, fetch_from_start

MiB = 1024 * 1024
TICKS_PER_SECOND = 100  # /proc/PID/stat's clock ticks (USER_HZ)


def event_loop_cpu_seconds(server: ServerProcess) -> float:
    """CPU seconds of the server's event loop: its main thread (tidelog
    serve runs the loop there). A wait that spins would spin here; the
    process's other threads (the WAL's spare segment maker, uploads) work on
    their own schedule and are not the wait's cost."""
    assert server.process is not None
    pid = server.process.pid
    stat = Path(f"/proc/{pid}/task/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


def fetch_two(
    topic: str, other: str, *, min_bytes: int, max_wait_ms: int, other_max_bytes: int
) -> Any:
    def partition(max_bytes: int) -> dict[str, int]:
        return {
            "partition": 0,
            "current_leader_epoch": -1,
            "fetch_offset": 0,
            "last_fetched_epoch": -1,
            "log_start_offset": -1,
            "partition_max_bytes": max_bytes,
        }

    return build(
        request_schema(1, 12),
        replica_id=-1,
        max_wait=datetime.timedelta(milliseconds=max_wait_ms),
        min_bytes=min_bytes,
        max_bytes=64 * MiB,
        session_epoch=-1,
        topics=[
            {"topic": topic, "partitions": [partition(MiB)]},
            {"topic": other, "partitions": [partition(other_max_bytes)]},
        ],
    )


def test_a_fetch_short_of_min_bytes_waits_without_spinning(
    kafka_server: ServerProcess, topic: str
) -> None:
    """One partition has a little data, the other a batch larger than its
    partition limit, which it cannot send: the data present is short of
    min_bytes, so the Fetch waits out max_wait, asleep (a loop re-reading
    what is there would burn the server's CPU for the whole wait)."""
    other = topic + "-big"
    with Wire(kafka_server.bootstrap) as wire:
        wire.request(produce({topic: batch(b"s" * 10), other: batch(b"b" * 5000)}))
        before = event_loop_cpu_seconds(kafka_server)
        started = time.monotonic()
        response = wire.request(
            fetch_two(topic, other, min_bytes=MiB, max_wait_ms=1500, other_max_bytes=1000)
        )
        waited = time.monotonic() - started
        used = event_loop_cpu_seconds(kafka_server) - before
    small, big = (t.partitions[0] for t in response.responses)
    assert small.records and not big.records
    assert waited >= 1.4, "the Fetch returned before max_wait with less than min_bytes"
    assert used < 0.5 * waited, f"the event loop used {used:.2f} s of CPU in a {waited:.2f} s wait"


def test_new_data_ends_the_wait(kafka_server: ServerProcess, topic: str) -> None:
    other = topic + "-quiet"
    # The Fetch would wait ten minutes, far past the answer's wait here: an
    # answer at all is the new data ending the wait, however slow the machine.
    with Wire(kafka_server.bootstrap, timeout=60) as wire, Wire(kafka_server.bootstrap) as writer:
        writer.request(produce({topic: batch(b"x"), other: batch(b"y")}))
        request = fetch_two(
            topic, other, min_bytes=20_000, max_wait_ms=600_000, other_max_bytes=MiB
        )
        correlation_id = wire.send(request)
        # Enough new data to reach min_bytes, appended while the Fetch waits.
        timer = threading.Timer(0.3, lambda: writer.request(produce({topic: batch(b"z" * 30_000)})))
        timer.start()
        started = time.monotonic()
        got, response = wire.receive(response_schema(1, 12))
        timer.join()
    assert got == correlation_id
    assert time.monotonic() - started < 60, "the wait ran to max_wait despite new data"
    sizes = [len(t.partitions[0].records or b"") for t in response.responses]
    assert sum(sizes) >= 20_000


@pytest.mark.parametrize("together", [True, False], ids=["one-append", "an-append-a-batch"])
def test_a_fetch_cut_at_its_max_bytes_waits_without_reading_again(
    tmp_path: Path, together: bool
) -> None:
    """The partition holds more than its max_bytes: the read sends the
    batches that fit, short of min_bytes, and leaves the rest. Reading
    again cannot send more until new data comes (as Kafka's DelayedFetch
    counts such a partition full), so the Fetch waits out max_wait with
    the partition read once before and once after: a wait for data past
    what was sent would end at once, and its re-reads spin the event loop
    for the whole wait. Counted by the bytes the partition answered."""
    batches = batches_of([20] * 10, value_bytes=100)
    one = len(batches[0])
    with engine.open(tmp_path / "node", config=engine.EngineConfig(store=QUIET_STORE)) as opened:
        if together:  # one stored entry, cut at its batches
            appended_as_one(opened, "held", batches)
        else:
            opened.create_topic("held", 1)
            for each in batches:
                opened.produce("held", 0, each)
        leader = opened.partition("held", 0)
        server = InProcessServer(opened)
        try:
            before = leader.bytes_out
            with Wire(server.bootstrap) as wire:
                response = wire.request(
                    fetch_from_start(
                        "held",
                        max_wait=datetime.timedelta(milliseconds=300),
                        min_bytes=2 * one,
                        max_bytes=one + 10,
                    )
                )
            answered = leader.bytes_out - before
        finally:
            server.stop()
    (partition,) = response.responses[0].partitions
    assert len(partition.records or b"") == one
    assert answered <= 2 * one, f"the partition was read {answered // one} times in one wait"
