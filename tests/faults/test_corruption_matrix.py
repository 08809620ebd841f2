"""Damage to what object storage holds, one place at a time: a data block of
a stream-set object, an object's index, its footer (of an object holding
partition data, and of the one holding the engine's catalog), the newest
manifest delta and the newest manifest checkpoint; an object and the newest
delta cut short and emptied.

For each, opening the engine again either recovers with every acknowledged
record readable, or refuses clearly: an error naming the damaged object's
key and what is wrong with it, from the open or from the read that meets
the damage (CorruptStoredData). Never a silent loss (a read that succeeds
returns every acknowledged record, in order, at its offset), never a hang
(every open and read runs under a timeout).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from s3stream import StreamStoreConfig
from s3stream.errors import CorruptObject
from s3stream.manifest import Manifest, load_state
from s3stream.manifest_records import CHECKPOINT_PREFIX
from s3stream.store import MemoryStore
from tests.engine.helpers_records import read_partition
from tests.faults.damage import (
    damage_marker,
    data_objects,
    flip,
    footer_position,
    index_position,
)
from tests.server.conftest import ServerProcess

TOPIC = "matrix"
PARTITIONS = 2
ROUNDS = 4
PER_ROUND = 5
MARKER = b"round-2-marker"
TIMEOUT_S = 60
STORE = StreamStoreConfig(
    upload_interval_s=3600, compaction_interval_s=3600, checkpoint_every=3, block_bytes=256
)
"""Uploads only on flush (one object per round), manifest checkpoints every
three versions, small blocks (an object has several per partition)."""
CONFIG = engine.EngineConfig(store=STORE, cleaner_interval_s=3600)

T = TypeVar("T")


def within_timeout(call: Callable[[], T]) -> T:
    """``call()`` on a worker thread; fails the test if it hangs."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        return pool.submit(call).result(TIMEOUT_S)
    except concurrent.futures.TimeoutError:
        pytest.fail(f"still running after {TIMEOUT_S} s: a hang")
    finally:
        pool.shutdown(wait=False)


def value(partition: int, round_: int, i: int) -> bytes:
    if (partition, round_, i) == (0, 2, 0):
        return MARKER
    return f"p{partition}-r{round_}-{i}".encode()


def write(data: Path) -> dict[int, list[tuple[int, bytes]]]:
    """ROUNDS rounds of records to every partition, each round uploaded in
    one object and committed to the manifest; returns the acknowledged
    (offset, value) of each partition."""
    acked: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(PARTITIONS)}
    with engine.open(data, None, CONFIG) as e:
        e.create_topic(TOPIC, partitions=PARTITIONS)
        e.flush()  # the catalog's object: holds no partition data
        with e.producer(linger_ms=0) as producer:
            for round_ in range(ROUNDS):
                for i in range(PER_ROUND):
                    for p in range(PARTITIONS):
                        meta = producer.send(TOPIC, value(p, round_, i), partition=p).result(30)
                        acked[p].append((meta.offset, value(p, round_, i)))
                assert e.flush(30)
    return acked


def store_root(data: Path) -> Path:
    return data / "objects"


def key_of(data: Path, path: Path) -> str:
    return path.relative_to(store_root(data)).as_posix()


def marker_object(data: Path) -> Path:
    [path] = [p for p in data_objects(store_root(data)) if MARKER in p.read_bytes()]
    return path


class Damage(NamedTuple):
    key: str
    what: str
    """Words the error must use for what is wrong."""


def damage_block(data: Path) -> Damage:
    [key] = damage_marker(store_root(data), MARKER)
    return Damage(key, "block checksum mismatch")


def damage_index(data: Path) -> Damage:
    path = marker_object(data)
    flip(path, index_position(path) + 8)  # the first entry's start offset
    return Damage(key_of(data, path), "index checksum mismatch")


def damage_footer(data: Path) -> Damage:
    path = marker_object(data)
    flip(path, footer_position(path))  # the index position
    return Damage(key_of(data, path), "footer checksum mismatch")


def damage_catalog_index(data: Path) -> Damage:
    path = data_objects(store_root(data))[0]  # the first upload: the catalog's
    flip(path, index_position(path) + 8)
    return Damage(key_of(data, path), "index checksum mismatch")


def newest(data: Path, folder: str) -> Path:
    records = sorted((store_root(data) / "manifest" / folder).iterdir())
    assert records, f"no manifest/{folder} records"
    return records[-1]


def damage_delta(data: Path) -> Damage:
    path = newest(data, "log")
    flip(path, path.stat().st_size // 2)
    return Damage(key_of(data, path), "manifest record checksum mismatch")


def damage_checkpoint(data: Path) -> Damage:
    path = newest(data, "checkpoint")
    flip(path, path.stat().st_size // 2)
    return Damage(key_of(data, path), "manifest record checksum mismatch")


def truncate_object(data: Path) -> Damage:
    path = marker_object(data)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # the footer is gone
    return Damage(key_of(data, path), "bad magic")


def empty_object(data: Path) -> Damage:
    path = marker_object(data)
    path.write_bytes(b"")
    return Damage(key_of(data, path), "too short for a footer")


def remove_object(data: Path) -> Damage:
    path = marker_object(data)
    path.unlink()
    return Damage(key_of(data, path), "the object store does not have it")


def truncate_delta(data: Path) -> Damage:
    path = newest(data, "log")
    path.write_bytes(path.read_bytes()[:-1])
    return Damage(key_of(data, path), "manifest record checksum mismatch")


def empty_delta(data: Path) -> Damage:
    path = newest(data, "log")
    path.write_bytes(b"")
    return Damage(key_of(data, path), "not a manifest record")


RECOVERS = "recovers"
REFUSES_OPEN = "refuses the open"
REFUSES_READ = "refuses the damaged partition's read"

DAMAGES: dict[str, tuple[Callable[[Path], Damage], str]] = {
    # The block's records left the WAL when it was uploaded: they cannot be
    # served, and the other partition in the object can.
    "data-block": (damage_block, REFUSES_READ),
    # The object also holds the partitions' state records, read at open.
    "object-index": (damage_index, REFUSES_OPEN),
    "object-footer": (damage_footer, REFUSES_OPEN),
    "catalog-object-index": (damage_catalog_index, REFUSES_OPEN),
    "object-truncated": (truncate_object, REFUSES_OPEN),
    "object-zero-length": (empty_object, REFUSES_OPEN),
    "object-missing": (remove_object, REFUSES_OPEN),
    "manifest-delta": (damage_delta, REFUSES_OPEN),
    "manifest-delta-truncated": (truncate_delta, REFUSES_OPEN),
    "manifest-delta-zero-length": (empty_delta, REFUSES_OPEN),
    # The checkpoint before it and the deltas after that rebuild the version.
    "manifest-checkpoint": (damage_checkpoint, RECOVERS),
}


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def assert_names(error: BaseException, damage: Damage) -> None:
    text = str(error)
    assert damage.key in text, f"the error does not name {damage.key}: {text}"
    assert damage.what in text, f"the error does not say {damage.what!r}: {text}"


def read_or_refuse(e: engine.Engine, partition: int, damage: Damage) -> list[Any] | None:
    """Every record of the partition, or None if the read met the damage
    (and said so, naming the object)."""
    try:
        return within_timeout(lambda: read_partition(e, TOPIC, partition))
    except engine.CorruptStoredData as error:
        assert (error.topic, error.partition) == (TOPIC, partition)
        assert_names(error, damage)
        return None


@pytest.mark.parametrize(("where", "outcome"), DAMAGES.values(), ids=DAMAGES.keys())
def test_damage_is_recovered_from_or_refused_by_name(
    tmp_path: Path, where: Callable[[Path], Damage], outcome: str
) -> None:
    data = tmp_path / "data"
    acked = write(data)
    damage = where(data)
    before = snapshot(store_root(data))
    try:
        e = within_timeout(lambda: engine.open(data, None, CONFIG))
    except engine.EngineError as error:
        assert outcome == REFUSES_OPEN, f"expected: {outcome}; the open raised {error!r}"
        assert_names(error, damage)
        if damage.key.startswith("manifest/"):
            # Refused before fencing: the open wrote nothing.
            assert snapshot(store_root(data)) == before
        return
    try:
        assert outcome != REFUSES_OPEN, "the engine opened on damage it cannot recover from"
        refused = []
        for partition in range(PARTITIONS):
            records = read_or_refuse(e, partition, damage)
            if records is None:
                refused.append(partition)
                continue
            # Read without complaint: every acknowledged record, nothing else.
            assert [(r.offset, r.value) for r in records] == acked[partition]
        assert refused == ([0] if outcome == REFUSES_READ else [])
    finally:
        e.close(flush=False)


def test_the_server_refuses_to_start_on_damage_and_says_where(tmp_path: Path) -> None:
    """``tidelog serve`` on a store it cannot recover exits with the damaged
    object's key in its log, not a traceback."""
    data = tmp_path / "data"
    write(data)
    damage = damage_catalog_index(data)
    server = ServerProcess(data)
    with pytest.raises(RuntimeError, match="exited with code 1 at start"):
        server.start()
    log = server.log()
    assert "cannot serve" in log and damage.key in log and damage.what in log, log
    assert "Traceback" not in log, log


# -- the manifest's checkpoints, as a property ------------------------------------------------


@settings(max_examples=50)
@given(
    commits=st.integers(1, 30),
    checkpoint_every=st.integers(1, 6),
    damaged=st.sets(st.integers(0, 10), max_size=3),
)
def test_damaged_checkpoints_load_the_same_state_or_refuse_naming_one(
    commits: int, checkpoint_every: int, damaged: set[int]
) -> None:
    """Whichever checkpoints are damaged (by rank, newest first), loading
    the manifest gives exactly the state it had, or raises CorruptObject
    naming a damaged checkpoint: never an older state."""
    store = MemoryStore()
    manifest = Manifest.open(store, checkpoint_every=checkpoint_every)
    for stream_id in range(commits):
        manifest.commit([["create_stream", 100 + stream_id, 0]])
    expected = load_state(store).to_wire()
    checkpoints = sorted(i.key for i in store.list(CHECKPOINT_PREFIX))
    broken = {checkpoints[-1 - rank] for rank in damaged if rank < len(checkpoints)}
    for key in broken:
        data = bytearray(store.get(key))
        data[len(data) // 2] ^= 0xFF
        store.put(key, bytes(data))
    try:
        loaded = load_state(store)
    except CorruptObject as error:
        assert error.key in broken
        return
    assert loaded.to_wire() == expected
