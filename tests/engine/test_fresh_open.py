"""Opening an engine on a fresh store: its catalog and its own state logs'
streams are created in one manifest commit after the fence (each commit
costs the open the object store's syncs), the catalog's first records
share the WAL's syncs, and a restart finds them all."""

from __future__ import annotations

from pathlib import Path

import engine
from s3stream import StreamStoreConfig
from s3stream.store import MemoryStore

NO_UPLOAD = engine.EngineConfig(store=StreamStoreConfig(upload_interval_s=3600))
"""Nothing uploaded (and so committed) while the test looks at the manifest."""


def _versions(store: MemoryStore) -> int:
    return len(store.list("manifest/log/"))


def test_a_fresh_open_commits_the_fence_and_one_creation(tmp_path: Path) -> None:
    store = MemoryStore()
    with engine.open(tmp_path / "data", store, NO_UPLOAD) as opened:
        assert _versions(store) == 2
        wal = opened.store.wal.stats
        assert wal.appends == 3 and wal.syncs < wal.appends  # the catalog's first records
        internal = dict(opened.catalog.state.internal)
        assert set(internal) == {"groups", "transactions"}
        assert sorted(internal.values()) == [
            opened.catalog.stream_id + 1,
            opened.catalog.stream_id + 2,
        ]
    with engine.open(tmp_path / "data", store) as reopened:
        assert dict(reopened.catalog.state.internal) == internal
        reopened.create_topic("t")
        assert reopened.groups.list_groups() == []
