"""``tidelog lookup`` and ``tidelog state`` (lookup_uploaded,
stored_state_at) read the bucket beside a serving engine: an object the
engine merges away and deletes while they read is read where the manifest
as it is now places its ranges (so a read beside an engine that merges
every object it reads still ends), and one the manifest names that the
bucket lost is CorruptObject naming it, not the store's bare
ObjectNotFound."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import engine
import native
from engine.memory.stored_state import stored_state_at
from engine.memory.uploaded_lookup import lookup_uploaded
from native.records import RecordSpec
from s3stream.errors import MISSING, CorruptObject
from s3stream.manifest import load_state
from s3stream.outside_reads import RELOADS
from s3stream.store import LocalStore
from tests.engine.conftest import QUIET_STORE
from tests.s3stream.test_missing_objects import CompactsOnFirstRead, MergesEachObjectItReads

TOPIC = "t"
CID = [("cid", b"x")]
CONFIG = engine.EngineConfig(
    store=dataclasses.replace(QUIET_STORE, garbage_grace_s=0, small_object_bytes=1 << 20),
    cleaner_interval_s=3600.0,
)


def lookup(bucket: LocalStore) -> list[bytes]:
    return [r.value for r in lookup_uploaded(bucket, [TOPIC], "cid", b"x")]


def state(bucket: LocalStore) -> dict[bytes, bytes]:
    return {k: s.value for k, s in stored_state_at(bucket, TOPIC, 10).values.items()}


READS: dict[str, tuple[Callable[[LocalStore], Any], Any]] = {
    "lookup": (lookup, [b"p0", b"p1", b"p2"]),
    "state": (state, {b"k0": b"p0", b"k1": b"p1", b"k2": b"p2"}),
}


def written(e: engine.Engine) -> None:
    """Three records, each in an upload of its own: three small objects."""
    e.create_topic(TOPIC, 1, {"cleanup.policy": "compact", "tidelog.index.headers": "cid"})
    for i in range(3):
        e.produce(TOPIC, 0, native.encode_batch([RecordSpec(i, b"k%d" % i, b"p%d" % i, CID)]))
        assert e.flush(timeout=30)


@pytest.mark.parametrize(("read", "expected"), READS.values(), ids=READS.keys())
def test_a_read_beside_an_engine_merging_its_objects_away_reads_them_anew(
    tmp_path: Path, read: Callable[[LocalStore], Any], expected: Any
) -> None:
    with engine.Engine.open(tmp_path / "node", None, CONFIG) as e:
        written(e)
        before = set(e.store.manifest.state.objects)
        bucket = CompactsOnFirstRead(tmp_path / "node" / "objects")
        bucket.store = e.store
        assert read(bucket) == expected
        assert bucket.compacted and not before & set(e.store.manifest.state.objects)


def one_more_upload(e: engine.Engine, merges: int) -> None:
    """A record after the state's time and without the looked-up header:
    what the reads answer stays the same."""
    spec = RecordSpec(1_000 + merges, b"later", b"later %d" % merges, [])
    e.produce(TOPIC, 0, native.encode_batch([spec]))
    assert e.flush(timeout=30)


@pytest.mark.parametrize(("read", "expected"), READS.values(), ids=READS.keys())
def test_a_read_beside_an_engine_that_merges_every_object_it_reads_ends(
    tmp_path: Path, read: Callable[[LocalStore], Any], expected: Any
) -> None:
    """Each read from a newer manifest would meet its objects merged away
    again: the read takes a merged-away range where the manifest places it
    now, rather than start again until it gives up."""
    with engine.Engine.open(tmp_path / "node", None, CONFIG) as e:
        written(e)
        before = set(e.store.manifest.state.objects)
        bucket = MergesEachObjectItReads(
            tmp_path / "node" / "objects", e.store, lambda merges: one_more_upload(e, merges)
        )
        assert read(bucket) == expected
        assert bucket.merges > RELOADS and not before & set(e.store.manifest.state.objects)


@pytest.mark.parametrize(("read", "expected"), READS.values(), ids=READS.keys())
def test_an_object_the_bucket_lost_is_corrupt_object_naming_it(
    tmp_path: Path, read: Callable[[LocalStore], Any], expected: Any
) -> None:
    with engine.Engine.open(tmp_path / "node", None, CONFIG) as e:
        written(e)
    bucket = LocalStore(tmp_path / "node" / "objects")
    assert read(bucket) == expected
    manifest = load_state(bucket)
    data = e.catalog.state.topics[TOPIC].streams[0][0]
    key = manifest.objects[manifest.ranges[data].entries[1][2]].key
    Path(bucket.root, *key.split("/")).unlink()
    with pytest.raises(CorruptObject) as refused:
        read(bucket)
    assert (refused.value.key, refused.value.reason) == (key, MISSING)
