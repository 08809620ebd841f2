"""``tidelog state`` and the object-store reader behind it: the same answer
as the running engine's ``state_at`` for what is uploaded — committed
records only, the compaction horizon from the uploaded checkpoints — read
beside the serving engine without fencing it."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import engine
import native
from engine.catalog import read_records
from engine.checkpoint_records import PART_VERSION
from engine.cli.main import main
from engine.memory.stored_state import stored_state_at
from native import RecordSpec
from s3stream import open_store
from tests.engine.conftest import FAST_STORE
from tests.engine.helpers_records import child_env

T0 = 1_700_000_000_000
CONFIG = engine.EngineConfig(checkpoint_interval_s=3600, cleaner_interval_s=3600)


def _state_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", "state", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
        check=False,
    )


def _put(e: engine.Engine, key: bytes, value: bytes | None, timestamp: int) -> None:
    e.produce("orders", 0, native.encode_batch([RecordSpec(timestamp, key, value, ())]))


def _state_here(
    capsys: pytest.CaptureFixture[str], data_dir: Path, *args: str
) -> tuple[int, str, str]:
    """The command run in this process (cheaper than a child; same code)."""
    code = main(["state", *args, "--data-dir", str(data_dir)])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_prints_the_engines_answer_beside_the_running_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with engine.open(tmp_path, config=CONFIG) as e:
        e.create_topic("orders", 1, {"cleanup.policy": "compact", "delete.retention.ms": 0})
        _put(e, b"order-1", b"placed", T0 - 300)
        _put(e, b"order-1", b"paid", T0 - 200)
        _put(e, b"order-2", b"\xff\x00", T0 - 200)
        assert e.flush(timeout=30)
        assert e.cleaner.clean(e.partition("orders", 0), force=True)
        _put(e, b"order-1", b"shipped", T0 - 100)
        with e.producer(transactional_id="orders") as producer:
            producer.init_transactions(timeout=30)
            producer.begin_transaction()
            producer.send("orders", b"aborted", b"order-1", timestamp=T0 - 50)
            producer.flush(30)  # written, so the abort leaves it aborted (unsent, it would fail)
            producer.abort_transaction(timeout=30)
            producer.begin_transaction()
            producer.send("orders", b"open", b"order-3", timestamp=T0 - 50).result(timeout=30)
            assert e.flush(timeout=30)
            store = open_store(e.storage_url)
            try:
                for at in (T0 - 300, T0 - 200, T0):
                    offline = stored_state_at(store, "orders", at)
                    online = e.state_at("orders", at)
                    assert offline == online
            finally:
                store.close()
            inexact_code, inexact_out, _ = _state_here(
                capsys, tmp_path, "orders", "--at", str(T0 - 300)
            )
            exact = _state_cli(tmp_path, "orders", "--at", "2023-11-14T22:13:20Z")
            producer.abort_transaction(timeout=30)
        # The engine was not fenced: it still serves.
        _put(e, b"order-4", b"placed", T0)
    assert inexact_code == 1
    *keys, summary = [json.loads(line) for line in inexact_out.splitlines()]
    assert [(k["key"], k["value"]) for k in keys] == [
        ("order-1", "paid"),
        ("order-2", "base64:/wA="),
    ]
    assert summary["exact"] is False
    assert summary["partitions"][0]["as_of_ms"] == T0 - 200
    assert exact.returncode == 0, exact.stderr  # 2023-11-14T22:13:20Z is T0
    *keys, summary = [json.loads(line) for line in exact.stdout.splitlines()]
    assert [(k["key"], k["value"], k["ref"]) for k in keys] == [
        ("order-1", "shipped", "orders:0:3:" + keys[0]["ref"].rsplit(":", 1)[1]),
        ("order-2", "base64:/wA=", keys[1]["ref"]),
    ]
    assert summary == {
        "exact": True,
        "partitions": [
            {
                "partition": 0,
                "exact": True,
                "as_of_ms": T0,
                "pending": False,
                "log_start_offset": 0,
                "note": f"partition 0: exact (as of {T0} ms)",
            }
        ],
    }


def test_a_time_without_a_zone_and_an_unknown_topic_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with engine.open(tmp_path, config=CONFIG) as e:
        e.create_topic("orders", 1, {"cleanup.policy": "compact"})
    # a usage error, found before the store is opened
    with pytest.raises(SystemExit) as usage:
        _state_here(capsys, tmp_path, "orders", "--at", "2026-12-01T09:00:00")
    err = capsys.readouterr().err
    assert usage.value.code == 2
    assert "argument --at: the time '2026-12-01T09:00:00' has no zone" in err
    with pytest.raises(SystemExit):
        _state_here(capsys, tmp_path, "orders", "--at", "Tuesday")
    assert "'Tuesday' is neither milliseconds since the epoch nor ISO 8601" in (
        capsys.readouterr().err
    )
    code, _, err = _state_here(capsys, tmp_path, "missing", "--at", "0")
    assert code == 2 and "missing" in err


def test_the_horizon_of_a_checkpoint_in_parts_is_read_from_the_bucket(tmp_path: Path) -> None:
    """A checkpoint past one WAL record is written in parts (0112); the
    horizon the bucket's reader takes is the whole checkpoint's, not the
    last part's (which holds none): read as none, an answer at a time the
    cleaner took records from would be called exact."""
    config = engine.EngineConfig(
        store=replace(FAST_STORE, wal_segment_bytes=32 * 1024),
        checkpoint_interval_s=3600,
        cleaner_interval_s=3600,
    )
    with engine.open(tmp_path, config=config) as e:
        e.create_topic("orders", 1, {"cleanup.policy": "compact", "delete.retention.ms": 0})
        _put(e, b"order-1", b"placed", T0 - 300)
        _put(e, b"order-1", b"paid", T0 - 200)
        assert e.flush(timeout=30)
        assert e.cleaner.clean(e.partition("orders", 0), force=True)
        for pid in [e.init_producer_id()[0] for _ in range(2000)]:
            # 2,000 producers changed: the next checkpoint (some 90 KiB) goes in parts
            batch = native.encode_batch(
                [RecordSpec(T0 - 100, b"order-%d" % pid, b"placed", ())],
                producer_id=pid,
                producer_epoch=0,
                base_sequence=0,
            )
            e.produce("orders", 0, batch)
        assert e.flush(timeout=30)
        state = read_records(e.store, e.partition("orders", 0).state_stream_id)
        assert state[-1]["v"] == PART_VERSION, "the last checkpoint was not written in parts"
        store = open_store(e.storage_url)
        try:
            online = e.state_at("orders", T0 - 300)
            assert not online.exact  # the cleaner took order-1's first value
            assert stored_state_at(store, "orders", T0 - 300) == online
        finally:
            store.close()
