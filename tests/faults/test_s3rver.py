"""s3rver: an S3-compatible server that accepts If-None-Match / If-Match and
ignores them. By default tidelog refuses it at open (two writers on it would
fork the manifest); in single-writer mode it serves and recovers on it."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

import engine
from s3stream import ConditionalWritesNotEnforced
from tests.engine.conftest import QUIET_STORE
from tests.engine.helpers_records import batch, read_partition
from tests.s3stream.conftest import S3Endpoint
from tests.server.conftest import ServerProcess

CONFIG = engine.EngineConfig(store=QUIET_STORE)
SINGLE_WRITER = "&conditional_writes=unenforced-single-writer"


def test_an_engine_refuses_s3rver_and_writes_nothing(
    tmp_path: Path, s3rver_endpoint: S3Endpoint
) -> None:
    prefix = f"refused-{uuid.uuid4().hex}"
    with pytest.raises(engine.StorageError) as caught:
        engine.open(tmp_path / "node", s3rver_endpoint.store_url(prefix), CONFIG)
    assert "If-None-Match" in str(caught.value)
    refusal = caught.value.__cause__  # the engine's error wraps the store's
    assert isinstance(refusal, ConditionalWritesNotEnforced)
    assert refusal.url == f"s3://{s3rver_endpoint.bucket}/{prefix}/"
    store = s3rver_endpoint.store(prefix)
    try:
        assert store.list() == []
    finally:
        store.close()


def test_serve_refuses_s3rver_with_one_clear_error(
    tmp_path: Path, s3rver_endpoint: S3Endpoint
) -> None:
    server = ServerProcess(tmp_path / "node", object_store=s3rver_endpoint.store_url("served"))
    with pytest.raises(RuntimeError, match="exited with code 1 at start") as caught:
        server.start()
    message = str(caught.value)
    assert "does not enforce create-if-absent" in message
    assert "conditional_writes=unenforced-single-writer" in message
    assert "Traceback" not in message
    assert server.process is not None and server.process.returncode == 1


def test_single_writer_mode_serves_and_recovers_on_s3rver(
    tmp_path: Path, s3rver_endpoint: S3Endpoint
) -> None:
    url = s3rver_endpoint.store_url(f"single-{uuid.uuid4().hex}") + SINGLE_WRITER
    values = [b"record-%d" % i for i in range(300)]
    with engine.open(tmp_path / "first", url, CONFIG) as first:
        first.create_topic("memory", 2)
        for start in range(0, len(values), 30):
            first.produce("memory", (start // 30) % 2, batch(values[start : start + 30]))
        assert first.flush(timeout=30)
    with engine.open(tmp_path / "first", url, CONFIG) as again:  # a restart on its own WAL
        again.produce("memory", 0, batch([b"after restart"]))
        assert again.flush(timeout=30)
    shutil.rmtree(tmp_path / "first")
    with engine.open(tmp_path / "fresh", url, CONFIG) as fresh:  # only the bucket
        got = [r.value for p in (0, 1) for r in read_partition(fresh, "memory", p)]
        assert fresh.store.recovery.manifest_conflicts == ()
    expected = [v for s in range(0, 300, 60) for v in values[s : s + 30]] + [b"after restart"]
    expected += [v for s in range(30, 300, 60) for v in values[s : s + 30]]
    assert got == expected
