"""Instructions the server spends per produced MiB, by thread and by
function: ``tidelog serve`` under callgrind while librdkafka produces at
kafka_bench's shape.

    python bench/produce_instructions.py [--warm-mb 8] [--mb 32] [--spans 2]
                                         [--top 25] [--json] [--quick]
                                         [--keep DIR]

The server runs under ``valgrind --tool=callgrind --separate-threads=yes``
(a file per thread), its instrumentation off until the server listens
(``--instr-atstart=no``, then ``callgrind_control -i on``): start-up is not
counted, and runs several times faster uninstrumented. A producer configured as kafka_bench's
(``PRODUCER_CONFIG``: acks=all, linger.ms 5, batch.size 1,000,000, no
compression) sends 1 KiB records of random bytes to a one-partition topic:
``--warm-mb`` first, then, per span, the counters are zeroed
(``callgrind_control -z``), ``--mb`` are produced and delivered, and the
counters dumped (``-d``). The figure is instructions (Ir) per MiB
delivered, per thread and for the whole process; each thread is named by
a C function it alone calls (the event loop's ``epoll_pwait``, the WAL
writer's ``pwritev2``, the WAL syncer's ``fdatasync``, the uploader's
BLAKE3 chain, the object store's ``pwrite``): threads are not named to
the kernel, and valgrind numbers them in the order they started.
``produce_requests`` counts the loop's batch validations (one per
request at this shape) and ``loop_ir_per_request`` divides by it.
``--top`` functions per thread are listed with their exclusive counts per
MiB (Python 3.11's frames are one C function,
``_PyEval_EvalFrameDefault``: Python's share shows there and in the
object and call functions under it).

Instructions, unlike CPU time, do not move with the machine's load:
compare revisions by running this on each (``bench/compare.py`` runs it in
turns). The WAL's and uploader's counts per MiB move with how appends
fall into groups and objects under valgrind's slowness; the loop's is the
steadiest. Valgrind hides AVX-512 from the program: code that takes
another path on a CPU with it (BLAKE3's, in the uploader) is counted on
its fallback here. What the kernel does (socket copies, page faults, page
cache writes) is not counted at all.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import _callgrind_costs
import _harness
from _scale_parts import create_topics, free_port
from confluent_kafka import KafkaError, Message, Producer
from kafka_bench import HOST, MIB, PRODUCER_CONFIG, RECORD_BYTES

TOPIC = "instructions"
THREAD_MARKS = (
    # (name, a C function only that thread calls), first match wins.
    ("loop", "epoll_pwait"),
    ("wal_writer", "pwritev2"),
    ("wal_sync", "fdatasync"),
    ("uploader", "blake3::"),
    ("object_writes", "pwrite"),
)


def _ready(log: Path, address: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 600
    while f"listening on {address}" not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not listen:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def _produce(address: str, mib: int) -> None:
    producer = Producer({"bootstrap.servers": address, **PRODUCER_CONFIG})
    payload = random.randbytes(RECORD_BYTES)
    failures: list[KafkaError] = []

    def delivered(err: KafkaError | None, _: Message) -> None:
        if err is not None:
            failures.append(err)

    for _ in range(mib * MIB // RECORD_BYTES):
        while True:
            try:
                producer.produce(TOPIC, payload, callback=delivered)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    if producer.flush(600) != 0 or failures:
        raise RuntimeError(f"produce failed: {failures[:3]}")


def _thread_name(path: Path) -> str:
    for name, mark in THREAD_MARKS:
        if _callgrind_costs.calls(path, mark):
            return name
    return "other"


def run(warm_mb: int, mb: int, spans: int, top: int, scratch: Path) -> dict[str, Any]:
    port = free_port()
    address = f"{HOST}:{port}"
    data = scratch / "data"
    dumps = scratch / "callgrind"
    dumps.mkdir()
    log = scratch / "server.log"
    repo = Path(__file__).resolve().parents[1]
    command = [
        "valgrind",
        "--tool=callgrind",
        "--separate-threads=yes",
        # Start-up (Python's imports, the engine's open) runs uninstrumented,
        # several times faster; instrumentation is on before the warm-up, so
        # the spans count what they counted with it on from the start.
        "--instr-atstart=no",
        f"--callgrind-out-file={dumps}/cg.out.%p",
        sys.executable,
        "-m",
        "engine",
        "serve",
        "--listen",
        address,
        "--data-dir",
        str(data),
    ]
    with open(log, "wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=repo)
    try:
        _ready(log, address, server)
        subprocess.run(
            ["callgrind_control", "-i", "on", str(server.pid)], check=True, capture_output=True
        )
        create_topics(address, {TOPIC: 1})
        _produce(address, warm_mb)
        spans_out: list[dict[str, Any]] = []
        for span in range(spans):
            subprocess.run(
                ["callgrind_control", "-z", str(server.pid)], check=True, capture_output=True
            )
            # callgrind_control returns once the zero is done: vgdb waits for
            # the answer ("OK.") of valgrind's gdbserver, which runs the
            # command in the server (forcing it in with ptrace past
            # --max-invoke-ms when every thread is blocked), so the zero lands
            # before the produce does, as -d's dump is written before it returns.
            _produce(address, mb)
            subprocess.run(
                ["callgrind_control", "-d", str(server.pid)], check=True, capture_output=True
            )
            spans_out.append(_span(dumps, span + 1, mb, top))
    finally:
        _harness.stop_server(server, log, 120)
    return {"warm_mb": warm_mb, "mb": mb, "spans": spans_out, **_harness.cpus()}


def _span(dumps: Path, number: int, mb: int, top: int) -> dict[str, Any]:
    # callgrind_control -d writes a file per thread, cg.out.PID.N-TT (N the dump).
    by_thread: dict[str, int] = defaultdict(int)
    functions: dict[str, dict[str, int]] = {}
    requests = 0
    for path in sorted(dumps.glob(f"cg.out.*.{number}-*")):
        summary, exclusive = _callgrind_costs.costs(path)
        if summary == 0:
            continue
        name = _thread_name(path)
        key = name if name not in by_thread else f"{name}_{path.name.rsplit('-', 1)[1]}"
        by_thread[key] += summary
        ranked = sorted(exclusive.items(), key=lambda item: -item[1])[:top]
        functions[key] = {fn: count // mb for fn, count in ranked}
        if name == "loop":
            requests += _callgrind_costs.call_count(path, "py_validate_batches")
    loop = by_thread.get("loop", 0)
    return {
        "ir_per_mib": sum(by_thread.values()) // mb,
        "loop_ir_per_mib": loop // mb,
        "produce_requests": requests,
        "loop_ir_per_request": loop // requests if requests else None,
        "threads_ir_per_mib": {thread: count // mb for thread, count in by_thread.items()},
        "functions_ir_per_mib": functions,
    }


def _print(results: dict[str, Any]) -> None:
    for number, span in enumerate(results["spans"], 1):
        print(
            f"span {number}: {span['ir_per_mib'] / 1e6:.3f} M Ir per MiB, the loop's"
            f" {span['loop_ir_per_mib'] / 1e6:.3f} M; {span['produce_requests']} requests,"
            f" {span['loop_ir_per_request']} loop Ir each"
        )
        for thread, count in sorted(span["threads_ir_per_mib"].items(), key=lambda kv: -kv[1]):
            print(f"  {thread:16} {count / 1e6:8.2f} M")
        for thread, rows in span["functions_ir_per_mib"].items():
            print(f"  {thread}:")
            for fn, count in rows.items():
                print(f"    {count / 1e3:10.1f} k  {fn}")


def main() -> None:
    parser = _harness.parser(__doc__, quick="8 MiB a span, one span")
    parser.add_argument("--warm-mb", type=int, default=8)
    parser.add_argument("--mb", type=int, default=32)
    parser.add_argument("--spans", type=int, default=2)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--keep", help="keep the callgrind dumps in this directory")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed")
    mb, spans = (8, 1) if args.quick else (args.mb, args.spans)
    with _harness.scratch(None, "produce-instructions-") as scratch:
        results = run(args.warm_mb, mb, spans, args.top, scratch)
        if args.keep:
            shutil.copytree(scratch / "callgrind", args.keep, dirs_exist_ok=True)
    _harness.report(results, args.json, _print)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
