"""tidelog's Kafka wire server driven by librdkafka, beside librdkafka's mock cluster and the disk.

    python bench/kafka_bench.py [--produce-mb 1024] [--rate-mb 50] [--latency-seconds 10]
                                [--latency-only]
                                [--partitions 1] [--quick] [--json] [--data-dir PATH]
                                [--object-store URL] [--port N] [--profile [DIR]]
                                [--fetch-session-partitions 1000] [--fetch-session-fetches 500]
                                [--sasl-ssl-mb 128]

One run, on loopback, every figure measured in it (MB below is MiB, 2**20
bytes; every ``*_mb_s`` key is MiB/s of record values):

- disk: sequential writes of 1 MiB and of 4 MiB blocks, an fdatasync after
  each, in the data directory's filesystem (``--disk-mb`` of each); the faster
  is ``disk_mb_s``, the ceiling a durable log on that disk can reach;
- mock: librdkafka producing the same records to its own in-memory mock
  cluster (``test.mock.num.brokers``: 1) over loopback, so the broker costs
  nothing: ``mock_produce_mb_s`` is what this client, in this process, can
  push, and ``mock_p50_ms`` / ``mock_p99_ms`` (the latency phase against the
  mock) what linger.ms and the client cost before any broker does;
- produce: ``python -m engine serve`` in a child process; a topic created with
  the AdminClient; a confluent_kafka Producer sends 1 KiB records of random
  bytes (acks=all, linger.ms=5, no compression) until ``--produce-mb`` is
  delivered; ``produce_mb_s`` counts from the first produce() to the last
  delivery report;
- consume: the server is stopped (SIGTERM: it flushes and uploads), the OS page
  cache dropped when /proc/sys/vm/drop_caches is writable, the server started
  again (its log cache starts empty), and a Consumer assigned every partition
  reads every record from offset 0: ``consume_mb_s``;
- compressed produce: ``--compressed-mb`` (256; 32 with ``--quick``; 0 skips
  it) of 1 KiB JSON-like records, compressible (about 2:1 for lz4), produced
  flat out to one topic per ``compression.type`` (none, lz4, zstd), while
  the server inflates and walks every compressed batch's records:
  ``produce_lz4_mb_s`` and ``produce_zstd_mb_s`` (MiB/s of uncompressed
  values) beside ``produce_none_mb_s`` with the same records, and their
  ratios ``produce_lz4_vs_none`` and ``produce_zstd_vs_none``; beside each,
  ``mock_produce_<codec>_mb_s``, the client's own ceiling with that codec
  (librdkafka's mock cluster does not inflate);
- latency: the same records at a fixed ``--rate-mb`` (a token bucket) for
  ``--latency-seconds`` to a second topic; ``p50_ms`` and ``p99_ms`` run from
  produce() to the delivery report's callback, what an application sees
  (librdkafka's own produce-to-acknowledgement figures are beside them);
  ``latency_worst_windows`` are its 5 worst 100 ms windows, and
  ``latency_stalls`` what the server logged on ``tidelog.stalls`` meanwhile
  (docs/operations.md; the server runs with that logger on): the event
  loop's longest lag, the WAL's slow syncs, rolls and spares, the object
  store's writes, full garbage collections, and which of them overlapped
  each worst window (bench/_stalls.py); ``latency_run_queue``, how long
  the server's threads and this process's waited for a CPU per second of
  the phase (``mock_latency_run_queue``: this process's, in the mock's paced
  run), the share of the tail no server code can shorten on a busy machine.
  ``--latency-only`` runs only this
  phase and what it stands on (the mock's and the disk's paced baselines,
  the produce that fills the server, its restart and the consume);
- remote acks: topics with ``tidelog.ack.durability=remote`` (acknowledged
  once the object holding the record is committed to the object store's
  manifest), each beside a ``local`` topic measured the same way right
  before it: flat out for a quarter of ``--produce-mb`` (``remote_mb_s`` /
  ``remote_local_mb_s`` = ``remote_vs_local_mb_s``) and paced as the latency
  phase (``remote_p50_ms``, ``remote_p99_ms``, and their ratios to
  ``p50_ms`` / ``p99_ms``);
- fetch sessions: a consumer of ``--fetch-session-partitions`` partitions
  (1000; 0 skips it) fetching ``--fetch-session-fetches`` times, with
  incremental fetch sessions (KIP-227) and without (a server with no session
  slots), each on a server of its own: request and response bytes and the
  server's CPU per fetch, and their ratios on/off (``fs_*``; see
  bench/_fetch_sessions.py);
- SASL_SSL: ``--sasl-ssl-mb`` (128; 16 with ``--quick``; 0 skips it) produced
  flat out and consumed, once over a PLAINTEXT listener and once over a
  SASL_SSL listener (SCRAM-SHA-512, a CA and certificate made for the run,
  bench/_certificates.py) of the same server, one topic each:
  ``sasl_ssl_produce_mb_s`` / ``plaintext_produce_mb_s`` =
  ``sasl_ssl_vs_plaintext_produce`` and likewise for consume (the cost of
  TLS and of authenticated connections; connecting is not timed); beside
  them the server's CPU per MiB (``<door>_<produce|consume>_server_ms_per_mib``
  and ``sasl_ssl_vs_plaintext_<what>_server_cpu``, steadier than MiB/s on a
  busy machine) and the consuming client's (``<door>_consume_client_ms_per_mib``:
  with TLS on both sides of one machine, the client's decryption weighs as
  much as the server's encryption).

The server's CPU time (/proc/PID/stat) is taken around each phase, and this
process's (the client and librdkafka's threads) beside it; for the flat-out
produce, ``server_produce_ms_per_mib`` is the server's CPU per MiB
delivered, steadier than MiB/s on a shared machine, and
``server_produce_uploaded_ms_per_mib`` the same counted on until the
unuploaded backlog the produce left (up to max_unuploaded_bytes) is in
objects, ``produce_upload_tail_s`` after the last delivery (read from the
server's /metrics, which the bench turns on, a few times a second);
``server_loop_produce_ms_per_mib`` the event loop thread's share of it,
``server_loop_faults_per_mib`` that thread's minor page faults per MiB
(256 when every byte received lands in memory never touched before),
``server_produce_switches_per_mib`` its threads' voluntary context
switches per MiB (each a thread that blocked: on the disk, a lock, the
GIL, or waiting to be woken; how often the WAL's threads hand work and the
GIL to each other, docs/design/0040),
``server_loop_waits_per_mib`` and ``server_loop_preemptions_per_mib`` the
event loop thread's own voluntary and involuntary context switches per MiB
(its CPU per MiB rises with both without any change to the code: each wake-up
costs the kernel's scheduling, each preemption the caches; docs/design/0045) and
``server_rss_after_produce_mib`` the server's resident memory at the end. ``--json`` prints
one JSON object; its headline keys are produce_mb_s, consume_mb_s, p50_ms,
p99_ms, mock_produce_mb_s, disk_mb_s and produce_vs_disk, and:

- ``produce_vs_write_twice_limit``: produce_mb_s / (disk_mb_s / 2). With the
  WAL and a local object store on one disk every byte is written twice, so
  half the disk's figure is the honest ceiling;
- ``produce_vs_mock``: produce_mb_s / mock_produce_mb_s;
- ``ceiling_mb_s``: the lower of write_twice_limit_mb_s and
  mock_produce_mb_s, ``ceiling`` the key it came from (which binds: the
  disk, or the client, which no broker can outrun), and
  ``produce_vs_ceiling``: produce_mb_s / ceiling_mb_s. Where the client
  binds, produce_vs_write_twice_limit's target is out of any broker's reach
  on that machine;
- ``p99_over_mock_ms``: p99_ms - mock_p99_ms, what the server adds to the
  delivery tail at the same rate and linger.ms.
"""

from __future__ import annotations

import collections
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

import _backlog
import _harness
import _stalls
from _certificates import make_server_certificate
from _fetch_sessions import fetch_sessions_phase, print_fetch_sessions
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

MIB = 1 << 20
RECORD_BYTES = 1024
DISTINCT_VALUES = 4096
"""Values are drawn from a pool (4 MiB of random bytes), so building them costs nothing timed."""
TOPIC = "bench"
LATENCY_TOPIC = "bench-latency"
HOST = "127.0.0.1"
DISK_BLOCKS = (1 * MIB, 4 * MIB)
MOCK_PARTITIONS = 4
"""Topics the mock cluster creates on first use have 4 partitions (and its
CreateTopics cannot be reached: its metadata names no live controller)."""
QUICK = {
    "produce_mb": 32,
    "latency_seconds": 3.0,
    "disk_mb": 64,
    "compressed_mb": 32,
    "fetch_session_fetches": 100,
    "sasl_ssl_mb": 16,
}
DEFAULTS = {
    "produce_mb": 1024,
    "latency_seconds": 10.0,
    "disk_mb": 1024,
    "compressed_mb": 256,
    "fetch_session_fetches": 500,
    "sasl_ssl_mb": 128,
}
CODECS = ("none", "lz4", "zstd")
"""The compressed-produce phase's topics, one per librdkafka compression.type."""
TARGETS = {
    "produce_vs_disk": (">=", 0.6),
    "produce_vs_write_twice_limit": (">=", 0.9),
    "produce_vs_mock": (">=", 0.85),
    "consume_mb_s": (">=", 300.0),
    "p99_ms": ("<=", 10.0),
    "p99_over_mock_ms": ("<=", 2.0),
}

CONSUME_BATCH = 10_000
"""Messages per Consumer.consume() call."""
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 300.0
"""A stop flushes and uploads everything the server holds; give it time."""
STALL_TIMEOUT = 30.0
"""A phase that sees no progress for this long has failed."""
WAIT_STEP = 0.001
"""The pacer's sleep: librdkafka's poll timeout is whole milliseconds."""
BUCKET_SECONDS = 0.01
"""The token bucket holds at most this much time's worth of records."""
STALL_WINDOW_SECONDS = 0.1
STALL_WINDOWS = 5
"""The latency phase reports its 5 worst 100 ms windows (by send time)."""

PRODUCER_CONFIG: dict[str, Any] = {
    "acks": "all",
    "linger.ms": 5,
    "compression.type": "none",
    "batch.size": 1_000_000,
    "batch.num.messages": 100_000,
    "queue.buffering.max.messages": 2_000_000,
    "queue.buffering.max.kbytes": 1024 * 1024,
    "log_level": 3,
}
CONSUMER_CONFIG: dict[str, Any] = {
    "group.id": "kafka-bench",
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "fetch.max.bytes": 50 * MIB,
    "max.partition.fetch.bytes": 10 * MIB,
    "log_level": 3,
}


# -- the server --------------------------------------------------------------------


class ServerProcess:
    """``python -m engine serve`` in a child process: started, awaited until it
    logs that it listens, stopped with SIGTERM (a clean shutdown) or killed.

    Its output goes to a log file per start (and the last lines to memory, for
    error messages). ``profile_dir`` attaches ``py-spy record`` to each start.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int,
        log_dir: Path,
        object_store: str | None = None,
        profile_dir: Path | None = None,
        config: Path | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.config = config
        self.port = port
        self.log_dir = log_dir
        self.object_store = object_store
        self.profile_dir = profile_dir
        self.starts = 0
        self.profiles: list[str] = []
        self.env: dict[str, str] = {}
        """Set in the server's environment beside the bench's own."""
        self._process: subprocess.Popen[bytes] | None = None
        self._profiler: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()
        self._tail: collections.deque[str] = collections.deque(maxlen=40)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        """The log of the latest start."""
        return self.log_dir / f"server-{self.starts}.log"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the server is not started")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "engine",
            "serve",
            "--listen",
            self.address,
            "--data-dir",
            str(self.data_dir),
            "--log-level",
            _stalls.LOG_LEVEL,
        ]
        if self.object_store is not None:
            command += ["--object-store", self.object_store]
        if self.config is not None:
            command += ["--config", str(self.config)]
        return command

    def start(self) -> None:
        if self.running:
            raise RuntimeError("the server is already running")
        self.starts += 1
        self._ready.clear()
        self._tail.clear()
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        self._process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[1],
            env=env,
        )
        log = self.log_path
        assert self._process.stdout is not None
        self._reader = threading.Thread(
            target=self._read, args=(self._process.stdout, log), daemon=True
        )
        self._reader.start()

    def _read(self, stream: IO[bytes], log: Path) -> None:
        marker = f"listening on {self.address}"
        with open(log, "w", encoding="utf-8") as out:
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                out.write(line + "\n")
                self._tail.append(line)
                if marker in line:
                    self._ready.set()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if not self.running:
                raise RuntimeError(f"the server exited before it listened\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the server did not listen within {timeout} s\n{self.log_tail()}"
                )
        if self.profile_dir is not None:
            self._start_profiler()

    def _start_profiler(self) -> None:
        py_spy = shutil.which("py-spy")
        if py_spy is None:
            return
        assert self.profile_dir is not None
        output = self.profile_dir / f"kafka-bench-server-{self.starts}.svg"
        self._profiler = subprocess.Popen(
            [py_spy, "record", "--pid", str(self.pid), "--output", str(output), "--nonblocking"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.profiles.append(str(output))

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then waits; returns the exit code (killing it after timeout)."""
        if self._process is None:
            raise RuntimeError("the server is not started")
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.running:
            assert self._process is not None
            self._process.kill()
            self.wait(10.0)

    def wait(self, timeout: float) -> int:
        assert self._process is not None
        try:
            code = self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
            raise RuntimeError(
                f"the server did not exit within {timeout} s of SIGTERM\n{self.log_tail()}"
            ) from None
        finally:
            self._finish()
        return code

    def _finish(self) -> None:
        if self._reader is not None:
            self._reader.join(10.0)
        if self._profiler is not None:
            try:
                self._profiler.wait(60.0)
            except subprocess.TimeoutExpired:
                self._profiler.kill()
                self._profiler.wait()
            self._profiler = None

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server so far, every thread's."""
        with open(f"/proc/{self.pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        # utime and stime are fields 14 and 15; fields[0] here is field 3 (state).
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def loop_stat(self) -> tuple[float, int]:
        """The event loop's thread (the server's main thread): its user +
        system CPU seconds so far and its minor page faults (each a fresh
        page of memory touched for the first time, as a new request buffer's
        are while the heap grows)."""
        with open(f"/proc/{self.pid}/task/{self.pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        # minflt is field 10, utime and stime 14 and 15; fields[0] is field 3.
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return cpu, int(fields[7])

    def voluntary_switches(self) -> int:
        """Voluntary context switches of the server's live threads so far."""
        total = 0
        for task in os.listdir(f"/proc/{self.pid}/task"):
            try:
                with open(f"/proc/{self.pid}/task/{task}/status", encoding="ascii") as status:
                    for line in status:
                        if line.startswith("voluntary_ctxt_switches:"):
                            total += int(line.split()[1])
            except FileNotFoundError:  # the thread ended meanwhile
                continue
        return total

    def loop_switches(self) -> tuple[int, int]:
        """The event loop thread's context switches so far: voluntary (it
        blocked: waiting for the sockets in epoll, or for the GIL) and
        involuntary (another thread or process was given its CPU). CPU per
        MiB rises with both on a shared machine, with no change to the code."""
        counts: dict[str, int] = {}
        with open(f"/proc/{self.pid}/task/{self.pid}/status", encoding="ascii") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
                    counts[name] = int(value)
        return counts["voluntary_ctxt_switches"], counts["nonvoluntary_ctxt_switches"]

    def resident_mib(self) -> float:
        """The server's resident memory now, in MiB."""
        with open(f"/proc/{self.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def log_tail(self) -> str:
        return "\n".join(f"  server: {line}" for line in self._tail)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def drop_page_cache() -> str | None:
    """Writes back and drops the OS page cache; returns why it could not, or None."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w", encoding="ascii") as control:
            control.write("1\n")
    except OSError as error:
        return f"page cache not dropped ({error.strerror or error})"
    return None


def _client_cpu_seconds() -> float:
    """CPU time of this process so far: the bench's Python and librdkafka's threads."""
    times = os.times()
    return times.user + times.system


# -- producing ---------------------------------------------------------------------


@dataclass
class Deliveries:
    """Tallies delivery reports; its instance is the producer's on_delivery."""

    records: int = 0
    bytes: int = 0
    errors: int = 0
    first_error: str | None = None
    last: float = 0.0
    """perf_counter() of the last report."""

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        self.last = time.perf_counter()
        if err is not None:
            self.errors += 1
            if self.first_error is None:
                self.first_error = str(err)
            return
        self.records += 1
        self.bytes += len(msg)

    def check(self, expected: int, what: str) -> None:
        if self.errors:
            raise RuntimeError(f"{what}: {self.errors} delivery errors (first: {self.first_error})")
        if self.records != expected:
            raise RuntimeError(f"{what}: {self.records} of {expected} records delivered")


def make_values() -> list[bytes]:
    return [os.urandom(RECORD_BYTES) for _ in range(DISTINCT_VALUES)]


def produce_flat_out(
    config: dict[str, Any], topic: str, partitions: int, records: int, values: list[bytes]
) -> dict[str, float]:
    """Sends records as fast as the producer takes them; record i goes to
    partition i % partitions. Returns the rate and this process's CPU."""
    deliveries = Deliveries()
    producer = Producer({**PRODUCER_CONFIG, **config, "on_delivery": deliveries})
    producer.list_topics(topic, timeout=30)  # connected, metadata known: not timed
    produce, poll = producer.produce, producer.poll
    mask = len(values) - 1
    cpu, started = _client_cpu_seconds(), time.perf_counter()
    for i in range(records):
        while True:
            try:
                produce(topic, values[i & mask], partition=i % partitions)
                break
            except BufferError:
                poll(WAIT_STEP)
        poll(0)
    _flush(producer, deliveries)
    elapsed = deliveries.last - started
    cpu = _client_cpu_seconds() - cpu
    deliveries.check(records, f"producing to {topic}")
    return {
        "mb_s": deliveries.bytes / MIB / elapsed,
        "seconds": elapsed,
        "bytes": deliveries.bytes,
        "client_cores": cpu / (time.perf_counter() - started),
    }


def _flush(producer: Producer, deliveries: Deliveries) -> None:
    """Waits until every record is reported, failing if reports stop coming.
    Progress is counted from the wait's start when no report has come yet:
    a first report can take longer than one flush step (a topic's first
    batch on a loaded machine) without anything having stalled."""
    waiting_since = time.perf_counter()
    while (left := producer.flush(1.0)) > 0:
        if time.perf_counter() - max(deliveries.last, waiting_since) > STALL_TIMEOUT:
            raise RuntimeError(f"{left} records still undelivered after {STALL_TIMEOUT} s")


@dataclass
class PacedRun:
    latencies: list[float] = field(default_factory=list)
    """Latency of each delivered record, produce() to callback, in seconds."""
    sent_at: list[float] = field(default_factory=list)
    """perf_counter() of each delivered record's produce(), as latencies."""
    acked: list[float] = field(default_factory=list)
    """librdkafka's own figure per record: produce() to the broker's acknowledgement."""
    errors: int = 0
    first_error: str | None = None
    last: float = 0.0

    def delivered(self, sent_at: float, err: KafkaError | None, msg: Message) -> None:
        self.last = time.perf_counter()
        if err is not None:
            self.errors += 1
            if self.first_error is None:
                self.first_error = str(err)
            return
        self.latencies.append(self.last - sent_at)
        self.sent_at.append(sent_at)
        self.acked.append(msg.latency() or 0.0)


def produce_paced(
    address: str, topic: str, partitions: int, rate_mb: float, seconds: float, values: list[bytes]
) -> dict[str, Any]:
    """Sends records at rate_mb MiB/s for seconds through a token bucket (at
    most BUCKET_SECONDS of records at once); the pacer sleeps in poll(), so
    delivery callbacks run as soon as reports arrive."""
    run = PacedRun()
    producer = Producer({**PRODUCER_CONFIG, "bootstrap.servers": address})
    producer.list_topics(topic, timeout=30)
    produce, poll, delivered = producer.produce, producer.poll, run.delivered
    mask = len(values) - 1
    rate = rate_mb * MIB / RECORD_BYTES  # records per second
    capacity = max(1.0, rate * BUCKET_SECONDS)
    perf_counter = time.perf_counter
    sent = 0
    tokens = 1.0
    started_unix = time.time()
    started = last = perf_counter()
    deadline = started + seconds
    cpu = _client_cpu_seconds()
    while (now := perf_counter()) < deadline:
        tokens = min(capacity, tokens + (now - last) * rate)
        last = now
        if tokens < 1.0:
            poll(WAIT_STEP)
            continue
        while tokens >= 1.0:
            produce(
                topic,
                values[sent & mask],
                partition=sent % partitions,
                on_delivery=partial(delivered, perf_counter()),
            )
            sent += 1
            tokens -= 1.0
        poll(0)
    sending = perf_counter() - started
    waiting_since = perf_counter()
    while (left := producer.flush(1.0)) > 0:
        if perf_counter() - max(run.last, waiting_since) > STALL_TIMEOUT:
            raise RuntimeError(f"{left} records still undelivered after {STALL_TIMEOUT} s")
    cpu = _client_cpu_seconds() - cpu
    if run.errors:
        raise RuntimeError(f"paced produce: {run.errors} delivery errors ({run.first_error})")
    if len(run.latencies) != sent:
        raise RuntimeError(f"paced produce: {len(run.latencies)} of {sent} records delivered")
    return {
        "records": sent,
        "started_unix": started_unix,
        "offered_mb_s": sent * RECORD_BYTES / MIB / sending,
        "achieved_mb_s": sent * RECORD_BYTES / MIB / (run.last - started),
        "p50_ms": _quantile(run.latencies, 0.50) * 1000,
        "p99_ms": _quantile(run.latencies, 0.99) * 1000,
        "p999_ms": _quantile(run.latencies, 0.999) * 1000,
        "max_ms": max(run.latencies) * 1000,
        "p50_ack_ms": _quantile(run.acked, 0.50) * 1000,
        "p99_ack_ms": _quantile(run.acked, 0.99) * 1000,
        "seconds": run.last - started,
        "client_cores": cpu / (perf_counter() - started),
        "worst_windows": _worst_windows(run, started),
        "cdf_ms": _latency_cdf(run.latencies),
    }


def _worst_windows(run: PacedRun, started: float) -> list[list[float]]:
    """The STALL_WINDOWS windows of STALL_WINDOW_SECONDS (by send time) with
    the highest latency: [seconds into the phase, max ms], in time order.
    Stalls that recur at a fixed interval point at a periodic cause."""
    worst: dict[int, float] = {}
    for sent_at, latency in zip(run.sent_at, run.latencies, strict=True):
        window = int((sent_at - started) / STALL_WINDOW_SECONDS)
        worst[window] = max(worst.get(window, 0.0), latency)
    top = sorted(worst.items(), key=lambda item: item[1], reverse=True)[:STALL_WINDOWS]
    return [
        [round(window * STALL_WINDOW_SECONDS, 2), round(latency * 1000, 2)]
        for window, latency in sorted(top)
    ]


CDF_QUANTILES = (*(q / 100 for q in range(100)), 0.995, 0.999, 0.9995, 0.9999, 1.0)
"""Where the latency CDF is sampled: every percentile, then finer in the tail."""


def _latency_cdf(latencies: list[float]) -> list[list[float]]:
    """The per-record latencies as a CDF of ~100 points, [quantile, ms]: the
    curve bench/report.py plots, a few KB however many records were sent."""
    ordered = sorted(latencies)
    last = len(ordered) - 1
    return [[q, round(ordered[min(last, int(q * len(ordered)))] * 1000, 3)] for q in CDF_QUANTILES]


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- consuming ---------------------------------------------------------------------


def consume_all(
    address: str,
    topic: str,
    partitions: int,
    records: int,
    config: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Reads records records from offset 0 of every partition (assign, no
    group); ``config`` adds to the consumer's (security settings)."""
    consumer = Consumer({**CONSUMER_CONFIG, "bootstrap.servers": address, **(config or {})})
    try:
        consumer.list_topics(topic, timeout=30)
        received = nbytes = 0
        cpu, started = _client_cpu_seconds(), time.perf_counter()
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        last = started
        while received < records:
            # consume() returns when it has num_messages or the timeout passed,
            # not when fewer are ready: never ask for more than are left.
            batch = consumer.consume(min(CONSUME_BATCH, records - received), 1.0)
            if not batch:
                if time.perf_counter() - last > STALL_TIMEOUT:
                    raise RuntimeError(
                        f"consuming {topic}: stalled after {received} of {records} records"
                    )
                continue
            last = time.perf_counter()
            for msg in batch:
                if msg.error() is not None:
                    raise RuntimeError(f"consuming {topic}: {msg.error()}")
                nbytes += len(msg)
            received += len(batch)
        elapsed = last - started
        cpu = _client_cpu_seconds() - cpu
    finally:
        consumer.close()
    if received != records:
        raise RuntimeError(f"consuming {topic}: {received} records, {records} were produced")
    return {
        "mb_s": nbytes / MIB / elapsed,
        "seconds": elapsed,
        "bytes": nbytes,
        "client_cores": cpu / elapsed,
    }


def create_topics(
    address: str, partitions: int, *topics: str, config: dict[str, str] | None = None
) -> None:
    admin = AdminClient({"bootstrap.servers": address, "log_level": 3})
    futures = admin.create_topics(
        [
            NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})
            for topic in topics
        ],
        operation_timeout=30,
    )
    for future in futures.values():
        future.result(timeout=60)


# -- the ceilings ------------------------------------------------------------------


def disk_mb_s(directory: Path, block: int, total: int) -> float:
    """Appends total bytes in blocks of block bytes, fdatasync after each."""
    path = directory / f"disk-{block}"
    chunk = os.urandom(block)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        written = 0
        started = time.perf_counter()
        while written < total:
            written += os.write(fd, chunk)
            os.fdatasync(fd)
        elapsed = time.perf_counter() - started
    finally:
        os.close(fd)
        path.unlink()
    return written / MIB / elapsed


def disk_sync_latency(directory: Path, rate_mb: float, seconds: float) -> dict[str, float]:
    """The disk's own latency at the latency phase's rate: every linger
    interval, the bytes that arrived in it are written and fdatasync'ed, as a
    group commit would; the time of each write + fdatasync."""
    interval = PRODUCER_CONFIG["linger.ms"] / 1000
    chunk = os.urandom(max(int(rate_mb * MIB * interval), 1))
    path = directory / "disk-latency"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    latencies: list[float] = []
    try:
        started = time.perf_counter()
        next_write = started
        while time.perf_counter() - started < seconds:
            now = time.perf_counter()
            if now < next_write:
                time.sleep(next_write - now)
            begun = time.perf_counter()
            os.write(fd, chunk)
            os.fdatasync(fd)
            latencies.append((time.perf_counter() - begun) * 1000)
            next_write += interval
    finally:
        os.close(fd)
        path.unlink()
    latencies.sort()
    return {
        "p50_ms": _quantile(latencies, 0.5),
        "p99_ms": _quantile(latencies, 0.99),
        "chunk_bytes": len(chunk),
    }


class MockCluster:
    """librdkafka's in-memory mock cluster: one broker on a loopback port, run
    by a client of this process (on librdkafka's threads) while it lives.

    Its topics are created on first use with MOCK_PARTITIONS partitions and it
    keeps only the newest part of each partition's log in memory."""

    def __init__(self) -> None:
        self._host = Producer({"test.mock.num.brokers": 1, "log_level": 3})
        (broker,) = self._host.list_topics(timeout=30).brokers.values()
        self.address = f"{broker.host}:{broker.port}"

    def close(self) -> None:
        self._host.flush(0)
        del self._host


# -- the run -----------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    produce_mb: int
    mock_mb: int
    disk_mb: int
    rate_mb: float
    latency_seconds: float
    partitions: int
    port: int
    object_store: str | None
    profile_dir: Path | None
    server_config: Path | None
    compressed_mb: int = 0
    fetch_session_partitions: int = 0
    fetch_session_fetches: int = 0
    sasl_ssl_mb: int = 0
    latency_only: bool = False
    """Only the latency phase and what it stands on (the disk's sync latency,
    the mock's paced run, the produce that fills the server, the restart and
    the consume): no throughput ceilings, compressed, remote-ack, fetch
    session or SASL_SSL phase."""


def run(scratch: Path, settings: Settings) -> dict[str, Any]:
    values = make_values()
    records = settings.produce_mb * MIB // RECORD_BYTES
    results: dict[str, Any] = {
        "record_bytes": RECORD_BYTES,
        "records": records,
        "partitions": settings.partitions,
        "produce_mb": settings.produce_mb,
        "object_store": settings.object_store,
        **_harness.cpus(),
        "librdkafka": _harness.librdkafka_version(),
    }

    # The disk's ceiling, in the filesystem the server writes to.
    if not settings.latency_only:
        disk = {block: disk_mb_s(scratch, block, settings.disk_mb * MIB) for block in DISK_BLOCKS}
        results["disk_mb_s"] = round(max(disk.values()), 1)
        results["disk_mb_s_per_block"] = {f"{b // MIB}MiB": round(v, 1) for b, v in disk.items()}
        results["disk_mb"] = settings.disk_mb
    sync = disk_sync_latency(scratch, settings.rate_mb, settings.latency_seconds)
    results["disk_sync_p50_ms"] = round(sync["p50_ms"], 3)
    results["disk_sync_p99_ms"] = round(sync["p99_ms"], 3)
    results["disk_sync_bytes"] = sync["chunk_bytes"]

    # The client's ceilings: librdkafka against its own mock broker, flat out
    # and paced at the latency phase's rate (linger.ms alone costs milliseconds).
    mock_partitions = min(settings.partitions, MOCK_PARTITIONS)
    mock_records = settings.mock_mb * MIB // RECORD_BYTES
    cluster = MockCluster()
    try:
        if not settings.latency_only:
            mock = produce_flat_out(
                {"bootstrap.servers": cluster.address}, TOPIC, mock_partitions, mock_records, values
            )
            results["mock_produce_mb_s"] = round(mock["mb_s"], 1)
            results["mock_records"] = mock_records
            results["mock_client_cores"] = round(mock["client_cores"], 2)
        mock_queue = _stalls.RunQueue(os.getpid())
        mock_paced = produce_paced(
            cluster.address,
            LATENCY_TOPIC,
            mock_partitions,
            settings.rate_mb,
            settings.latency_seconds,
            values,
        )
    finally:
        cluster.close()
    results["mock_partitions"] = mock_partitions
    results["mock_latency_run_queue"] = mock_queue.waited(mock_paced["seconds"])
    results["mock_p50_ms"] = round(mock_paced["p50_ms"], 3)
    results["mock_p99_ms"] = round(mock_paced["p99_ms"], 3)
    results["mock_latency_achieved_mb_s"] = round(mock_paced["achieved_mb_s"], 1)
    results["mock_latency_cdf_ms"] = mock_paced["cdf_ms"]

    config, metrics_address = _backlog.with_metrics(scratch, settings.server_config, free_port())
    server = ServerProcess(
        scratch / "data",
        settings.port,
        scratch,
        object_store=settings.object_store,
        profile_dir=settings.profile_dir,
        config=config,
    )
    exit_codes: list[int] = []
    try:
        server.start()
        server.wait_ready()
        create_topics(server.address, settings.partitions, TOPIC, LATENCY_TOPIC)
        cpu, (loop_cpu, loop_faults) = server.cpu_seconds(), server.loop_stat()
        switches, loop_switches = server.voluntary_switches(), server.loop_switches()
        produced = produce_flat_out(
            {"bootstrap.servers": server.address}, TOPIC, settings.partitions, records, values
        )
        server_cpu = server.cpu_seconds() - cpu
        loop_cpu_after, loop_faults_after = server.loop_stat()
        produced_mib = produced["bytes"] / MIB
        results["server_produce_switches_per_mib"] = round(
            (server.voluntary_switches() - switches) / produced_mib, 1
        )
        waits_after, preemptions_after = server.loop_switches()
        waits, preemptions = waits_after - loop_switches[0], preemptions_after - loop_switches[1]
        results["server_loop_waits_per_mib"] = round(waits / produced_mib, 1)
        results["server_loop_preemptions_per_mib"] = round(preemptions / produced_mib, 1)
        results["server_loop_produce_ms_per_mib"] = round(
            (loop_cpu_after - loop_cpu) * 1000 / produced_mib, 3
        )
        # Pages of 4 KiB: 256 per MiB is every byte received landing in fresh memory.
        results["server_loop_faults_per_mib"] = round(
            (loop_faults_after - loop_faults) / produced_mib, 1
        )
        results["server_rss_after_produce_mib"] = round(server.resident_mib())
        results["produce_mb_s"] = round(produced["mb_s"], 1)
        results["produce_bytes"] = produced["bytes"]
        results["produce_s"] = round(produced["seconds"], 3)
        results["server_produce_cpu_s"] = round(server_cpu, 2)
        results["server_produce_cores"] = round(server_cpu / produced["seconds"], 2)
        # Steadier than MiB/s on a shared machine: what each MiB costs the server.
        results["server_produce_ms_per_mib"] = round(server_cpu * 1000 * MIB / produced["bytes"], 3)
        results["client_produce_cores"] = round(produced["client_cores"], 2)
        # The clock above stops at the last delivery, with up to
        # max_unuploaded_bytes still to upload: counted on until it is,
        # what a MiB costs the server all told.
        results["produce_upload_tail_s"] = round(_backlog.wait_uploaded(metrics_address, 120.0), 2)
        results["server_produce_uploaded_ms_per_mib"] = round(
            (server.cpu_seconds() - cpu) * 1000 / produced_mib, 3
        )
        if settings.compressed_mb > 0 and not settings.latency_only:
            results.update(compressed_produce(server, settings.partitions, settings.compressed_mb))

        started = time.perf_counter()
        exit_codes.append(server.stop())
        results["stop_s"] = round(time.perf_counter() - started, 2)
        not_dropped = drop_page_cache()
        results["page_cache_dropped"] = not_dropped is None
        if not_dropped is not None:
            results["page_cache_note"] = not_dropped

        started = time.perf_counter()
        server.start()
        server.wait_ready()
        results["restart_s"] = round(time.perf_counter() - started, 2)
        cpu = server.cpu_seconds()
        consumed = consume_all(server.address, TOPIC, settings.partitions, records)
        server_cpu = server.cpu_seconds() - cpu
        results["consume_mb_s"] = round(consumed["mb_s"], 1)
        results["consume_s"] = round(consumed["seconds"], 3)
        results["server_consume_cpu_s"] = round(server_cpu, 2)
        results["server_consume_cores"] = round(server_cpu / consumed["seconds"], 2)
        results["client_consume_cores"] = round(consumed["client_cores"], 2)

        cpu = server.cpu_seconds()
        server_queue, client_queue = _stalls.RunQueue(server.pid), _stalls.RunQueue(os.getpid())
        paced = produce_paced(
            server.address,
            LATENCY_TOPIC,
            settings.partitions,
            settings.rate_mb,
            settings.latency_seconds,
            values,
        )
        server_cpu = server.cpu_seconds() - cpu
        results["latency_run_queue"] = {
            "server": server_queue.waited(paced["seconds"]),
            "client": client_queue.waited(paced["seconds"]),
        }
        results["rate_mb"] = settings.rate_mb
        results["latency_seconds"] = settings.latency_seconds
        results["latency_records"] = paced["records"]
        results["latency_offered_mb_s"] = round(paced["offered_mb_s"], 1)
        results["latency_achieved_mb_s"] = round(paced["achieved_mb_s"], 1)
        for key in ("p50_ms", "p99_ms", "p999_ms", "max_ms", "p50_ack_ms", "p99_ack_ms"):
            results[key] = round(paced[key], 3)
        results["latency_worst_windows"] = paced["worst_windows"]
        results["latency_started_unix"] = round(paced["started_unix"], 3)
        latency_log = server.log_path
        results["latency_cdf_ms"] = paced["cdf_ms"]
        results["server_latency_cores"] = round(server_cpu / paced["seconds"], 2)
        results["client_latency_cores"] = round(paced["client_cores"], 2)
        if not settings.latency_only:
            results.update(remote_acks_phase(server.address, settings, values, results))
        exit_codes.append(server.stop())
        # Read once the server has stopped: its log is complete then.
        stalls = _stalls.read_stalls(latency_log, paced["started_unix"], paced["seconds"])
        results["latency_stalls"] = _stalls.summarize(
            stalls, paced["worst_windows"], STALL_WINDOW_SECONDS
        )
    except BaseException:
        print(f"the server's last lines:\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        server.kill()
    results["server_exit_codes"] = exit_codes
    if settings.fetch_session_partitions > 0 and not settings.latency_only:

        def session_server(name: str, config: Path) -> ServerProcess:
            logs = scratch / f"{name}-logs"
            logs.mkdir()
            return ServerProcess(scratch / name, free_port(), logs, config=config)

        results.update(
            fetch_sessions_phase(
                session_server,
                scratch,
                settings.fetch_session_partitions,
                settings.fetch_session_fetches,
            )
        )
    if settings.sasl_ssl_mb > 0 and not settings.latency_only:
        results.update(sasl_ssl_phase(scratch, settings, values))
    if settings.profile_dir is not None:
        results["profiles"] = server.profiles or "py-spy not installed"

    if not settings.latency_only:
        results["produce_vs_disk"] = round(results["produce_mb_s"] / results["disk_mb_s"], 3)
        results["produce_vs_mock"] = round(
            results["produce_mb_s"] / results["mock_produce_mb_s"], 3
        )
        results["write_twice_limit_mb_s"] = round(results["disk_mb_s"] / 2, 1)
        results["produce_vs_write_twice_limit"] = round(
            results["produce_mb_s"] / results["write_twice_limit_mb_s"], 3
        )
        results.update(binding_ceiling(results))
    results["p99_over_mock_ms"] = round(results["p99_ms"] - results["mock_p99_ms"], 3)
    results["targets"] = {
        f"{key} {op} {target:g}": (results[key] >= target if op == ">=" else results[key] <= target)
        for key, (op, target) in TARGETS.items()
        if key in results
    }
    return results


def make_compressible_values() -> list[bytes]:
    """1 KiB agent-memory-like records: JSON-ish fields from a small
    vocabulary around a random hex trace id, alike in shape, unlike in content."""
    rng = random.Random(2026)
    words = [
        b"tool", b"lookup_order", b"refund", b"verdict", b"allow", b"deny", b"approval",
        b"policy", b"compensation", b"customer", b"status", b"shipped", b"amount", b"EUR",
    ]  # fmt: skip
    values = []
    for i in range(DISTINCT_VALUES):
        parts = [b'{"seq":%d,"trace":"%s","text":"' % (i, os.urandom(16).hex().encode())]
        size = len(parts[0])
        while size < RECORD_BYTES:
            word = rng.choice(words) + (b" %d " % rng.randrange(10_000))
            parts.append(word)
            size += len(word)
        values.append(b"".join(parts)[: RECORD_BYTES - 2] + b'"}')
    return values


def compressed_produce(server: ServerProcess, partitions: int, mb: int) -> dict[str, Any]:
    """The same compressible records flat out with each codec in CODECS,
    each to its own topic: the rates, the server's cores, and each codec's
    rate over the uncompressed one's; beside them the client's own ceiling
    with that codec, against librdkafka's mock cluster (which never inflates)."""
    values = make_compressible_values()
    records = mb * MIB // RECORD_BYTES
    topics = {codec: f"{TOPIC}-{codec}" for codec in CODECS}
    create_topics(server.address, partitions, *topics.values())
    out: dict[str, Any] = {"compressed_mb": mb}
    cluster = MockCluster()
    try:
        for codec, topic in topics.items():
            mock = produce_flat_out(
                {"bootstrap.servers": cluster.address, "compression.type": codec},
                topic,
                min(partitions, MOCK_PARTITIONS),
                records,
                values,
            )
            out[f"mock_produce_{codec}_mb_s"] = round(mock["mb_s"], 1)
    finally:
        cluster.close()
    for codec, topic in topics.items():
        cpu = server.cpu_seconds()
        produced = produce_flat_out(
            {"bootstrap.servers": server.address, "compression.type": codec},
            topic,
            partitions,
            records,
            values,
        )
        server_cpu = server.cpu_seconds() - cpu
        out[f"produce_{codec}_mb_s"] = round(produced["mb_s"], 1)
        out[f"server_produce_{codec}_cores"] = round(server_cpu / produced["seconds"], 2)
    for codec in CODECS[1:]:
        out[f"produce_{codec}_vs_none"] = round(
            out[f"produce_{codec}_mb_s"] / out["produce_none_mb_s"], 3
        )
    return out


def _print_compressed(results: dict[str, Any]) -> None:
    if "compressed_mb" not in results:
        return
    print(f"\ncompressed produce, {results['compressed_mb']} MiB of JSON-like 1 KiB records each:")
    for codec in CODECS:
        ratio = "" if codec == "none" else f", {results[f'produce_{codec}_vs_none']:.2f}x none"
        print(
            f"  {codec:<5} {results[f'produce_{codec}_mb_s']:8.1f} MiB/s, server "
            f"{results[f'server_produce_{codec}_cores']:.2f} cores{ratio}; mock cluster "
            f"{results[f'mock_produce_{codec}_mb_s']:.1f} MiB/s"
        )


REMOTE_TOPIC = "bench-remote"
REMOTE_LATENCY_TOPIC = "bench-remote-latency"
REMOTE_BASELINE_TOPIC = "bench-remote-baseline"
REMOTE = {"tidelog.ack.durability": "remote"}


def remote_acks_phase(
    address: str, settings: Settings, values: list[bytes], results: dict[str, Any]
) -> dict[str, Any]:
    """Remote acknowledgements beside local ones on the same server: flat
    out (a quarter of produce_mb to a local topic, then to a remote one) and
    paced like the latency phase (whose local figures are in ``results``)."""
    create_topics(address, settings.partitions, REMOTE_BASELINE_TOPIC)
    create_topics(address, settings.partitions, REMOTE_TOPIC, REMOTE_LATENCY_TOPIC, config=REMOTE)
    records = max(1, settings.produce_mb // 4) * MIB // RECORD_BYTES
    config = {"bootstrap.servers": address}
    local = produce_flat_out(config, REMOTE_BASELINE_TOPIC, settings.partitions, records, values)
    remote = produce_flat_out(config, REMOTE_TOPIC, settings.partitions, records, values)
    paced = produce_paced(
        address,
        REMOTE_LATENCY_TOPIC,
        settings.partitions,
        settings.rate_mb,
        settings.latency_seconds,
        values,
    )
    return {
        "remote_records": records,
        "remote_mb_s": round(remote["mb_s"], 1),
        "remote_local_mb_s": round(local["mb_s"], 1),
        "remote_vs_local_mb_s": round(remote["mb_s"] / local["mb_s"], 3),
        "remote_latency_achieved_mb_s": round(paced["achieved_mb_s"], 1),
        "remote_p50_ms": round(paced["p50_ms"], 3),
        "remote_p99_ms": round(paced["p99_ms"], 3),
        "remote_p50_vs_local": round(paced["p50_ms"] / results["p50_ms"], 2),
        "remote_p99_vs_local": round(paced["p99_ms"] / results["p99_ms"], 2),
        "remote_latency_cdf_ms": paced["cdf_ms"],
    }


SASL_USER = "bench"


def sasl_ssl_phase(scratch: Path, settings: Settings, values: list[bytes]) -> dict[str, Any]:
    """Produce and consume over PLAINTEXT and over SASL_SSL (SCRAM-SHA-512),
    two listeners of one server, one topic each; their ratios."""
    root = scratch / "sasl-ssl"
    root.mkdir()
    certificate = make_server_certificate(root)
    password = root / "password"
    password.write_text(os.urandom(16).hex() + "\n")
    password.chmod(0o600)
    data_dir = root / "data"
    subprocess.run(
        [sys.executable, "-m", "engine", "users", "--data-dir", str(data_dir), "add",
         SASL_USER, "--password-file", str(password), "--mechanism", "SCRAM-SHA-512"],
        check=True, capture_output=True, timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    port, sasl_ssl_port = free_port(), free_port()
    config = root / "tidelog.toml"
    config.write_text(
        "[server]\n"
        f'listeners = "PLAINTEXT://{HOST}:{port},SASL_SSL://{HOST}:{sasl_ssl_port}"\n'
        f'"ssl.keystore.location" = "{certificate.keystore}"\n'
    )
    logs = root / "logs"
    logs.mkdir()
    server = ServerProcess(data_dir, port, logs, config=config)  # a local store of its own
    secure = {
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(certificate.ca),
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": SASL_USER,
        "sasl.password": password.read_text().strip(),
    }
    doors = {
        "plaintext": (server.address, {}),
        "sasl_ssl": (f"{HOST}:{sasl_ssl_port}", secure),
    }
    records = settings.sasl_ssl_mb * MIB // RECORD_BYTES
    results: dict[str, Any] = {"sasl_ssl_mb": settings.sasl_ssl_mb}
    server.start()
    try:
        server.wait_ready()
        topics = {door: f"bench-{door}" for door in doors}
        create_topics(server.address, settings.partitions, *topics.values())
        for door, (address, security) in doors.items():
            cpu = server.cpu_seconds()
            produced = produce_flat_out(
                {"bootstrap.servers": address, **security},
                topics[door],
                settings.partitions,
                records,
                values,
            )
            results[f"{door}_produce_mb_s"] = round(produced["mb_s"], 1)
            results[f"{door}_produce_server_ms_per_mib"] = round(
                (server.cpu_seconds() - cpu) * 1000 / settings.sasl_ssl_mb, 3
            )
        for door, (address, security) in doors.items():
            cpu = server.cpu_seconds()
            consumed = consume_all(address, topics[door], settings.partitions, records, security)
            results[f"{door}_consume_mb_s"] = round(consumed["mb_s"], 1)
            results[f"{door}_consume_server_ms_per_mib"] = round(
                (server.cpu_seconds() - cpu) * 1000 / settings.sasl_ssl_mb, 3
            )
            results[f"{door}_consume_client_ms_per_mib"] = round(
                consumed["client_cores"] * consumed["seconds"] * 1000 / settings.sasl_ssl_mb, 3
            )
        results["sasl_ssl_server_exit_code"] = server.stop()
    except BaseException:
        print(f"the SASL_SSL server's last lines:\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        server.kill()
    for what in ("produce", "consume"):
        results[f"sasl_ssl_vs_plaintext_{what}"] = round(
            results[f"sasl_ssl_{what}_mb_s"] / results[f"plaintext_{what}_mb_s"], 3
        )
        # CPU time per MiB holds still on a busy machine where MiB/s does not;
        # a run too short for a clock tick of plaintext CPU has no ratio.
        plaintext_cpu = results[f"plaintext_{what}_server_ms_per_mib"]
        results[f"sasl_ssl_vs_plaintext_{what}_server_cpu"] = (
            round(results[f"sasl_ssl_{what}_server_ms_per_mib"] / plaintext_cpu, 3)
            if plaintext_cpu
            else None
        )
    return results


def print_sasl_ssl(results: dict[str, Any]) -> None:
    if "sasl_ssl_mb" not in results:
        return
    print(f"SASL_SSL (SCRAM-SHA-512) beside PLAINTEXT, one server, {results['sasl_ssl_mb']} MiB:")
    for what in ("produce", "consume"):
        print(
            f"  {what}: PLAINTEXT {results[f'plaintext_{what}_mb_s']:.1f} MiB/s, "
            f"SASL_SSL {results[f'sasl_ssl_{what}_mb_s']:.1f} MiB/s, "
            f"ratio {results[f'sasl_ssl_vs_plaintext_{what}']:.2f}; server CPU "
            f"{results[f'plaintext_{what}_server_ms_per_mib']:.2f} and "
            f"{results[f'sasl_ssl_{what}_server_ms_per_mib']:.2f} ms/MiB"
        )
    print(
        f"  consume, client CPU: PLAINTEXT {results['plaintext_consume_client_ms_per_mib']:.2f}"
        f" ms/MiB, SASL_SSL {results['sasl_ssl_consume_client_ms_per_mib']:.2f} ms/MiB"
    )


def print_remote_acks(results: dict[str, Any]) -> None:
    print(
        f"\nremote acks (tidelog.ack.durability=remote) beside local, same server:\n"
        f"  flat out, {results['remote_records']:,} records: remote "
        f"{results['remote_mb_s']:.1f} MiB/s, local {results['remote_local_mb_s']:.1f} MiB/s "
        f"(remote/local {results['remote_vs_local_mb_s']:.2f})\n"
        f"  paced at {results['remote_latency_achieved_mb_s']:.1f} MiB/s, produce() to "
        f"callback: p50 {results['remote_p50_ms']:.2f} ms, p99 {results['remote_p99_ms']:.2f} "
        f"ms ({results['remote_p50_vs_local']:.1f}x / {results['remote_p99_vs_local']:.1f}x "
        f"local's)"
    )


# -- output ------------------------------------------------------------------------


CEILINGS = {
    "write_twice_limit_mb_s": "the disk (every byte written twice)",
    "mock_produce_mb_s": "the client (librdkafka to its in-memory mock cluster)",
}
"""What can bound the produce figure, by key: no broker beats either."""


def binding_ceiling(results: dict[str, Any]) -> dict[str, Any]:
    """The lower of the two ceilings, which one it is, and produce_mb_s
    over it: when the client cannot push the write-twice limit even to a
    broker that costs nothing, produce_vs_write_twice_limit's target is out
    of any broker's reach on this machine, and this ratio says how close the
    server comes to what is reachable."""
    key = min(CEILINGS, key=lambda name: float(results[name]))
    ceiling = float(results[key])
    return {
        "ceiling_mb_s": ceiling,
        "ceiling": key,
        "produce_vs_ceiling": round(results["produce_mb_s"] / ceiling, 3),
    }


def print_table(results: dict[str, Any]) -> None:
    print(
        f"{results['records']:,} records of {results['record_bytes']} B random bytes to a topic "
        f"of {results['partitions']} partition(s), acks=all, linger.ms=5, no compression; "
        f"librdkafka {results['librdkafka']}, {results['cpus_usable']} CPUs"
    )
    store = results["object_store"] or "the server's default"
    page_cache = (
        "OS page cache dropped" if results["page_cache_dropped"] else results["page_cache_note"]
    )
    print(f"object store: {store}; before consuming: server restarted, {page_cache}\n")
    rows = [
        (
            "produce, tidelog server",
            f"{results['produce_mb_s']:.1f}",
            f"server {results['server_produce_cores']:.2f} "
            f"({results['server_produce_ms_per_mib']:.2f} ms per MiB,"
            f" {results['server_produce_uploaded_ms_per_mib']:.2f} uploaded), client "
            f"{results['client_produce_cores']:.2f}",
        )
    ]
    if "mock_produce_mb_s" in results:
        rows.append(
            (
                "produce, librdkafka mock cluster",
                f"{results['mock_produce_mb_s']:.1f}",
                f"client and mock {results['mock_client_cores']:.2f}",
            )
        )
    if "disk_mb_s" in results:
        disk = results["disk_mb_s_per_block"]
        rows.append(
            (
                "disk, fdatasync per 1 MiB / 4 MiB",
                f"{results['disk_mb_s']:.1f}",
                f"{disk['1MiB']:.1f} / {disk['4MiB']:.1f}",
            )
        )
    rows += [
        (
            "consume from offset 0, restarted server",
            f"{results['consume_mb_s']:.1f}",
            f"server {results['server_consume_cores']:.2f}, client "
            f"{results['client_consume_cores']:.2f}",
        ),
        (
            f"paced produce at {results['rate_mb']:g} MiB/s",
            f"{results['latency_achieved_mb_s']:.1f}",
            f"server {results['server_latency_cores']:.2f}, client "
            f"{results['client_latency_cores']:.2f}",
        ),
    ]
    width = max(len(label) for label, _, _ in rows)
    print(f"{'':<{width}} {'MiB/s':>8}   cores busy / detail")
    for label, rate, detail in rows:
        print(f"{label:<{width}} {rate:>8}   {detail}")
    print(
        f"\nlatency at {results['latency_achieved_mb_s']:.1f} MiB/s for "
        f"{results['latency_seconds']:g} s ({results['latency_records']:,} records)\n"
        f"  produce() to callback:        p50 {results['p50_ms']:.2f} ms, "
        f"p99 {results['p99_ms']:.2f} ms, p99.9 {results['p999_ms']:.2f} ms, "
        f"max {results['max_ms']:.2f} ms\n"
        f"  produce() to acknowledgement: p50 {results['p50_ack_ms']:.2f} ms, "
        f"p99 {results['p99_ack_ms']:.2f} ms (librdkafka's own)\n"
        f"  worst {STALL_WINDOW_SECONDS * 1000:g} ms windows [s into the phase, max ms]: "
        f"{results['latency_worst_windows']}\n"
        f"  mock cluster, produce() to callback at "
        f"{results['mock_latency_achieved_mb_s']:.1f} MiB/s: p50 {results['mock_p50_ms']:.2f} "
        f"ms, p99 {results['mock_p99_ms']:.2f} ms\n"
        f"  disk, write + fdatasync of {results['disk_sync_bytes'] // 1024} KiB every 5 ms: "
        f"p50 {results['disk_sync_p50_ms']:.2f} ms, p99 {results['disk_sync_p99_ms']:.2f} ms"
    )
    if "latency_stalls" in results:
        _stalls.print_stalls(
            results["latency_stalls"],
            {
                **results["latency_run_queue"],
                "mock run's client": results["mock_latency_run_queue"],
            },
        )
    print(
        f"server stop (flush, upload) {results['stop_s']:.2f} s, restart "
        f"{results['restart_s']:.2f} s, exit codes {results['server_exit_codes']}"
    )
    if "remote_mb_s" in results:
        print_remote_acks(results)
    if "profiles" in results:
        print(f"profiles: {results['profiles']}")
    _print_compressed(results)
    print_fetch_sessions(results)
    print_sasl_ssl(results)
    ratios = (
        f"produce_vs_disk {results['produce_vs_disk']:.2f}   produce_vs_write_twice_limit "
        f"{results['produce_vs_write_twice_limit']:.2f}   produce_vs_mock "
        f"{results['produce_vs_mock']:.2f}   "
        if "produce_vs_disk" in results
        else ""
    )
    print(
        f"\n{ratios}consume_mb_s {results['consume_mb_s']:.1f}   "
        f"p99_ms {results['p99_ms']:.2f} (mock + {results['p99_over_mock_ms']:.2f})"
    )
    if "ceiling_mb_s" in results:
        print(
            f"ceiling {results['ceiling_mb_s']:.1f} MiB/s: {CEILINGS[results['ceiling']]} "
            f"binds (write-twice limit {results['write_twice_limit_mb_s']:.1f}, mock "
            f"{results['mock_produce_mb_s']:.1f});   produce_vs_ceiling "
            f"{results['produce_vs_ceiling']:.2f}"
        )
    _harness.print_targets(results["targets"])


def main() -> None:
    parser = _harness.parser(__doc__, quick="a smoke test: 32 MiB, 3 s of latency, 64 MiB of disk")
    parser.add_argument("--produce-mb", type=int, default=None, help="MiB to produce (1024)")
    parser.add_argument("--mock-mb", type=int, default=None, help="MiB to the mock (as produce)")
    parser.add_argument("--disk-mb", type=int, default=None, help="MiB per disk block size (1024)")
    parser.add_argument("--rate-mb", type=float, default=50.0, help="MiB/s of the latency phase")
    parser.add_argument(
        "--latency-seconds", type=float, default=None, help="length of the latency phase (10)"
    )
    parser.add_argument("--partitions", type=int, default=1, help="partitions of each topic")
    parser.add_argument(
        "--compressed-mb", type=int, default=None, help="MiB per codec, compressed phase (256)"
    )
    parser.add_argument(
        "--fetch-session-partitions",
        type=int,
        default=1000,
        help="partitions of the fetch-session phase's consumer (1000; 0 skips the phase)",
    )
    parser.add_argument(
        "--fetch-session-fetches",
        type=int,
        default=None,
        help="fetches of the fetch-session phase, with sessions and without (500)",
    )
    parser.add_argument(
        "--data-dir", default=None, help="scratch directory, emptied after (default: a temp dir)"
    )
    parser.add_argument("--port", type=int, default=None, help="server port (default: a free one)")
    parser.add_argument("--object-store", default=None, help="the server's --object-store URL")
    parser.add_argument("--config", default=None, help="a config file for the server (TOML)")
    parser.add_argument(
        "--sasl-ssl-mb",
        type=int,
        default=None,
        help="MiB per listener, SASL_SSL beside PLAINTEXT (128; 0 skips the phase)",
    )
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="only the latency phase and what it stands on (produce, restart, consume)",
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        const=".",
        default=None,
        metavar="DIR",
        help="attach py-spy record to the server, flame graphs into DIR (default: .)",
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else DEFAULTS
    produce_mb = args.produce_mb if args.produce_mb is not None else int(sizes["produce_mb"])
    settings = Settings(
        produce_mb=produce_mb,
        mock_mb=args.mock_mb if args.mock_mb is not None else produce_mb,
        disk_mb=args.disk_mb if args.disk_mb is not None else int(sizes["disk_mb"]),
        rate_mb=args.rate_mb,
        latency_seconds=(
            args.latency_seconds
            if args.latency_seconds is not None
            else float(sizes["latency_seconds"])
        ),
        partitions=args.partitions,
        port=args.port if args.port is not None else free_port(),
        object_store=args.object_store,
        profile_dir=Path(args.profile).resolve() if args.profile is not None else None,
        server_config=Path(args.config).resolve() if args.config is not None else None,
        compressed_mb=(
            args.compressed_mb if args.compressed_mb is not None else int(sizes["compressed_mb"])
        ),
        fetch_session_partitions=args.fetch_session_partitions,
        fetch_session_fetches=(
            args.fetch_session_fetches
            if args.fetch_session_fetches is not None
            else int(sizes["fetch_session_fetches"])
        ),
        sasl_ssl_mb=args.sasl_ssl_mb if args.sasl_ssl_mb is not None else int(sizes["sasl_ssl_mb"]),
        latency_only=args.latency_only,
    )
    if settings.profile_dir is not None:
        settings.profile_dir.mkdir(parents=True, exist_ok=True)
    with _harness.scratch(args.data_dir, "tidelog-kafka-bench-") as scratch:
        results = run(scratch, settings)
    _harness.report(results, args.json, print_table)


if __name__ == "__main__":
    main()
