"""The event loop's CPU per Fetch of many partitions: one raw Fetch v11
(no fetch session, as librdkafka, kafkajs and aiokafka send it) naming
every partition of a topic, on loopback to the wire server of this
process.

    python bench/many_fetch_bench.py [--partitions 1000 10000] [--requests 7]
                                     [--max-wait-ms 500] [--quick] [--json]

Each partition holds one record and the Fetch asks from its end (caught
up, the normal state of a tailing consumer). Per size, four cases:

- ``records``: max_wait 0, every partition from its start: the read of
  one record of each (from the log cache) and its answer. Each Fetch asks
  with a partition limit of its own (``records_fetch``): an earlier
  Fetch's read of the same offset and limit would otherwise answer it
  (shared_reads.py keeps 1,024), and at 1,000 partitions the case would
  count no read at all;
- ``caught_up``: max_wait 0, answered at once: the read alone;
- ``timeout``: max_wait ``--max-wait-ms``, min_bytes 1, nothing arrives:
  the long poll that ends at max_wait (the read, the wait's registration
  and looks, the read again);
- ``woken``: max_wait 30 s, min_bytes 1, one record produced to one
  partition once the Fetch waits: the long poll a record ends;

and the wait alone, as the Fetch handler waits after its read, run on the
server's loop without a request: ``wait_timeout`` (every partition at its
end, 20 ms, nothing arrives) and ``wait_woken`` (one record produced to one
partition once it waits). A long poll's read is most of its CPU and most
of its spread; these figures are the wait's share without them.

The figure is the server's event loop's CPU (its thread's CPU clock) from
the request's send to its answer's last byte, in milliseconds: the median
and the least of ``--requests`` requests after two. ``timeout_wait_ms`` is
the timeout's median less twice the caught-up one's (a long poll that times
out reads every partition again for its answer, as Kafka's DelayedFetch
does): what the wait itself adds. Compare
revisions with bench/compare.py, alternating.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import _harness

import engine
from engine.server.config import ServerConfig
from engine.server.server import Server
from engine.types import TopicPartition

TOPIC = "many"
WOKEN_MAX_WAIT_MS = 30_000
PARTITION_MAX_BYTES = 1 << 20
"""Each partition's limit in a Fetch: above its one record."""
WAIT_ALONE_S = 0.02
TIMEOUT_S = 60.0
_SIZE = struct.Struct(">i")


class LoopServer:
    """The wire server on an engine of this process, its event loop on a
    thread whose CPU clock is the figure."""

    def __init__(self, opened: engine.Engine) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = Server(opened, ServerConfig(host="127.0.0.1", port=0))
        self.thread = threading.Thread(target=self.loop.run_forever, name="wire-server")
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(TIMEOUT_S)
        assert self.thread.ident is not None
        self.clock_id = time.pthread_getcpuclockid(self.thread.ident)

    def cpu_seconds(self) -> float:
        return time.clock_gettime(self.clock_id)

    def run(self, coroutine: Coroutine[Any, Any, Any], meanwhile: Callable[[], None]) -> float:
        """The loop's CPU milliseconds over ``coroutine``, run on it, while
        this thread does ``meanwhile``."""
        before = self.cpu_seconds()
        done = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        meanwhile()
        done.result(TIMEOUT_S)
        return 1000 * (self.cpu_seconds() - before)

    def stop(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(TIMEOUT_S)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(TIMEOUT_S)
            self.loop.close()


def fetch_v11(
    correlation_id: int,
    partitions: int,
    offset: int,
    max_wait_ms: int,
    partition_max_bytes: int = PARTITION_MAX_BYTES,
) -> bytes:
    """A Fetch v11 (header v1) of every partition of TOPIC at ``offset``,
    min_bytes 1, read_uncommitted, no session."""
    topic = TOPIC.encode()
    header = struct.pack(">hhih", 1, 11, correlation_id, 5) + b"bench"
    body = struct.pack(">iiiibii", -1, max_wait_ms, 1, 50 << 20, 0, 0, -1)
    body += struct.pack(">ih", 1, len(topic)) + topic + struct.pack(">i", partitions)
    entry = struct.Struct(">iiqqi")
    body += b"".join(entry.pack(p, -1, offset, -1, partition_max_bytes) for p in range(partitions))
    body += struct.pack(">ih", 0, 0)  # no forgotten topics, no rack
    payload = header + body
    return _SIZE.pack(len(payload)) + payload


def records_fetch(correlation_id: int, partitions: int, n: int) -> bytes:
    """The ``n``th Fetch of every partition from its start, its partition
    limit its own: the server reads each partition again, as it does for
    a tailing consumer, whose every Fetch asks from a new offset, instead
    of answering from the read of the Fetch before (shared_reads.py)."""
    return fetch_v11(correlation_id, partitions, 0, 0, PARTITION_MAX_BYTES - n)


def _receive(sock: socket.socket) -> None:
    size = _SIZE.unpack(_read(sock, 4))[0]
    _read(sock, size)


def _read(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(min(size - len(chunks), 1 << 20))
        if not chunk:
            raise ConnectionError("the server closed the connection")
        chunks += chunk
    return bytes(chunks)


def _waiting(opened: engine.Engine) -> bool:
    """Whether a Fetch waits on the partitions' growth (any revision's waiters)."""
    waiters = opened._waiters
    if hasattr(waiters, "waiting_count"):  # from 0082
        return bool(waiters.waiting_count())
    return any(len(waits) for waits in list(waiters.async_waiters.values()))


def _loop_ms(
    server: LoopServer, sock: socket.socket, frame: bytes, meanwhile: Callable[[], None]
) -> float:
    before = server.cpu_seconds()
    sock.sendall(frame)
    meanwhile()
    _receive(sock)
    return 1000 * (server.cpu_seconds() - before)


def _figures(samples: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(samples), 3), "least": round(min(samples), 3)}


@contextmanager
def _served(scratch: Path, partitions: int) -> Iterator[tuple[engine.Engine, LoopServer]]:
    with engine.open(scratch / f"data-{partitions}") as opened:
        opened.create_topic(TOPIC, partitions)
        with opened.producer() as producer:
            for result in [producer.send(TOPIC, b"r", partition=p) for p in range(partitions)]:
                result.result(TIMEOUT_S)
        server = LoopServer(opened)
        try:
            yield opened, server
        finally:
            server.stop()


def one_size(scratch: Path, partitions: int, requests: int, max_wait_ms: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with _served(scratch, partitions) as (opened, server):
        sock = socket.create_connection(("127.0.0.1", server.server.port), timeout=TIMEOUT_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        correlation = iter(range(1, 1 << 30))
        offsets = dict.fromkeys(range(partitions), 1)
        try:
            cases = (("records", 0, 0), ("caught_up", 1, 0), ("timeout", 1, max_wait_ms))
            for case, at, max_wait in cases:
                samples = []
                for n in range(requests + 2):
                    if case == "records":
                        frame = records_fetch(next(correlation), partitions, n)
                    else:
                        frame = fetch_v11(next(correlation), partitions, at, max_wait)
                    spent = _loop_ms(server, sock, frame, lambda: None)
                    if n >= 2:
                        samples.append(spent)
                results[case] = _figures(samples)
            with opened.producer() as producer:
                samples = []
                for n in range(requests + 2):
                    grown = (n * 7) % partitions
                    # Every partition from its end: the one grown last time too.
                    frame = _fetch_at(next(correlation), offsets, WOKEN_MAX_WAIT_MS)

                    def produce(partition: int = grown) -> None:
                        deadline = time.monotonic() + TIMEOUT_S
                        while not _waiting(opened):
                            if time.monotonic() > deadline:
                                raise RuntimeError("the Fetch never waited")
                            time.sleep(0.001)
                        producer.send(TOPIC, b"w", partition=partition).result(TIMEOUT_S)

                    spent = _loop_ms(server, sock, frame, produce)
                    offsets[grown] += 1
                    if n >= 2:
                        samples.append(spent)
                results["woken"] = _figures(samples)
                results.update(_wait_alone(opened, server, producer, offsets, requests))
        finally:
            sock.close()
    results["timeout_wait_ms"] = round(
        results["timeout"]["median"] - 2 * results["caught_up"]["median"], 3
    )
    return results


def _wait_alone(
    opened: engine.Engine,
    server: LoopServer,
    producer: Any,
    offsets: dict[int, int],
    requests: int,
) -> dict[str, Any]:
    """The long poll's wait as the Fetch handler makes it after its read,
    on the server's loop: timing out, and woken by one partition."""

    async def wait(timeout: float) -> None:
        positions = {TopicPartition(TOPIC, p): o for p, o in offsets.items()}
        if hasattr(opened, "growth_mark"):  # from 0082: the mark taken before the read
            await opened.wait_for_data_async(positions, timeout, opened.growth_mark())
        else:
            await opened.wait_for_data_async(positions, timeout)

    results: dict[str, Any] = {}
    samples = [server.run(wait(WAIT_ALONE_S), lambda: None) for _ in range(requests + 2)]
    results["wait_timeout"] = _figures(samples[2:])
    samples = []
    for n in range(requests + 2):
        grown = (n * 13 + 1) % len(offsets)

        def produce(partition: int = grown) -> None:
            deadline = time.monotonic() + TIMEOUT_S
            while not _waiting(opened):
                if time.monotonic() > deadline:
                    raise RuntimeError("the wait never began")
                time.sleep(0.001)
            producer.send(TOPIC, b"w", partition=partition).result(TIMEOUT_S)

        samples.append(server.run(wait(TIMEOUT_S), produce))
        offsets[grown] += 1
    results["wait_woken"] = _figures(samples[2:])
    return results


def _fetch_at(correlation_id: int, offsets: dict[int, int], max_wait_ms: int) -> bytes:
    """fetch_v11 with each partition at its own offset."""
    frame = bytearray(fetch_v11(correlation_id, len(offsets), 0, max_wait_ms))
    entry = struct.Struct(">iiqqi")
    first = len(frame) - 6 - entry.size * len(offsets)
    for partition, offset in offsets.items():
        at = first + entry.size * partition
        frame[at : at + entry.size] = entry.pack(partition, -1, offset, -1, 1 << 20)
    return bytes(frame)


def _print(results: dict[str, Any]) -> None:
    count = results["requests"]
    print(f"the event loop's CPU per Fetch of every partition, ms (median / least of {count}):")
    cases = ("records", "caught_up", "timeout", "woken", "wait_timeout", "wait_woken")
    print(f"  {'partitions':>10}  " + "  ".join(f"{c:>17}" for c in cases) + "  wait adds")
    for key, sizes in results["sizes"].items():
        cells = [f"{sizes[c]['median']:>8.2f} / {sizes[c]['least']:>6.2f}" for c in cases]
        print(f"  {key[1:]:>10}  " + "  ".join(cells) + f"  {sizes['timeout_wait_ms']:>8.2f}")


def main() -> None:
    parser = _harness.parser(__doc__, "1,000 partitions only")
    parser.add_argument("--partitions", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--requests", type=int, default=7, help="requests measured per case")
    parser.add_argument(
        "--max-wait-ms",
        type=int,
        default=500,  # librdkafka's fetch.wait.max.ms; past a 10,000-partition read's CPU
        help="the timeout case's max_wait",
    )
    parser.add_argument("--data-dir", default=None, help="scratch directory (default: temp)")
    args = parser.parse_args()
    sizes = [1000] if args.quick else args.partitions
    results: dict[str, Any] = {"requests": args.requests, "max_wait_ms": args.max_wait_ms}
    results["sizes"] = {}
    with _harness.scratch(args.data_dir, "many-fetch-") as scratch:
        for partitions in sizes:
            results["sizes"][f"p{partitions}"] = one_size(
                scratch, partitions, args.requests, args.max_wait_ms
            )
    _harness.report(results, args.json, _print)


if __name__ == "__main__":
    main()
