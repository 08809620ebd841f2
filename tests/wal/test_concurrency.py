"""Group commit under concurrency: distinct positions, every ack kept once, shared syncs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from wal import Position, WriteAheadLog

OpenLog = Callable[..., WriteAheadLog]


def test_threads_share_syncs_and_every_acked_append_is_replayed_once(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=256 * 1024)
    acked: list[list[tuple[Position, bytes]]] = [[] for _ in range(32)]
    start = threading.Barrier(32)

    def writer(index: int) -> None:
        start.wait()
        for i in range(100):
            payload = b"%02d:%03d" % (index, i)
            acked[index].append((log.append(payload), payload))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [pair for mine in acked for pair in mine]
    assert len({position for position, _ in everything}) == 3200
    replayed = [(e.position, bytes(e.payload)) for e in log.replay()]
    assert sorted(replayed) == sorted(everything)
    # Each writer's appends land in the order it made them.
    for mine in acked:
        assert [p for p, _ in mine] == sorted(p for p, _ in mine)
    assert log.stats.appends == 3200
    assert log.stats.syncs < log.stats.appends


def test_threads_and_asyncio_tasks_append_together(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=256 * 1024)

    def thread_writer() -> None:
        for i in range(200):
            log.append(b"thread %d" % i)

    async def tasks() -> None:
        await asyncio.gather(*(log.append_async(b"task %d" % i) for i in range(200)))

    thread = threading.Thread(target=thread_writer)
    thread.start()
    asyncio.run(tasks())
    thread.join()
    replayed = {bytes(e.payload) for e in log.replay()}
    assert replayed == {b"thread %d" % i for i in range(200)} | {b"task %d" % i for i in range(200)}
