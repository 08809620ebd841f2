"""The WAL is trimmed only past what a committed manifest holds.

An upload puts its objects, commits them to the manifest, and only then
trims the WAL (docs/design, the uploader's order). A store that takes the
objects but fails every manifest commit leaves their data in the WAL alone:
a crash then, and a restart, finds every acknowledged append there. The
kill campaigns find a trim moved before the commit only now and then (it
needs a kill between the two); here the commit fails on cue.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from s3stream import StreamStore, StreamStoreConfig
from s3stream.store import MemoryStore
from tests.s3stream.faults import FaultyStore
from tests.s3stream.test_stream_store import expected, fill, new_stream, read_all
from wal.recovery import FREE_PREFIX

TIMEOUT_S = 30

CONFIG = StreamStoreConfig(
    upload_bytes=64 * 1024,
    upload_interval_s=3600,
    compaction_interval_s=3600,
    wal_segment_bytes=16 * 1024,
)
"""An upload's block spans several WAL segments: a trim to its end drops whole
segments, and the first refused commit holds back every later upload."""


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_commit_that_fails_after_the_upload_trims_nothing_and_a_crash_loses_nothing(
    tmp_path: Path,
) -> None:
    faulty = FaultyStore(MemoryStore())
    node = StreamStore.open(tmp_path / "node", faulty, CONFIG)
    try:
        stream = new_stream(node)
        fill(node, stream, 10, size=500)
        assert node.flush(timeout=TIMEOUT_S)
        committed = node.remote_end_offset(stream)
        segments_before = len(node.wal.segments)
        faulty.fail("put", prefix="manifest/")  # objects go in; their commits fail
        puts_before = faulty.calls.get("put", 0)
        fill(node, stream, 200, size=500)  # 100 KB acknowledged: several segments' worth
        # Uploads ran: their objects were put, then their commits refused.
        _wait_for(lambda: faulty.failures >= 2, "a refused manifest commit")
        assert faulty.calls.get("put", 0) - faulty.failures > puts_before
        assert node.remote_end_offset(stream) == committed
        assert len(node.wal.segments) > segments_before, "the WAL was trimmed past the manifest"
        # What a kill -9 leaves: the WAL as it stands, the bucket as it stands.
        # (A segment made ahead still under its temporary name is left out, as
        # recovery removes it; so are free files, which hold no records and
        # which the spare maker may rename while the copy lists them.)
        shutil.copytree(
            tmp_path / "node",
            tmp_path / "crashed",
            ignore=shutil.ignore_patterns("*.tmp", f"{FREE_PREFIX}*"),
        )
    finally:
        # Closed while its commits still fail: the killed process never
        # committed them either.
        node.close(flush=False)
        faulty.heal()
    with StreamStore.open(tmp_path / "crashed", faulty.inner, CONFIG) as restarted:
        assert restarted.end_offset(stream) == 630
        assert read_all(restarted, stream) == expected(stream, 0, 210, size=500)
