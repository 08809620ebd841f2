"""SIGKILL a writer process at random moments (and at the worst one: after an
object's put, before its manifest commit); every acknowledged append comes
back, once, in order, at its offset; orphaned objects are cleaned up."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from s3stream import StreamStore, StreamStoreConfig
from s3stream.manifest import load_state
from s3stream.store import LocalStore
from s3stream.uploader import OBJECT_PREFIX, epoch_of_key

STREAMS = 4

# The child appends to STREAMS streams and prints "stream base end" after each
# acknowledgement. With KILL_AFTER_PUTS=n it kills itself right after its n-th
# object put, before the commit that would make the object part of the manifest.
_WRITER = """
import os, signal, sys
from s3stream import StreamStore, StreamStoreConfig
from s3stream.store import LocalStore

class KillAfterPuts(LocalStore):
    puts = 0
    def put(self, key, data):
        version = super().put(key, data)
        if key.startswith("objects/"):
            KillAfterPuts.puts += 1
            if KillAfterPuts.puts == int(os.environ.get("KILL_AFTER_PUTS", "0")):
                os.kill(os.getpid(), signal.SIGKILL)
        return version

config = StreamStoreConfig(upload_bytes=32768, upload_interval_s=0.02, block_bytes=4096,
                           wal_segment_bytes=65536, compaction_interval_s=0.05,
                           small_object_bytes=1 << 20, garbage_grace_s=0)
store = StreamStore.open(sys.argv[1], KillAfterPuts(sys.argv[2]), config)
streams = store.streams()
while len(streams) < int(sys.argv[3]):
    streams.append(store.create_stream())
for stream in streams:
    store.open_stream(stream, 1)
i = 0
while True:
    stream = streams[i % len(streams)]
    base = store.next_offset(stream)
    count = 1 + i % 3
    store.append(stream, base, base + count - 1, b"%d:%d:" % (stream, base) + b"x" * (i % 700))
    sys.stdout.write("%d %d %d\\n" % (stream, base, base + count))
    sys.stdout.flush()
    i += 1
"""


def _run_child(
    node: Path, bucket: Path, seconds: float, kill_after_puts: int = 0
) -> list[tuple[int, int, int]]:
    env = dict(os.environ, PYTHONPATH=os.getcwd(), KILL_AFTER_PUTS=str(kill_after_puts))
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(node), str(bucket), str(STREAMS)],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert child.stdout is not None
    acked = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break  # it killed itself
        stream, base, end = map(int, line.split())
        acked.append((stream, base, end))
    child.send_signal(signal.SIGKILL)
    child.wait()
    return acked


def _check(node: Path, bucket: Path, acked: dict[int, int]) -> None:
    config = StreamStoreConfig(upload_interval_s=3600, compaction_interval_s=3600)
    with StreamStore.open(node, LocalStore(str(bucket)), config) as store:
        for stream in store.streams():
            offset, batches = 0, []
            while offset < store.end_offset(stream):
                result = store.fetch(stream, offset, 1 << 20)
                batches += result.batches
                offset = result.next_offset
            expected_base = 0
            for batch in batches:  # dense, in order, each payload at its own offset
                assert batch.base_offset == expected_base
                assert bytes(batch.payload).startswith(b"%d:%d:" % (stream, batch.base_offset))
                expected_base = batch.end_offset
            assert store.end_offset(stream) >= acked.get(stream, 0)
        epoch = store.manifest.epoch
        known = {meta.key for meta in store.manifest.state.objects.values()}
        known |= set(store.manifest.state.garbage)
        leftovers = [
            info.key
            for info in store.store.list(OBJECT_PREFIX)
            if info.key not in known and (epoch_of_key(info.key) or 0) < epoch
        ]
        assert leftovers == []


@pytest.mark.parametrize("run", range(3))
def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path: Path, run: int) -> None:
    node, bucket = tmp_path / "node", tmp_path / "bucket"
    acked: dict[int, int] = {}
    for _ in range(3):
        for stream, _, end in _run_child(node, bucket, 0.3 + random.random()):
            acked[stream] = max(acked.get(stream, 0), end)
        assert acked, "the writer acknowledged nothing before the kill"
        _check(node, bucket, acked)


def test_sigkill_between_object_put_and_manifest_commit(tmp_path: Path) -> None:
    node, bucket = tmp_path / "node", tmp_path / "bucket"
    acked: dict[int, int] = {}
    for _ in range(2):
        acks = _run_child(node, bucket, 60, kill_after_puts=3)
        assert acks, "the writer acknowledged nothing before the kill"
        for stream, _, end in acks:
            acked[stream] = max(acked.get(stream, 0), end)
        state = load_state(LocalStore(str(bucket)))
        committed = {meta.key for meta in state.objects.values()}
        orphans = [
            i.key for i in LocalStore(str(bucket)).list(OBJECT_PREFIX) if i.key not in committed
        ]
        assert orphans  # the killed upload left its object behind, uncommitted
        _check(node, bucket, acked)
