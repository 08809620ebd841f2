"""An engine whose catalog outgrew one WAL record (small segments) writes
its snapshot in parts, is trimmed to it, keeps its log within about twice
the catalog's size as admin changes go on, and loads the same catalog at
a restart and on a fresh machine with only the bucket: on a local object
store and on S3 (moto's server on loopback). A snapshot the store refuses
part way leaves the catalog as it was, and the next one completes."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgpack
import pytest

import engine
from engine import catalog as catalog_module
from engine.acl_bindings import AclBinding
from engine.catalog import PARTS_FORMAT_VERSION, SNAPSHOT_EVERY, SNAPSHOT_PART, read_payloads
from s3stream import NoRoom
from tests.engine.conftest import FAST_STORE

SEGMENT = 64 * 1024
"""The WAL's segment: one append holds a little less."""
PRINCIPAL = "User:" + "p" * 1000
CONFIG = engine.EngineConfig(
    store=replace(FAST_STORE, wal_segment_bytes=SEGMENT), cleaner_interval_s=3600.0
)


def _acl(i: int) -> AclBinding:
    return AclBinding(2, f"topic-{i}", 3, PRINCIPAL, "*", 3, 3)


def _log(e: engine.Engine) -> list[bytes]:
    return [bytes(p) for p in read_payloads(e.store, e.catalog.stream_id)]


def _loaded(e: engine.Engine) -> Any:
    return e.catalog.state.to_wire(), sorted(e.list_topics())


@pytest.mark.parametrize("objects", ["local", "s3"])
def test_a_catalog_past_one_wal_record_is_snapshotted_in_parts_and_loads(
    tmp_path: Path, request: pytest.FixtureRequest, objects: str
) -> None:
    url = request.getfixturevalue("s3_url") if objects == "s3" else f"file://{tmp_path / 'objs'}"
    with engine.open(tmp_path / "node", url, CONFIG) as e:
        e.create_topic("kept", 2, configs={"retention.ms": "5000"})
        count = SNAPSHOT_EVERY + 32
        for i in range(count):
            e.catalog.add_acls([_acl(i)])
        state_bytes = len(msgpack.packb(e.catalog.state.to_wire(), use_bin_type=True))
        assert state_bytes > 2 * e.store.max_append_bytes
        first = [msgpack.unpackb(p, raw=False) for p in _log(e)[:2]]
        assert first[0][:2] == ["catalog", PARTS_FORMAT_VERSION]
        assert first[1][:2] == [SNAPSHOT_PART, 0]
        trimmed = e.store.start_offset(e.catalog.stream_id)
        assert trimmed > 0
        # As many changes again as the catalog holds, its size kept: the
        # log is trimmed to new snapshots, never more than about twice the
        # catalog plus SNAPSHOT_EVERY records.
        for i in range(3 * count):
            e.catalog.remove_acls([_acl(i % count)])
            e.catalog.add_acls([_acl(i % count)])
            if i % 32 == 0:
                assert sum(map(len, _log(e))) <= 2 * state_bytes + SNAPSHOT_EVERY * 1100
        assert e.store.start_offset(e.catalog.stream_id) > trimmed + 2 * count
        served = _loaded(e)
    with engine.open(tmp_path / "node", url, CONFIG) as restarted:
        assert _loaded(restarted) == served
        assert len(restarted.catalog.state.acls) == count
        assert restarted.topic_config("kept").overrides == {"retention.ms": "5000"}
    with engine.open(tmp_path / "fresh", url, CONFIG) as fresh:
        assert _loaded(fresh) == served


@pytest.mark.parametrize("refused_at", [1, 2])
def test_a_snapshot_the_store_refuses_part_way_loses_nothing_and_the_next_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refused_at: int
) -> None:
    """The store refuses a snapshot's append after its opening record (and
    a part) were written, as it refuses an append that cannot wait past
    its headroom: the change that made it due is applied, nothing is
    trimmed, a restart loads the same catalog from the log with the
    unfinished parts in it, and the next snapshot completes."""
    url = f"file://{tmp_path / 'objs'}"
    with engine.open(tmp_path / "node", url, CONFIG) as e:
        for i in range(64):  # past one WAL record
            e.catalog.add_acls([_acl(i)])
        start = e.store.start_offset(e.catalog.stream_id)
        store = e.catalog.store
        submit = store.submit
        calls = 0

        def refusing(stream_id: int, *args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            # A snapshot's records: its opening record and its parts.
            catalog = stream_id == e.catalog.stream_id
            if catalog and msgpack.unpackb(args[2], raw=False)[0] in ("catalog", SNAPSHOT_PART):
                calls += 1
                if calls > refused_at:
                    raise NoRoom(stream_id, 1, 0)
            return submit(stream_id, *args, **kwargs)

        added = 64
        with monkeypatch.context() as faults:
            faults.setattr(store, "submit", refusing)
            while calls <= refused_at:  # until a snapshot was due, and stopped
                e.catalog.add_acls([_acl(added)])
                added += 1
                assert added < 4 * SNAPSHOT_EVERY
        assert e.store.start_offset(e.catalog.stream_id) == start
        kinds = [msgpack.unpackb(p, raw=False)[0] for p in _log(e)]
        assert kinds.count(SNAPSHOT_PART) >= refused_at - 1
        served = _loaded(e)
    with engine.open(tmp_path / "node", url, CONFIG) as restarted:
        assert _loaded(restarted) == served
        for i in range(added, added + SNAPSHOT_EVERY):
            restarted.catalog.add_acls([_acl(i)])
        assert restarted.store.start_offset(restarted.catalog.stream_id) > start
        opening = msgpack.unpackb(_log(restarted)[0], raw=False)
        assert opening[:2] == ["catalog", PARTS_FORMAT_VERSION]
        served = _loaded(restarted)
    with engine.open(tmp_path / "node", url, CONFIG) as again:
        assert _loaded(again) == served
        assert len(again.catalog.state.acls) == added + SNAPSHOT_EVERY


def test_a_snapshots_parts_share_the_wals_syncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot's parts are sent together, in one WAL group, not each
    waiting for a sync of its own: a snapshot of many parts takes a few
    syncs, and the catalog's writes wait for none of them under its lock
    but the last group's. Before, one sync per part."""
    monkeypatch.setattr(catalog_module, "SNAPSHOT_EVERY", 10**9)  # only the one made here
    with engine.open(tmp_path / "node", f"file://{tmp_path / 'objs'}", CONFIG) as e:
        for i in range(0, 2000, 40):  # each record under a WAL record: 2 MiB in all
            e.catalog.add_acls([_acl(n) for n in range(i, i + 40)])
        syncs = e.store.wal.stats.syncs
        start = e.store.next_offset(e.catalog.stream_id)
        e.catalog._snapshot()
        records = e.store.next_offset(e.catalog.stream_id) - start
        assert e.store.start_offset(e.catalog.stream_id) == start  # trimmed to it
        assert records > 30  # its opening record and its parts
        # The trim's record and a group cut short by a busy machine beside it.
        assert e.store.wal.stats.syncs - syncs < records // 4
        served = _loaded(e)
    with engine.open(tmp_path / "node", f"file://{tmp_path / 'objs'}", CONFIG) as restarted:
        assert _loaded(restarted) == served
        assert restarted.catalog.state.snapshots_in_parts == 1


def test_a_snapshot_abandoned_part_way_says_at_which_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A part the store refuses after others were sent together: the
    snapshot is reported abandoned at that part, nothing is trimmed, and
    the parts sent before it are durable and skipped by a reader."""
    monkeypatch.setattr(catalog_module, "SNAPSHOT_EVERY", 10**9)
    with engine.open(tmp_path / "node", f"file://{tmp_path / 'objs'}", CONFIG) as e:
        for i in range(0, 400, 40):
            e.catalog.add_acls([_acl(n) for n in range(i, i + 40)])
        store = e.store
        submit = store.submit
        start = store.start_offset(e.catalog.stream_id)
        sent = 0

        def refusing_the_fifth(stream_id: int, *args: Any, **kwargs: Any) -> Any:
            nonlocal sent
            if stream_id == e.catalog.stream_id:
                sent += 1
                if sent == 5:
                    raise NoRoom(stream_id, 1, 0)
            return submit(stream_id, *args, **kwargs)

        monkeypatch.setattr(store, "submit", refusing_the_fifth)
        end = store.next_offset(e.catalog.stream_id)
        with caplog.at_level(logging.WARNING, "tidelog.engine"):
            e.catalog._snapshot()
        assert "snapshot was abandoned at its record 4 of " in caplog.text
        assert store.start_offset(e.catalog.stream_id) == start
        assert store.end_offset(e.catalog.stream_id) == end + 4  # durable before the report
        served = _loaded(e)
    with engine.open(tmp_path / "node", f"file://{tmp_path / 'objs'}", CONFIG) as restarted:
        assert _loaded(restarted) == served
        assert restarted.catalog.state.snapshots_in_parts == 0
