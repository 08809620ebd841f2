"""Replay from object storage, beside the store's own raw read speed.

Writes ``--mib`` (1 GiB by default) across 16 streams through StreamStore
(16 KiB batches, WAL fsync, uploads running: at least eight in each of the
four rounds of appends, objects of 32 MiB or less), then opens a fresh StreamStore
on the same bucket (cold block cache, empty data directory) and reads every
stream back. The same objects are then read with plain sequential GETs
(boto3) or file reads: the store's raw speed. Backends: a local directory,
and moto's S3 server in its own process on loopback. The bare WAL's append
rate, measured in rounds alternating with the store's own (same appenders,
same batches), is the baseline for the store's appends
(``append_vs_wal``, its target unchanged).

The bare WAL is not what the store's appends can reach on this machine,
so each backend also reports the honest ceiling beside it
(``ceiling_mb_s``, ``ceiling`` naming the figure it came from, and
``append_vs_ceiling``), as kafka_bench.py does for its produce:

- local directory: the objects land on the same disk as the WAL, so every
  byte is written twice, each time with an fsync. The same rounds time a
  bare writer of the same bytes as objects (files of the store's upload
  size, written a MiB at a time and fsynced, as the store writes them;
  ``objects_mb_s``): the disk's rate for large writes, its best. Writing
  every byte twice, the appends can reach half of it at most,
  ``write_twice_limit_mb_s`` (kafka_bench.py's produce_vs_write_twice_limit
  halves its disk figure alike), and never more than the bare WAL: the
  ceiling is the lower of the two. Not the sum of the WAL's time and the
  objects': the WAL waits on fsyncs more than on the disk's bandwidth,
  and the store's object writes overlap those waits (measured, appends
  went faster than the sum allows);
- S3 (moto, objects in its memory): the disk writes every byte once, so
  the bare WAL's rate holds, unless the cores run out first. moto's server
  is Python on the same cores (a real object store is not), and every MiB
  the store uploads costs it ``server_cpu_ms_per_mib``. With the bare
  WAL's own CPU per MiB (``wal_cpu_ms_per_mib``) the usable cores do at
  most ``cpu_limit_mb_s`` = cores / (both per MiB). The ceiling is the
  lower of ``wal_mb_s`` and ``cpu_limit_mb_s``.

``append_vs_ceiling`` (top level) is the lower of the two backends';
``binding_ceiling_file`` / ``_s3`` say which figure binds.

    python bench/replay_bench.py [--mib 1024] [--quick] [--json]
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _harness

MiB = 1024 * 1024
STREAMS = 16
BATCH = 16 * 1024
APPENDERS = 64
ROUNDS = 4
UPLOADS_PER_ROUND = 8
BUCKET = "tidelog-bench"
TIMELINE_POINTS = 60
"""Samples of a replay's progress kept in the JSON (a few KB at any size)."""


def main() -> None:
    parser = _harness.parser(__doc__, quick="128 MiB instead")
    parser.add_argument("--mib", type=int, default=1024, help="data to write per backend")
    parser.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args()
    total = (128 if args.quick else args.mib) * MiB
    with _harness.scratch(args.dir, "tidelog-replay-") as scratch:
        results = run(scratch, total)
    _harness.report(results, args.json, print_table)


def run(scratch: Path, total: int) -> dict[str, Any]:
    import boto3
    import botocore.config

    from s3stream.store import LocalStore, S3Store

    results: dict[str, Any] = {"mib": total // MiB, "streams": STREAMS, "batch_bytes": BATCH}
    bucket_dir = scratch / "bucket"

    def read_file(key: str) -> int:
        return len((bucket_dir / key).read_bytes())

    file_figures = backend_run(
        scratch / "file", lambda: LocalStore(str(bucket_dir)), read_file, total, local_objects=True
    )
    results.update({f"{k}_file": v for k, v in file_figures.items()})
    with moto_server() as server:
        endpoint = server.endpoint

        def make_s3() -> S3Store:
            return S3Store(
                BUCKET,
                "bench",
                endpoint_url=endpoint,
                region="us-east-1",
                access_key_id="bench",
                secret_access_key="bench",
            )

        make_s3().create_bucket_if_missing()
        plain = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            config=botocore.config.Config(s3={"addressing_style": "path"}),
        )

        def read_s3(key: str) -> int:
            return len(plain.get_object(Bucket=BUCKET, Key=f"bench/{key}")["Body"].read())

        s3_figures = backend_run(scratch / "s3", make_s3, read_s3, total, server.process.pid)
    results.update({f"{k}_s3": v for k, v in s3_figures.items()})
    # The headline figures the targets speak of:
    results["replay_vs_raw_s3"] = round(results["replay_mb_s_s3"] / results["raw_get_mb_s_s3"], 3)
    results["replay_vs_store_client_s3"] = round(
        results["replay_mb_s_s3"] / results["raw_store_get_mb_s_s3"], 3
    )
    results["append_mb_s"] = results["append_mb_s_s3"]
    results["upload_mb_s"] = results["upload_mb_s_s3"]
    results["wal_mb_s"] = results["wal_mb_s_s3"]
    results["append_vs_wal"] = min(results["append_vs_wal_file"], results["append_vs_wal_s3"])
    results["append_vs_ceiling"] = min(
        results["append_vs_ceiling_file"], results["append_vs_ceiling_s3"]
    )
    results["binding_ceiling_file"] = results["ceiling_file"]
    results["binding_ceiling_s3"] = results["ceiling_s3"]
    results["targets"] = {
        "replay_vs_raw_s3 >= 0.7": results["replay_vs_raw_s3"] >= 0.7,
        "append_vs_wal >= 0.8": results["append_vs_wal"] >= 0.8,
    }
    return results


def backend_run(
    scratch: Path,
    make_store: Callable[[], Any],
    plain_read: Callable[[str], int],
    total: int,
    server_pid: int | None = None,
    local_objects: bool = False,
) -> dict[str, Any]:
    """``local_objects``: the store writes its objects to the WAL's disk
    (the write-twice ceiling is measured); ``server_pid``: the object
    store's server runs on these cores (its CPU per MiB is measured)."""
    from s3stream import StreamStore, StreamStoreConfig

    # Compaction runs when the benchmark says, so each phase is timed alone.
    # Uploads run beside the appends in every round: at least UPLOADS_PER_ROUND
    # of them (a smaller run, --quick's, uploads smaller objects, as the
    # default 32 MiB would go up only at each round's end).
    upload_bytes = min(StreamStoreConfig().upload_bytes, total // ROUNDS // UPLOADS_PER_ROUND)
    config = StreamStoreConfig(compaction_interval_s=3600, upload_bytes=upload_bytes)
    # The compacting reader treats every stream-set object as old enough to
    # split, as background compaction does after force_split_after_s.
    compacting = dataclasses.replace(config, force_split_after_s=0)
    writer = StreamStore.open(scratch / "writer", make_store(), config)
    streams = [writer.create_stream() for _ in range(STREAMS)]
    for stream in streams:
        writer.open_stream(stream, 1)
    # The disk's speed drifts over a run on a shared machine, so the bare
    # WAL's rate is measured in rounds alternating with the store's: each
    # round, the same amount through a bare WAL, then through the store
    # (its uploads running meanwhile). Each round ends with a flush, so the
    # next bare-WAL round runs alone.
    # CPU time is counted too: where the object store's server runs on the
    # same cores (moto here), what it takes shows in the store's appends.
    round_bytes = total // ROUNDS
    wal_s = objects_s = append_s = upload_s = wal_cpu = append_cpu = server_cpu = 0.0
    uploads_server_cpu = 0.0
    bare = BareWal(scratch / "bare-wal")
    objects = BareObjects(scratch / "bare-objects", upload_bytes)
    for _ in range(ROUNDS):
        cpu = _own_cpu_seconds()
        wal_s += bare.seconds(round_bytes)
        wal_cpu += _own_cpu_seconds() - cpu
        if local_objects:
            objects_s += objects.seconds(round_bytes)
        cpu, server = _own_cpu_seconds(), _cpu_seconds(server_pid)
        started = time.perf_counter()
        asyncio.run(_append_all(writer, streams, round_bytes))
        appended = time.perf_counter()
        append_cpu += _own_cpu_seconds() - cpu
        server_cpu += _cpu_seconds(server_pid) - server
        writer.flush()
        # Every byte of the round is uploaded by now: the server's CPU for
        # the whole of it, the uploads finished after the appends included.
        uploads_server_cpu += _cpu_seconds(server_pid) - server
        append_s += appended - started
        upload_s += time.perf_counter() - started
    bare.close()
    objects.close()
    writer.close()
    figures: dict[str, Any] = {
        "wal_mb_s": round(total / MiB / wal_s, 1),
        "append_mb_s": round(total / MiB / append_s, 1),
        "upload_mb_s": round(total / MiB / upload_s, 1),
        "append_vs_wal": round(wal_s / append_s, 3),
        "wal_cores": round(wal_cpu / wal_s, 2),
        "append_cores": round(append_cpu / append_s, 2),
    }
    if server_pid is not None:
        figures["append_server_cores"] = round(server_cpu / append_s, 2)
    figures.update(_ceiling(figures, total, objects_s, wal_cpu, uploads_server_cpu))

    # A cold reader straight after the upload: each stream is a slice of
    # every stream-set object.
    reader = StreamStore.open(scratch / "reader-1", make_store(), compacting)
    figures["replay_uncompacted_mb_s"], figures["replay_uncompacted_timeline"] = _replay(
        reader, streams, total
    )
    # Compaction moves each stream into stream objects of its own (as it
    # would in the background); time it, then replay cold once more.
    started = time.perf_counter()
    while True:
        before = set(reader.manifest.state.objects)
        reader.compact()
        if set(reader.manifest.state.objects) == before:
            break
    figures["compaction_mb_s"] = round(total / MiB / (time.perf_counter() - started), 1)
    reader.close()
    reader = StreamStore.open(scratch / "reader-2", make_store(), config)
    figures["replay_mb_s"], figures["replay_timeline"] = _replay(reader, streams, total)
    keys = [meta.key for meta in reader.manifest.state.objects.values()]
    reader.close()
    # The raw speed: the same objects, read whole one after another, by a
    # plain client (file reads, or a boto3 client as it comes) and through
    # the store's own client (no second checksum pass; see s3.py).
    figures["raw_get_mb_s"] = _read_rate(keys, plain_read)
    store = make_store()
    figures["raw_store_get_mb_s"] = _read_rate(keys, lambda key: len(store.get(key)))
    store.close()
    return figures


def _ceiling(
    figures: dict[str, Any],
    total: int,
    objects_s: float,
    wal_cpu: float,
    server_cpu: float,
) -> dict[str, Any]:
    """The honest ceiling of the store's appends on this machine (see the
    module's docstring): the bare WAL, or lower, the disk writing every
    byte twice when the objects share it (objects_s > 0), or the cores the
    object store's server leaves (server_cpu > 0)."""
    mib = total / MiB
    limits: dict[str, float] = {}
    out: dict[str, Any] = {}
    limits["wal_mb_s"] = figures["wal_mb_s"]
    if objects_s > 0:
        out["objects_mb_s"] = round(mib / objects_s, 1)
        limits["write_twice_limit_mb_s"] = round(mib / objects_s / 2, 1)
    elif server_cpu > 0:
        cores = _harness.cpus()["cpus_usable"] or os.cpu_count() or 1
        out["wal_cpu_ms_per_mib"] = round(wal_cpu / mib * 1000, 3)
        out["server_cpu_ms_per_mib"] = round(server_cpu / mib * 1000, 3)
        limits["cpu_limit_mb_s"] = round(cores * mib / (wal_cpu + server_cpu), 1)
    out.update({key: value for key, value in limits.items() if key != "wal_mb_s"})
    binding = min(limits, key=lambda key: limits[key])
    out["ceiling"] = binding.removesuffix("_mb_s")
    out["ceiling_mb_s"] = limits[binding]
    out["append_vs_ceiling"] = round(figures["append_mb_s"] / limits[binding], 3)
    return out


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _cpu_seconds(pid: int | None) -> float:
    """The CPU time another process has used so far (Linux; 0 elsewhere)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _read_rate(keys: list[str], read: Callable[[str], int]) -> float:
    started = time.perf_counter()
    total = sum(read(key) for key in keys)
    return round(total / MiB / (time.perf_counter() - started), 1)


def _replay(reader: Any, streams: list[int], total: int) -> tuple[float, list[list[float]]]:
    """Reads every stream from its start, one after another, 1 MiB per
    fetch, as a consumer catching up on one partition at a time would;
    returns MB/s, and the MiB read so far at about TIMELINE_POINTS moments
    ([seconds, MiB]): the rate over time that bench/report.py plots."""
    step = max(1, total // TIMELINE_POINTS)
    timeline: list[list[float]] = [[0.0, 0.0]]
    started = time.perf_counter()
    read = 0
    next_sample = step
    for stream in streams:
        offset = 0
        end = reader.end_offset(stream)
        while offset < end:
            result = reader.fetch(stream, offset, MiB)
            read += sum(len(b.payload) for b in result.batches)
            offset = result.next_offset
            if read >= next_sample:
                timeline.append([round(time.perf_counter() - started, 4), round(read / MiB, 2)])
                next_sample = read + step
    elapsed = time.perf_counter() - started
    assert read == total, f"read back {read} bytes of {total}"
    if timeline[-1][1] != round(read / MiB, 2):
        timeline.append([round(elapsed, 4), round(read / MiB, 2)])
    return round(read / MiB / elapsed, 1), timeline


async def _append_all(store: Any, streams: list[int], total: int) -> None:
    payload = os.urandom(BATCH)
    per_task = total // BATCH // APPENDERS

    async def appender(task: int) -> None:
        for i in range(per_task):
            stream = streams[(task + i) % len(streams)]
            base = store.next_offset(stream)
            await store.append_async(stream, base, base + 9, payload)

    await asyncio.gather(*(appender(t) for t in range(APPENDERS)))


class BareWal:
    """The same appenders and batches on a WriteAheadLog alone, kept open
    across rounds and trimmed after each, as the store's own WAL is after
    its uploads (so both reuse their segment files alike)."""

    def __init__(self, directory: Path) -> None:
        from wal import WriteAheadLog

        self.directory = directory
        self.log = WriteAheadLog(directory)
        self.payload = os.urandom(BATCH)

    def seconds(self, total: int) -> float:
        """How long appending ``total`` bytes takes."""
        from wal import Position

        per_task = total // BATCH // APPENDERS

        async def appender() -> Position:
            position = Position(0, 0)
            for _ in range(per_task):
                position = await self.log.append_async(self.payload, stream_id=1)
            return position

        async def run_all() -> list[Position]:
            return await asyncio.gather(*(appender() for _ in range(APPENDERS)))

        started = time.perf_counter()
        last = max(asyncio.run(run_all()))
        elapsed = time.perf_counter() - started
        self.log.trim(last)
        return elapsed

    def close(self) -> None:
        self.log.close()
        shutil.rmtree(self.directory, ignore_errors=True)


class BareObjects:
    """The bytes of a round written as object files of the store's upload
    size, beside the WAL on the same disk, as LocalStore writes an object:
    a MiB at a time, one fsync at its end, then the directory's."""

    def __init__(self, directory: Path, object_bytes: int) -> None:
        self.directory = directory
        self.object_bytes = object_bytes
        self.chunk = os.urandom(min(MiB, object_bytes))
        directory.mkdir(parents=True, exist_ok=True)

    def seconds(self, total: int) -> float:
        """How long writing ``total`` bytes as objects takes (their
        removal after, not counted, as the store's compaction would)."""
        started = time.perf_counter()
        written = index = 0
        while written < total:
            size = min(self.object_bytes, total - written)
            path = self.directory / f"object-{index}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                left = size
                while left > 0:
                    left -= os.write(fd, self.chunk[: min(left, len(self.chunk))])
                os.fsync(fd)
            finally:
                os.close(fd)
            written += size
            index += 1
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        elapsed = time.perf_counter() - started
        for path in self.directory.iterdir():
            path.unlink()
        return elapsed

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class moto_server:  # noqa: N801 - used as a context manager, reads like a function
    """moto's S3 server in its own process on a free loopback port."""

    def __enter__(self) -> moto_server:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        # moto spools objects larger than this buffer to temporary files; a
        # large buffer keeps them in memory, so the remote store does not
        # share the local disk with the WAL, as a real one would not.
        env = dict(os.environ, MOTO_S3_DEFAULT_KEY_BUFFER_SIZE=str(256 * MiB))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                self.endpoint = f"http://127.0.0.1:{port}"
                return self
            except OSError:
                time.sleep(0.1)
        self.process.kill()
        raise RuntimeError("moto's server did not start")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(10)


def print_table(results: dict[str, Any]) -> None:
    print(f"{results['mib']} MiB over {STREAMS} streams, {BATCH // 1024} KiB batches\n")
    label_width = 46
    rows = [
        ("bare WAL appends, beside the local dir runs", "wal_mb_s_file"),
        ("StreamStore appends, local dir store", "append_mb_s_file"),
        ("bare WAL appends, beside the S3 runs", "wal_mb_s_s3"),
        ("StreamStore appends, S3 (moto)", "append_mb_s_s3"),
        ("remotely durable, local dir store", "upload_mb_s_file"),
        ("remotely durable, S3 (moto)", "upload_mb_s_s3"),
        ("compaction (split into stream objects), S3", "compaction_mb_s_s3"),
        ("replay before compaction, local dir store", "replay_uncompacted_mb_s_file"),
        ("replay before compaction, S3 (moto)", "replay_uncompacted_mb_s_s3"),
        ("replay, cold cache, local dir store", "replay_mb_s_file"),
        ("raw file reads of the same objects", "raw_get_mb_s_file"),
        ("replay, cold cache, S3 (moto)", "replay_mb_s_s3"),
        ("raw sequential GETs, plain boto3 client", "raw_get_mb_s_s3"),
        ("raw sequential GETs, the store's client", "raw_store_get_mb_s_s3"),
    ]
    for label, key in rows:
        print(f"{label:<{label_width}} {results[key]:>9.1f} MB/s")
    cores = [
        ("CPU cores busy: bare WAL rounds", "wal_cores_s3"),
        ("CPU cores busy: StreamStore appends, S3", "append_cores_s3"),
        ("CPU cores busy: moto's server meanwhile", "append_server_cores_s3"),
    ]
    for label, key in cores:
        print(f"{label:<{label_width}} {results[key]:>9.2f}")
    print("\nthe store's appends beside their ceiling on this machine")
    for backend, label in (("file", "local dir"), ("s3", "S3 (moto)")):
        print(
            f"  {label:<10} {results[f'append_mb_s_{backend}']:>7.1f} MB/s of"
            f" {results[f'ceiling_mb_s_{backend}']:>7.1f} ({results[f'ceiling_{backend}']}):"
            f" append_vs_ceiling {results[f'append_vs_ceiling_{backend}']:.2f}"
        )
    print(
        f"  the write-twice limit: bare objects {results['objects_mb_s_file']:.1f} MB/s"
        f" beside the WAL's {results['wal_mb_s_file']:.1f}; moto's server"
        f" {results.get('server_cpu_ms_per_mib_s3', 0):.2f} ms of CPU per MiB uploaded,"
        f" the bare WAL {results.get('wal_cpu_ms_per_mib_s3', 0):.2f}"
    )
    print(
        f"\nreplay_vs_raw_s3 {results['replay_vs_raw_s3']:.2f} (vs the store's client "
        f"{results['replay_vs_store_client_s3']:.2f})   append_vs_wal "
        f"{results['append_vs_wal']:.2f} (local dir {results['append_vs_wal_file']:.2f}, "
        f"S3 {results['append_vs_wal_s3']:.2f})"
    )
    _harness.print_targets(results["targets"])


if __name__ == "__main__":
    main()
