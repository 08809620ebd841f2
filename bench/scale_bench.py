"""How tidelog's costs grow under agent-memory load: fan-out, replay bursts, partitions, history.

    python bench/scale_bench.py [--quick] [--json] [--only fanout|burst|partitions|history]...
                                [--rate-mb 50] [--history-mib 10240] [--produce-mib 256]
                                [--fanout-seconds 20] [--read-nice N] [--background-nice N]
                                [--replay-rest-ratio R]
                                [--read-ahead-beside-live N] [--replay-client-nice N]
                                [--burst-rounds N] [--data-dir PATH]

Every scenario runs ``python -m engine serve`` in a child process on
loopback (its object store: a directory beside its data) and drives it with
librdkafka (confluent-kafka); every figure is set beside a baseline measured
in the same run. MB is MiB (2**20 bytes) of record values.

- fanout: one producer (acks=all, linger.ms=5) at ``--rate-mb`` of 1 KiB
  records to a topic of one partition, and N = 1, 4, 16, 32 consumers
  tailing it, each with a group.id of its own, every partition assigned
  from offset 0 (no rebalance to wait for). Consumers run as threads, at
  most eight to a child process (librdkafka fetches on threads of its own;
  the Python side only reads each record's produce time), so neither the
  bench's process nor one GIL is the bottleneck. A record's delivery time
  runs from just before produce() (stamped in its value) to its receipt by
  a consumer: p50/p99 over every consumer, and ``p99_vs_n1`` against N=1.
  Every consumer must receive every record, the last within a second of
  its produce (``kept_up``; ``consumer_mb_s_min`` is the slowest one's
  rate). Each N runs again, right after, against librdkafka's in-memory
  mock cluster (``test.mock.num.brokers``, on librdkafka's threads in the
  bench's process): the same producer, the same consumers in the same
  child processes, the same code, asking with fetch.wait.max.ms 1
  (MOCK_FETCH_WAIT_MS says why). A broker that costs nothing, so its
  p50/p99 (``mock_n<N>``) are what the client machine itself adds at that
  N: 32 librdkafka consumers and their Python on the same cores.
  ``p99_vs_mock_n<N>`` is tidelog's p99 over the mock's at N;
  ``p99_vs_n1_floor`` the mock's p99 at the largest N over tidelog's at
  N=1, the p99_vs_n1 tidelog would reach if it added nothing above the
  clients at that N: when it is above the target the clients bind
  (``binding_ceiling``: ``clients``), else the target does. From the
  server's /metrics: the reads the log cache did not answer
  (``object_reads``: tail reads come from the log cache, so 0) and every
  object-store GET meanwhile (``gets``: compaction's and the manifest's
  too); the cores the server and the consumers' processes used meanwhile
  (``server_cores``, ``consumer_cores``: on a shared machine, whether
  they were busy or waiting for a CPU), and the ms per second the
  server's event loop was ready to run but waited for a CPU
  (``loop_waited_ms_per_s``, from /proc schedstat: the cores the
  consumers it wakes, and anything else, take from it);
- burst: history (``--history-mib``) written straight into the store
  (bench/_scale_history.py) over 4 partitions; a fresh server (cold block
  cache) serves the live producer (acks=all, ``--rate-mb`` / 4) and 4
  tailing consumers, and in each of ``--burst-rounds`` rounds a window of
  live traffic alone, then a replay reader of the whole history as fast
  as it can (the reader starts and connects before the round's window,
  and reads at a word from the bench: its start-up falls in neither
  window). Live produce p99 (produce() to its delivery report) and the
  tail consumers' delivery p99, before and during the burst, each over
  every round's window of that phase (to a tenth of a second; each
  round's own beside it, ``*_runs``), and the replay's rate beside the same replay
  alone on a fresh server, run once before and once after (the faster
  counts: ``solo_replay_mb_s``), and the server's CPU per MiB in the
  solo replays (``solo_replay_server_us_per_mib``, the lower of the two:
  what a replay costs the server, live traffic aside). Beside them,
  before and during: how long the server's threads, and its event loop
  alone, waited for a CPU (``server_run_queue_*``, Linux's schedstat),
  the loop's lags of 10 ms or more (``loop_lags_*``, from tidelog.stalls),
  the WAL's fsyncs of 20 ms or more (``wal_slow_syncs_*``: the history is
  read from the WAL's disk), and the cores the replaying client used
  (``replay_client_cores``), which tell contention for the machine's CPUs
  from the server's own work. During the replay, the cores the server wanted (ran and waited
  to run) against those the replaying client, the live clients and the
  machine's other processes left it: ``binding_ceiling`` is ``clients``
  when it would have fitted but for the replaying client, ``server`` when
  not even then (docs/design/0034).
  ``--replay-client-nice N`` starts the replaying client (alone too) N nice
  values lower: if the ratios fall with it, the client machine's CPU binds;
  ``--watch-loop`` runs a watchdog in the live server (bench/loop_watch)
  and counts its event loop's stalls in each window by their work
  (``watched_*``: stalls of 10 ms or more, those with five or more
  read-ahead threads at work, the most CPU the loop ran in one;
  bench/_loop_stalls.py, docs/design/0106); it takes the GIL a thousand
  times a second, so compare its runs only with each other;
- partitions: one topic of 1, 100, 1,000 and 10,000 partitions, and 1,000
  topics of one partition, each on a fresh server: the server's RSS before
  and after the creation (``idle_kib_per_partition``); then the same total
  rate (``--rate-mb``) of records to the partitions in turn, as round-robin
  keys would spread them: the rate the producer reached (first produce()
  to last delivery) and its delivery p99; then one consumer of every
  partition reads it all from offset 0, flat out. Ratios to one partition,
  of the rates and of the server's CPU (every thread) per record produced
  and per record read (``produce_cpu_<n>_vs_1``: what a record costs the
  server, however busy the machine).
  librdkafka sends one partition's batch per Produce request, so with
  thousands of partitions each request carries a record or two;
- history: 1, 10 and 100 percent of ``--history-mib`` written straight
  into the store as objects of 256 KiB (``--quick``) or 8 MiB, so the
  object count grows with it: the manifest's size and the time of one
  commit over it; a server's start-up time (until it listens) and RSS; and
  the producer at ``--rate-mb`` to another topic, against the smallest
  history.

``--quick`` scales every size down (the whole in about two minutes).
"""

from __future__ import annotations

import operator
import resource
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _harness
import _loop_stalls
import _scale_clients as clients
import _scale_history as history
import _stalls
from _scale_parts import (
    RECORD_BYTES,
    ClientProcess,
    LiveProducer,
    MiB,
    Server,
    create_topics,
    paced,
    read_all,
    tailing,
)
from kafka_bench import MockCluster

from s3stream.config import STORE_RANGES
from s3stream.errors import ConfigOutOfRange
from s3stream.ranges import check_range

WARM_UP_S = 1.0
"""The first second of a live producer's run (connections, first batches)
is left out of its latencies."""
MIN_WINDOW_RECORDS = 1000
"""The fewest live records a phase (before, during a replay; every round's
window of it together) must hold for its p99 to mean anything: the p99 is
then the tenth-slowest record or later, not the one slowest stall."""
BURST_SETTLE_S = 1.0
"""The burst's live traffic runs this long between a round's replaying
client becoming ready (and the previous round's replay ending) and the
next window before a replay."""
KEPT_UP_MS = 1000.0
"""A consumer kept up if it got every record and the end marker reached it
within this long of being produced."""
SCENARIOS = ("fanout", "burst", "partitions", "history")
MOCK_FETCH_WAIT_MS = 1
"""fetch.wait.max.ms of the consumers of librdkafka's mock cluster: the
mock holds a Fetch that finds nothing for the whole wait (a produce does
not end it), so at the tidelog consumers' 100 ms the mock's p50 is half of
that; at 1 ms its figures hold at most a millisecond of polling."""


@dataclass(frozen=True)
class Sizes:
    rate_mb: float
    fanout: tuple[int, ...]
    fanout_seconds: float
    history_mib: int
    burst_before_s: float
    burst_rounds: int
    partitions: tuple[int, ...]
    topics: int
    partitions_mib: int
    history_levels: tuple[int, ...]
    """Percent of history_mib written in each history level."""
    history_object_bytes: int
    history_produce_mib: int
    read_nice: int | None = None
    """The burst servers' ``[store] read_nice``; None: its default."""
    background_nice: int | None = None
    """The burst servers' ``[store] background_nice``; None: its default."""
    replay_rest_ratio: float | None = None
    """The burst servers' ``[store] replay_rest_ratio``; None: its default."""
    read_ahead_beside_live: int | None = None
    """The burst servers' ``[store] read_ahead_beside_live``; None: its default."""
    replay_client_nice: int = 0
    """How many nice values below the bench the burst's replaying client
    runs (alone and beside live traffic): whether the live latency waits
    for a CPU behind it."""
    watch_loop: bool = False
    """The burst's live server runs bench/loop_watch's watchdog, and the
    burst counts its event loop's stalls by what they were."""


FULL = Sizes(
    rate_mb=50.0,
    fanout=(1, 4, 16, 32),
    fanout_seconds=20.0,
    history_mib=10 * 1024,
    burst_before_s=5.0,
    burst_rounds=3,
    partitions=(1, 100, 1000, 10_000),
    topics=1000,
    partitions_mib=256,
    history_levels=(1, 10, 100),
    history_object_bytes=8 * MiB,
    history_produce_mib=256,
)
QUICK = Sizes(
    rate_mb=2.0,
    fanout=(1, 4, 16, 32),
    fanout_seconds=4.0,
    history_mib=400,
    burst_before_s=3.0,
    burst_rounds=4,
    partitions=(1, 100, 1000, 10_000),
    topics=1000,
    partitions_mib=4,
    history_levels=(1, 10, 100),
    history_object_bytes=256 * 1024,
    history_produce_mib=4,
)
TARGETS = {
    "fanout.p99_vs_n1 <= 2": ("fanout", "p99_vs_n1", "<=", 2.0),
    "fanout.tail_object_reads == 0": ("fanout", "tail_object_reads", "<=", 0.0),
    "burst.produce_p99_during_vs_before <= 2": ("burst", "produce_p99_during_vs_before", "<=", 2),
    "burst.tail_p99_during_vs_before <= 2": ("burst", "tail_p99_during_vs_before", "<=", 2.0),
    "burst.replay_vs_solo >= 0.5": ("burst", "replay_vs_solo", ">=", 0.5),
    "partitions.produce_1000_vs_1 >= 0.7": ("partitions", "produce_1000_vs_1", ">=", 0.7),
    "partitions.produce_10000_vs_1 >= 0.5": ("partitions", "produce_10000_vs_1", ">=", 0.5),
    "partitions.idle_kib_per_partition < 20": (
        "partitions",
        "idle_kib_per_partition",
        "<",
        20.0,
    ),
}


# -- scenarios -------------------------------------------------------------------------


def fanout(scratch: Path, sizes: Sizes) -> dict[str, Any]:
    """Each N on tidelog, then the same N on librdkafka's mock cluster, back
    to back, so both see the machine as it was."""
    results: dict[str, Any] = {"rate_mb_s": sizes.rate_mb, "consumers": list(sizes.fanout)}
    p99: dict[int, float] = {}
    mock_p99: dict[int, float] = {}
    mock = MockCluster()
    try:
        with Server(scratch, scratch / "fanout") as server:
            for n in sizes.fanout:
                topic = f"fanout-{n}"
                create_topics(server.address, {topic: 1})
                results[f"n{n}"] = _fan_out_run(server.address, topic, n, sizes, server)
                # The mock makes its topics on first use, with 4 partitions:
                # the producer writes, and the consumers read, the first.
                results[f"mock_n{n}"] = _fan_out_run(
                    mock.address, topic, n, sizes, None, MOCK_FETCH_WAIT_MS
                )
                p99[n] = results[f"n{n}"]["p99_ms"]
                mock_p99[n] = results[f"mock_n{n}"]["p99_ms"]
    finally:
        mock.close()
    first, last = sizes.fanout[0], sizes.fanout[-1]
    for n in sizes.fanout[1:]:
        results[f"p99_n{n}_vs_n{first}"] = round(p99[n] / p99[first], 2)
    results["p99_vs_n1"] = results[f"p99_n{last}_vs_n{first}"]
    results["tail_object_reads"] = sum(results[f"n{n}"]["object_reads"] for n in sizes.fanout)
    results["kept_up"] = all(results[f"n{n}"]["kept_up"] for n in sizes.fanout)
    results["p99_curve"] = [[n, p99[n]] for n in sizes.fanout]
    # The ceiling beside the target: the same clients on the same machine
    # against a broker that costs nothing.
    for n in sizes.fanout:
        results[f"p99_vs_mock_n{n}"] = round(p99[n] / mock_p99[n], 2)
    results["p99_vs_mock"] = results[f"p99_vs_mock_n{last}"]
    results["mock_p99_vs_n1"] = round(mock_p99[last] / mock_p99[first], 2)
    results["mock_p99_curve"] = [[n, mock_p99[n]] for n in sizes.fanout]
    # Were tidelog to add nothing at N=32 above what the clients cost on
    # this machine, p99_vs_n1 would be this: above the target, the clients
    # bind.
    results["p99_vs_n1_floor"] = round(mock_p99[last] / p99[first], 2)
    bound = TARGETS["fanout.p99_vs_n1 <= 2"][3]
    results["binding_ceiling"] = "clients" if results["p99_vs_n1_floor"] > bound else "target"
    return results


def _fan_out_run(
    address: str,
    topic: str,
    n: int,
    sizes: Sizes,
    server: Server | None,
    wait_ms: int | None = None,
) -> dict[str, Any]:
    """One producer at the live rate to partition 0 of ``topic`` and n
    tailing consumers of it; ``server`` (None: the mock) is asked for its
    CPU and its reads."""
    rate = sizes.rate_mb * MiB / RECORD_BYTES
    children = tailing(address, topic, n, topic, partitions=1, wait_ms=wait_ms)
    gets, misses = server.reads() if server else (0, 0)
    producer = LiveProducer(address, topic, rate)
    cpu = [_cpu_seconds(server), *(child.cpu_seconds() for child in children)]
    run_queue = _stalls.RunQueue(server.process.pid) if server else None
    started, began = time.time(), time.perf_counter()
    producer.start()
    time.sleep(sizes.fanout_seconds)
    used = [_cpu_seconds(server), *(child.cpu_seconds() for child in children)]
    elapsed = time.perf_counter() - began
    waited = run_queue.waited(elapsed) if run_queue else None
    producer.stop()
    consumers = [c for child in children for c in child.result()["consumers"]]
    gets_after, misses_after = server.reads() if server else (0, 0)
    failed = [c["error"] for c in consumers if c["error"]]
    if failed:
        raise RuntimeError(f"fanout N={n} on {address}: {failed[0]}")
    # The first second is warm-up (connections, the first batches).
    merged = clients.merge(
        [clients.from_wire(c["slots"]) for c in consumers], start=started + WARM_UP_S
    )
    rates = [c["bytes"] / MiB / c["seconds"] for c in consumers if c["seconds"] > 0]
    figures = {
        "p50_ms": clients.quantile(merged, 0.5),
        "p99_ms": clients.quantile(merged, 0.99),
        "consumer_mb_s_min": round(min(rates), 2),
        "consumer_mb_s_mean": round(sum(rates) / len(rates), 2),
        "produced": producer.sent,
        "kept_up": all(
            c["records"] == producer.sent and c["end_delay_ms"] < KEPT_UP_MS for c in consumers
        ),
        "end_delay_ms_max": max(c["end_delay_ms"] for c in consumers),
        # The mock runs on librdkafka's threads in this process, beside the
        # producer: its "server" cores are this whole process's.
        "server_cores": round((used[0] - cpu[0]) / elapsed, 2),
        "consumer_cores": round((sum(used[1:]) - sum(cpu[1:])) / elapsed, 2),
        "object_reads": misses_after - misses,
        "gets": gets_after - gets,
    }
    if waited is not None:
        # The server's event loop ready to run but waiting for a CPU, per
        # second: the cores the consumers it wakes take from it.
        figures["loop_waited_ms_per_s"] = waited["main_waited_ms_per_s"]
    return figures


def _cpu_seconds(server: Server | None) -> float:
    """The server's CPU so far, or (the mock) this process's."""
    if server is not None:
        return server.process.cpu_seconds()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


BURST_PARTITIONS = 4
BURST_CONSUMERS = 4


@dataclass
class _Phase:
    """One phase (before, during) summed over the burst's rounds: its
    windows and what the server's threads did in them."""

    windows: list[tuple[float, float]] = field(default_factory=list)
    seconds: float = 0.0
    run_queue: dict[str, float] = field(default_factory=dict)
    """ms per second, summed weighted by seconds, divided at the end."""
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds each took in the phase's windows (_Usage)."""

    def add(self, start: float, end: float, waited: dict[str, float]) -> None:
        self.windows.append((start, end))
        self.seconds += end - start
        for key, per_s in waited.items():
            self.run_queue[key] = self.run_queue.get(key, 0.0) + per_s * (end - start)

    def run_queue_per_s(self) -> dict[str, float]:
        return {key: round(ms / self.seconds, 1) for key, ms in self.run_queue.items()}

    def add_cpu(self, used: dict[str, float]) -> None:
        for key, seconds in used.items():
            self.cpu[key] = self.cpu.get(key, 0.0) + seconds

    def cores(self) -> dict[str, float]:
        """The cores each took over the phase's windows, and the machine's
        other processes the rest."""
        cores = {key: round(used / self.seconds, 2) for key, used in self.cpu.items()}
        taken = cores["server"] + cores["live_clients"] + cores["replay_client"]
        cores["others"] = round(max(0.0, cores["machine"] - taken), 2)
        return cores


class _Usage:
    """CPU seconds taken from now on by the whole machine, the server and
    the live clients."""

    def __init__(self, server: Server, children: list[ClientProcess]) -> None:
        self.server, self.children = server, children
        self.machine = _stalls.MachineCpu()
        self.start = self._now()

    def _now(self) -> dict[str, float]:
        return {
            "server": self.server.cpu_seconds(),
            "live_clients": _live_client_cpu(self.children),
        }

    def used(self, replay_client: float) -> dict[str, float]:
        """Beside the replaying client's CPU seconds meanwhile (its own
        count once it has exited: its /proc entry is gone then)."""
        now = self._now()
        used = {key: now[key] - self.start[key] for key in now}
        used["machine"] = self.machine.busy_seconds()
        used["replay_client"] = replay_client
        return used


def burst_store(sizes: Sizes) -> dict[str, Any] | None:
    """The burst servers' ``[store]`` settings the run sets (None: all
    their defaults), each checked against the store's table of ranges
    (ConfigOutOfRange): main refuses a value the servers would refuse
    before the history they replay is written, not minutes into the run."""
    chosen = {
        "read_nice": sizes.read_nice,
        "background_nice": sizes.background_nice,
        "replay_rest_ratio": sizes.replay_rest_ratio,
        "read_ahead_beside_live": sizes.read_ahead_beside_live,
    }
    store = {key: value for key, value in chosen.items() if value is not None}
    for setting, value in store.items():
        check_range(setting, value, STORE_RANGES[setting])
    return store or None


def burst(scratch: Path, sizes: Sizes) -> dict[str, Any]:
    store = burst_store(sizes)
    data = scratch / "burst"
    streams = history.create_topics(data, {"history": BURST_PARTITIONS, "live": 1})
    made = history.write_history(data, streams["history"], sizes.history_mib * MiB, 32 * MiB)
    history.settle(data)
    results: dict[str, Any] = {"history_mib": made.bytes // MiB, "history_objects": made.objects}
    alone = solo_replay(scratch, data, sizes.burst_before_s + 1, store, sizes.replay_client_nice)
    rate = sizes.rate_mb / 4 * MiB / RECORD_BYTES
    results["live_rate_mb_s"] = sizes.rate_mb / 4
    watch = str(scratch / "loop-stalls") if sizes.watch_loop else None
    phases = {"before": _Phase(), "during": _Phase()}
    replays: list[dict[str, Any]] = []
    loads: list[int] = []
    with Server(scratch, data, store, watch_loop=watch) as server:
        children = tailing(server.address, "live", BURST_CONSUMERS, "burst")
        producer = LiveProducer(server.address, "live", rate)
        started = time.time()
        producer.start()
        # Rounds of the same two phases on the same live traffic: each
        # phase's p99 is taken over every round's window, so one stall (a
        # GC, the machine's other work) moves it by a round's share, not
        # by the whole of it (docs/benchmarks.md).
        for _ in range(sizes.burst_rounds):
            # The replaying client starts, connects and learns the
            # watermarks outside both windows: a client's start-up is a
            # burst of CPU of its own on the machine the live clients share.
            replayer = ClientProcess(
                "replay", server.address, "history", nice=sizes.replay_client_nice
            )
            replayer.wait_ready()
            time.sleep(max(BURST_SETTLE_S, started + WARM_UP_S - time.time()))
            queue, began = _stalls.RunQueue(server.process.pid), time.time()
            usage, idle = _Usage(server, children), replayer.cpu_seconds()
            time.sleep(sizes.burst_before_s)
            phases["before"].add(began, time.time(), queue.waited(time.time() - began))
            phases["before"].add_cpu(usage.used(replayer.cpu_seconds() - idle))
            gets = server.reads()[0]
            queue, began = _stalls.RunQueue(server.process.pid), time.time()
            usage = _Usage(server, children)
            replayer.go()
            during = replayer.result()
            seconds = time.time() - began
            waited = queue.waited(seconds)
            phases["during"].add_cpu(usage.used(during["cpu_seconds"]))
            loads.append(server.reads()[0] - gets)
            if not during["complete"]:
                raise RuntimeError("the replay beside live traffic did not reach the end")
            phases["during"].add(during["started"], during["ended"], waited)
            replays.append(during)
        time.sleep(1.0)
        producer.stop()
        consumers = [c for child in children for c in child.result()["consumers"]]
        log, ended, pid = server.process.log_path, time.time(), server.process.pid
    # Read once the server has stopped: its log is written out in full then.
    stalls = _stalls.read_stalls(log, started, ended - started)
    watched = _loop_stalls.read(watch, pid) if watch else []
    # The solo replay runs before and after, each on a fresh server, and the
    # faster counts: the machine's state (its page cache, its other load)
    # then favours neither side of the ratio.
    again = solo_replay(scratch, data, sizes.burst_before_s + 1, store, sizes.replay_client_nice)
    solo_rates = [r["bytes"] / MiB / r["seconds"] for r in (alone, again)]
    results["solo_replay_mb_s_runs"] = [round(r, 1) for r in solo_rates]
    # What the server spends on a replay, live traffic aside: the lower of
    # the two runs, the one the machine's other work disturbed less.
    results["solo_replay_server_us_per_mib"] = min(
        server_us_per_mib(r["server_cpu_seconds"], r["bytes"]) for r in (alone, again)
    )
    results["solo_replay_mb_s"] = round(max(solo_rates), 1)
    if solo_rates[1] > solo_rates[0]:
        alone = again
    failed = [c["error"] for c in consumers if c["error"]]
    if failed:
        raise RuntimeError(f"burst: {failed[0]}")
    replayed = sum(r["bytes"] for r in replays)
    replay_seconds = sum(r["seconds"] for r in replays)
    results["rounds"] = sizes.burst_rounds
    results["replay_mb_s"] = round(replayed / MiB / replay_seconds, 1)
    results["replay_mb_s_runs"] = [round(r["bytes"] / MiB / r["seconds"], 1) for r in replays]
    results["replay_vs_solo"] = round(results["replay_mb_s"] / results["solo_replay_mb_s"], 2)
    # Every round's replay reads the history from the store again, as many
    # GETs as the first round's on a fresh block cache: the cache is
    # smaller than the history, and a scan evicts its start.
    results["replay_gets_runs"] = loads
    results["solo_replay_gets_runs"] = [r["gets"] for r in (alone, again)]
    # The replaying client's cores beside live traffic and alone: a replay
    # paced by the server leaves the CPUs to live traffic on both sides.
    results["replay_client_cores"] = round(
        sum(r["cpu_seconds"] for r in replays) / replay_seconds, 2
    )
    results["solo_replay_client_cores"] = round(alone["cpu_seconds"] / alone["seconds"], 2)
    usable = _harness.cpus()["cpus_usable"] or 1
    cores = phases["during"].cores()
    results.update(
        _cores_during(
            cores, results["replay_client_cores"], phases["during"].run_queue_per_s(), usable
        )
    )
    results["replay_client_nice"] = sizes.replay_client_nice
    results["replay_timeline"] = replays[0]["timeline"]
    results["solo_replay_timeline"] = alone["timeline"]
    tail_slots = [clients.from_wire(c["slots"]) for c in consumers]
    for name, phase in phases.items():
        produced = _merged([producer.slots], phase.windows)
        tail = _merged(tail_slots, phase.windows)
        results[f"produce_p99_ms_{name}"] = clients.quantile(produced, 0.99)
        results[f"produce_p50_ms_{name}"] = clients.quantile(produced, 0.5)
        results[f"tail_p99_ms_{name}"] = clients.quantile(tail, 0.99)
        results[f"tail_p50_ms_{name}"] = clients.quantile(tail, 0.5)
        # Each round's own p99: how far one window's figure wanders.
        for what, slotted in (("produce", [producer.slots]), ("tail", tail_slots)):
            results[f"{what}_p99_ms_{name}_runs"] = [
                clients.quantile(clients.merge(slotted, s, e), 0.99) for s, e in phase.windows
            ]
        results[f"produced_{name}"] = sum(produced.values())
        results[f"records_{name}"] = sum(tail.values())
        results[f"seconds_{name}"] = round(phase.seconds, 2)
        # The cores the machine's other processes took: a phase that saw
        # more of them than the other is no like for like.
        results[f"other_cores_{name}"] = phase.cores()["others"]
        # How long the server's threads waited for a CPU (its event loop's
        # alone too), and how often its loop ran late: contention with the
        # machine told apart from the server's own work.
        results[f"server_run_queue_{name}"] = phase.run_queue_per_s()
        lags = [
            ms
            for s, e in phase.windows
            for ms in _stalls_in(stalls, "event loop", s - started, e - started)
        ]
        results[f"loop_lags_{name}"] = len(lags)
        results[f"loop_lag_max_ms_{name}"] = max(lags, default=0.0)
        # fsyncs of 20 ms or more: the disk's share (the history is read
        # from a directory on the same disk as the WAL).
        syncs = [
            ms
            for s, e in phase.windows
            for ms in _stalls_in(stalls, "WAL sync", s - started, e - started)
        ]
        results[f"wal_slow_syncs_{name}"] = len(syncs)
        results[f"wal_sync_max_ms_{name}"] = max(syncs, default=0.0)
        if watch:
            # The loop's stalls by their work (docs/design/0106), summed
            # over the rounds (the longest: the longest of any).
            for s, e in phase.windows:
                for key, value in _loop_stalls.counted(watched, s, e).items():
                    label = f"watched_{key}_{name}"
                    fold = max if key.endswith("_ms") else operator.add
                    results[label] = fold(results.get(label, 0), value)
        if sum(produced.values()) < MIN_WINDOW_RECORDS or sum(tail.values()) < MIN_WINDOW_RECORDS:
            raise RuntimeError(
                f"too few live records {name} the replay to give a p99 ({sum(produced.values())}"
                f" produced, {sum(tail.values())} consumed): more --burst-rounds, a longer"
                " history (--history-mib) or a higher --rate-mb"
            )
    for what in ("produce", "tail"):
        before = results[f"{what}_p99_ms_before"]
        results[f"{what}_p99_during_vs_before"] = round(
            results[f"{what}_p99_ms_during"] / before, 2
        )
    results["kept_up"] = all(c["records"] == producer.sent for c in consumers)
    return results


def _merged(
    slotted: list[clients.Slotted], windows: list[tuple[float, float]]
) -> clients.Histogram:
    """One histogram of the records produced within any of the windows."""
    total: clients.Histogram = Counter()
    for start, end in windows:
        total.update(clients.merge(slotted, start, end))
    return total


def _stalls_in(stalls: list[_stalls.Stall], what: str, start_s: float, end_s: float) -> list[float]:
    """The ms of the stalls of one kind that began within [start_s, end_s)."""
    return [s.ms for s in stalls if s.what.startswith(what) and start_s <= s.start_s < end_s]


def _live_client_cpu(children: list[ClientProcess]) -> float:
    """CPU seconds so far of the live clients: the tailing consumers'
    processes and this one (the live producer's thread)."""
    return _cpu_seconds(None) + sum(child.cpu_seconds() for child in children)


def _cores_during(
    cores: dict[str, float], replay_client: float, run_queue: dict[str, float], usable: int
) -> dict[str, Any]:
    """Who took the machine's cores while the replay ran, and what binds the
    live latency then: the cores the server wanted (ran and waited to run)
    against those the replaying client, the live clients and everyone else
    on the machine left it. ``clients`` when it wanted more than was left
    but would have fitted had the replaying client taken nothing: the
    client machine's CPU binds, which no code of the server's can change;
    ``server`` when it would not have fitted even then; ``none`` when it
    fitted. ``usable``: the CPUs the server may run on."""
    others = max(0.0, cores["machine"] - cores["server"] - cores["live_clients"] - replay_client)
    without_replay = usable - cores["live_clients"] - others
    left = without_replay - replay_client
    # What it ran (every thread's, those started meanwhile too: schedstat
    # sees only the threads alive at both ends) and what it waited to run.
    wanted = cores["server"] + run_queue["waited_ms_per_s"] / 1000
    if wanted <= left:
        binding = "none"
    elif wanted <= without_replay:
        binding = "clients"
    else:
        binding = "server"
    return {
        "server_cores_during": cores["server"],
        "live_client_cores_during": cores["live_clients"],
        "other_cores_during": round(others, 2),
        "cores_left_for_server_during": round(left, 2),
        "server_cores_wanted_during": round(wanted, 2),
        "binding_ceiling": binding,
    }


def solo_replay(
    scratch: Path, data: Path, settle_s: float, store: dict[str, Any] | None, nice: int = 0
) -> dict[str, Any]:
    """The replay reader alone, from a fresh server (cold block cache),
    started as long after the server as the replay beside live traffic, at
    the same priority as that one (``nice``)."""
    with Server(scratch, data, store) as server:
        time.sleep(settle_s)
        reader = ClientProcess("replay", server.address, "history", nice=nice)
        reader.wait_ready()
        cpu, gets = server.cpu_seconds(), server.reads()[0]
        reader.go()
        alone = reader.result()
        alone["gets"] = server.reads()[0] - gets
        # Every thread's: the read threads' GETs and checks, the loop's
        # answers (docs/design/0064 splits it by thread).
        alone["server_cpu_seconds"] = server.cpu_seconds() - cpu
    if not alone["complete"]:
        raise RuntimeError("the solo replay did not reach the end")
    return alone


def server_us_per_mib(cpu_seconds: float, replayed_bytes: int) -> float:
    """The server's CPU in microseconds per MiB replayed (clock ticks of
    10 ms: a replay of 400 MiB resolves 25 us per MiB)."""
    return round(cpu_seconds * 1e6 / max(replayed_bytes / MiB, 1e-9), 1)


def partitions(scratch: Path, sizes: Sizes) -> dict[str, Any]:
    total = sizes.partitions_mib * MiB
    records = total // RECORD_BYTES
    shapes: list[tuple[str, int, int]] = [(f"p{n}", 1, n) for n in sizes.partitions]
    shapes.append((f"t{sizes.topics}", sizes.topics, 1))
    results: dict[str, Any] = {"mib": sizes.partitions_mib}
    for name, topics, per_topic in shapes:
        with Server(scratch, scratch / f"partitions-{name}") as server:
            time.sleep(1.0)  # settled after start-up
            before = server.rss_bytes()
            names = [f"{name}-{i}" for i in range(topics)]
            create_topics(server.address, dict.fromkeys(names, per_topic))
            time.sleep(1.0)
            after = server.rss_bytes()
            cpu = server.cpu_seconds()
            produce = paced(server.address, names, per_topic, total, sizes.rate_mb)
            produce_cpu, cpu = server.cpu_seconds() - cpu, server.cpu_seconds()
            consume = read_all(server.address, names, per_topic, total)
            consume_cpu = server.cpu_seconds() - cpu
            results[name] = {
                "partitions": topics * per_topic,
                "rss_mib_idle": round(after / MiB, 1),
                "idle_kib_per_partition": round(
                    max(0, after - before) / 1024 / (topics * per_topic), 2
                ),
                "produce_mb_s": round(produce.mb_s, 2),
                "produce_p50_ms": produce.p50_ms,
                "produce_p99_ms": produce.p99_ms,
                "consume_mb_s": round(consume, 1),
                # The server's CPU (every thread) per record produced, and
                # per record read: what the rates cost, however busy the
                # machine was.
                "produce_cpu_us_per_record": round(produce_cpu / records * 1e6, 1),
                "consume_cpu_us_per_record": round(consume_cpu / records * 1e6, 1),
                "rss_mib_after": round(server.rss_bytes() / MiB, 1),
            }
    base = results[f"p{sizes.partitions[0]}"]
    for name, _, _ in shapes[1:]:
        label = name[1:] if name.startswith("p") else f"{name[1:]}_topics"
        for what in ("produce", "consume"):
            ratio = results[name][f"{what}_mb_s"] / base[f"{what}_mb_s"]
            results[f"{what}_{label}_vs_1"] = round(ratio, 2)
            cpu = f"{what}_cpu_us_per_record"
            results[f"{what}_cpu_{label}_vs_1"] = round(results[name][cpu] / base[cpu], 2)
    largest = results[f"p{max(sizes.partitions)}"]
    results["idle_kib_per_partition"] = largest["idle_kib_per_partition"]
    results["produce_curve"] = [
        [n, results[f"p{n}"]["produce_mb_s"]] for n in sorted(sizes.partitions)
    ]
    results["consume_curve"] = [
        [n, results[f"p{n}"]["consume_mb_s"]] for n in sorted(sizes.partitions)
    ]
    return results


def history_scenario(scratch: Path, sizes: Sizes) -> dict[str, Any]:
    results: dict[str, Any] = {"object_bytes": sizes.history_object_bytes}
    levels = []
    for percent in sizes.history_levels:
        data = scratch / f"history-{percent}"
        streams = history.create_topics(data, {"history": 1, "live": 1})
        made = history.write_history(
            data,
            streams["history"],
            sizes.history_mib * MiB * percent // 100,
            sizes.history_object_bytes,
        )
        first_open_s = history.settle(data)
        with Server(scratch, data) as server:
            ready_s = server.ready_s
            rss = server.rss_bytes()
            produce = paced(
                server.address, ["live"], 1, sizes.history_produce_mib * MiB, sizes.rate_mb
            )
        level = {
            "history_mib": round(made.bytes / MiB, 1),
            "objects": made.objects,
            "manifest_kib": round(made.manifest_bytes / 1024, 1),
            "commit_ms": made.commit_ms,
            "first_open_s": round(first_open_s, 3),
            "start_s": round(ready_s, 3),
            "rss_mib": round(rss / MiB, 1),
            "produce_mb_s": round(produce.mb_s, 2),
            "produce_p99_ms": produce.p99_ms,
        }
        results[f"h{percent}"] = level
        levels.append(level)
        shutil.rmtree(data, ignore_errors=True)  # the next level's disk
    first, last = levels[0], levels[-1]
    results["produce_largest_vs_smallest"] = round(last["produce_mb_s"] / first["produce_mb_s"], 2)
    results["start_largest_vs_smallest"] = round(last["start_s"] / first["start_s"], 2)
    results["commit_largest_vs_smallest"] = round(last["commit_ms"] / first["commit_ms"], 2)
    results["commit_ms_curve"] = [[lv["objects"], lv["commit_ms"]] for lv in levels]
    results["start_s_curve"] = [[lv["history_mib"], lv["start_s"]] for lv in levels]
    return results


RUNNERS: dict[str, Callable[[Path, Sizes], dict[str, Any]]] = {
    "fanout": fanout,
    "burst": burst,
    "partitions": partitions,
    "history": history_scenario,
}


def run(scratch: Path, sizes: Sizes, only: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {"record_bytes": RECORD_BYTES, **_harness.cpus()}
    for name in only:
        print(f"{name}: running", file=sys.stderr, flush=True)
        started = time.perf_counter()
        (scratch / name).mkdir()
        results[name] = RUNNERS[name](scratch / name, sizes)
        results[name]["seconds"] = round(time.perf_counter() - started, 1)
    results["targets"] = {
        label: _meets(results[scenario][key], op, bound)
        for label, (scenario, key, op, bound) in TARGETS.items()
        if scenario in results and key in results[scenario]
    }
    return results


def _meets(value: float, op: str, bound: float) -> bool:
    return {"<=": value <= bound, ">=": value >= bound, "<": value < bound}[op]


# -- the table -------------------------------------------------------------------------


def print_table(results: dict[str, Any]) -> None:
    print(f"{results['cpus_usable']} CPUs usable; MB = MiB of record values\n")
    if "fanout" in results:
        f = results["fanout"]
        print(f"fan-out at {f['rate_mb_s']:g} MB/s, one partition")
        print(
            f"{'N':>4} {'p50 ms':>8} {'p99 ms':>8} {'MB/s min':>9} {'kept up':>8}"
            f" {'object reads':>12} {'GETs':>5} {'cores: server':>13} {'clients':>7}"
            f" {'loop waited ms/s':>16}"
        )
        for n in f["consumers"]:
            r = f[f"n{n}"]
            print(
                f"{n:>4} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['consumer_mb_s_min']:>9.2f}"
                f" {r['kept_up']!s:>8} {r['object_reads']:>12} {r['gets']:>5}"
                f" {r['server_cores']:>13.2f} {r['consumer_cores']:>7.2f}"
                f" {r.get('loop_waited_ms_per_s', 0):>16.1f}"
            )
        print("the same on librdkafka's mock cluster (a broker that costs nothing)")
        print(
            f"{'N':>4} {'p50 ms':>8} {'p99 ms':>8} {'kept up':>8}"
            f" {'client cores':>12} {'p99_vs_mock':>11}"
        )
        for n in f["consumers"]:
            m = f[f"mock_n{n}"]
            print(
                f"{n:>4} {m['p50_ms']:>8.2f} {m['p99_ms']:>8.2f} {m['kept_up']!s:>8}"
                f" {m['consumer_cores']:>12.2f} {f[f'p99_vs_mock_n{n}']:>11.2f}"
            )
        print(
            f"p99_vs_n1 {f['p99_vs_n1']:.2f} (the mock's own {f['mock_p99_vs_n1']:.2f});"
            f" floor {f['p99_vs_n1_floor']:.2f}, binding: {f['binding_ceiling']}\n"
        )
    if "burst" in results:
        b = results["burst"]
        print(
            f"replay burst: {b['history_mib']} MiB history, live {b['live_rate_mb_s']:g} MB/s,"
            f" {b['rounds']} rounds ({b['produced_before']} live records before,"
            f" {b['produced_during']} during)"
        )
        for what in ("produce", "tail"):
            runs = " / ".join(
                f"{a:.1f}-{d:.1f}"
                for a, d in zip(
                    b[f"{what}_p99_ms_before_runs"], b[f"{what}_p99_ms_during_runs"], strict=True
                )
            )
            print(
                f"  {what} p99 before {b[f'{what}_p99_ms_before']:.2f} ms, during "
                f"{b[f'{what}_p99_ms_during']:.2f} ms ({b[f'{what}_p99_during_vs_before']:.2f}x);"
                f" each round's {runs} ms"
            )
        print(
            f"  replay {b['replay_mb_s']:.1f} MB/s beside live traffic, {b['solo_replay_mb_s']:.1f}"
            f" alone ({b['replay_vs_solo']:.2f}x); the replaying client used"
            f" {b['replay_client_cores']:.2f} cores beside live traffic,"
            f" {b['solo_replay_client_cores']:.2f} alone; the server"
            f" {b['solo_replay_server_us_per_mib']:.0f} us of CPU per MiB replayed alone"
        )
        print(
            f"  cores during the replay: server {b['server_cores_during']:.2f} (wanted"
            f" {b['server_cores_wanted_during']:.2f}, left to it"
            f" {b['cores_left_for_server_during']:.2f}), replaying client"
            f" {b['replay_client_cores']:.2f} at nice +{b['replay_client_nice']},"
            f" live clients {b['live_client_cores_during']:.2f},"
            f" others {b['other_cores_during']:.2f}; binding: {b['binding_ceiling']}"
        )
        for phase in ("before", "during"):
            q = b[f"server_run_queue_{phase}"]
            print(
                f"  {phase}: server threads waited for a CPU {q['waited_ms_per_s']:.0f} ms/s"
                f" (event loop {q['main_waited_ms_per_s']:.0f}), ran {q['ran_ms_per_s']:.0f} ms/s"
                f" (event loop user {q['main_user_ms_per_s']:.0f},"
                f" system {q['main_system_ms_per_s']:.0f});"
                f" loop lags of 10 ms or more {b[f'loop_lags_{phase}']},"
                f" longest {b[f'loop_lag_max_ms_{phase}']:.1f} ms"
            )
        print()
    if "partitions" in results:
        p = results["partitions"]
        print(f"partitions: {p['mib']} MiB produced at the live rate, then read flat out")
        print(
            f"{'shape':>8} {'produce':>8} {'consume':>8} {'RSS MiB':>8} {'KiB/part':>9}"
            f" {'us/rec in':>9} {'us/rec out':>10}"
        )
        for key, value in p.items():
            if isinstance(value, dict):
                print(
                    f"{key:>8} {value['produce_mb_s']:>8.1f} {value['consume_mb_s']:>8.1f}"
                    f" {value['rss_mib_idle']:>8.1f} {value['idle_kib_per_partition']:>9.2f}"
                    f" {value['produce_cpu_us_per_record']:>9.1f}"
                    f" {value['consume_cpu_us_per_record']:>10.1f}"
                )
        print()
    if "history" in results:
        h = results["history"]
        print("history")
        print(
            f"{'MiB':>8} {'objects':>8} {'manifest KiB':>12} {'commit ms':>9} {'start s':>8}"
            f" {'RSS MiB':>8} {'produce':>8}"
        )
        for lv in h.values():
            if isinstance(lv, dict):
                print(
                    f"{lv['history_mib']:>8.1f} {lv['objects']:>8} {lv['manifest_kib']:>12.1f}"
                    f" {lv['commit_ms']:>9.2f} {lv['start_s']:>8.2f} {lv['rss_mib']:>8.1f}"
                    f" {lv['produce_mb_s']:>8.1f}"
                )
        print()
    _harness.print_targets(results["targets"])


def main() -> None:
    parser = _harness.parser(__doc__, quick="every size scaled down (about two minutes)")
    parser.add_argument("--only", action="append", choices=SCENARIOS, help="repeatable")
    parser.add_argument("--rate-mb", type=float, default=None, help="live producer MB/s")
    parser.add_argument("--history-mib", type=int, default=None, help="replay history")
    parser.add_argument(
        "--produce-mib", type=int, default=None, help="produced per partitions/history run"
    )
    parser.add_argument("--fanout-seconds", type=float, default=None, help="each fan-out run")
    parser.add_argument(
        "--read-nice", type=int, default=None, help="burst: the servers' [store] read_nice"
    )
    parser.add_argument(
        "--background-nice",
        type=int,
        default=None,
        help="burst: the servers' [store] background_nice",
    )
    parser.add_argument(
        "--replay-rest-ratio",
        type=float,
        default=None,
        help="burst: the servers' [store] replay_rest_ratio",
    )
    parser.add_argument(
        "--read-ahead-beside-live",
        type=int,
        default=None,
        help="burst: the servers' [store] read_ahead_beside_live",
    )
    parser.add_argument(
        "--replay-client-nice",
        type=int,
        default=0,
        help="burst: start the replaying client this many nice values lower",
    )
    parser.add_argument(
        "--watch-loop",
        action="store_true",
        help="burst: count the live server's event-loop stalls by their work (bench/loop_watch)",
    )
    parser.add_argument(
        "--burst-rounds", type=int, default=None, help="burst: rounds of before and during"
    )
    parser.add_argument("--data-dir", default=None, help="scratch directory (default: temp)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.rate_mb is not None:
        sizes = dataclass_replace(sizes, rate_mb=args.rate_mb)
    if args.history_mib is not None:
        sizes = dataclass_replace(sizes, history_mib=args.history_mib)
    if args.produce_mib is not None:
        sizes = dataclass_replace(
            sizes, partitions_mib=args.produce_mib, history_produce_mib=args.produce_mib
        )
    if args.read_nice is not None:
        sizes = dataclass_replace(sizes, read_nice=args.read_nice)
    if args.background_nice is not None:
        sizes = dataclass_replace(sizes, background_nice=args.background_nice)
    if args.replay_rest_ratio is not None:
        sizes = dataclass_replace(sizes, replay_rest_ratio=args.replay_rest_ratio)
    if args.read_ahead_beside_live is not None:
        sizes = dataclass_replace(sizes, read_ahead_beside_live=args.read_ahead_beside_live)
    if args.replay_client_nice:
        sizes = dataclass_replace(sizes, replay_client_nice=args.replay_client_nice)
    if args.fanout_seconds is not None:
        sizes = dataclass_replace(sizes, fanout_seconds=args.fanout_seconds)
    if args.burst_rounds is not None:
        sizes = dataclass_replace(sizes, burst_rounds=max(1, args.burst_rounds))
    if args.watch_loop:
        sizes = dataclass_replace(sizes, watch_loop=True)
    try:
        burst_store(sizes)
    except ConfigOutOfRange as error:
        parser.error(str(error))
    with _harness.scratch(args.data_dir, "tidelog-scale-") as scratch:
        results = run(scratch, sizes, args.only or list(SCENARIOS))
    _harness.report(results, args.json, print_table)


def dataclass_replace(sizes: Sizes, **changes: Any) -> Sizes:
    import dataclasses

    return dataclasses.replace(sizes, **changes)


if __name__ == "__main__":
    main()
