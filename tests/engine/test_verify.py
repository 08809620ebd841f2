"""Verifying partitions' hash chains from the object store
(docs/tamper-evidence.md): `tidelog verify` in a child process against a
real S3 server (moto on loopback) finds a record value edited with its CRC
recomputed; a reordered object; a restart after kill -9 continues the
chain; retention, merges and the cleaner's rewrites leave it verifiable; an
anchored head fails on a rewritten range unless rewrites are accepted."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

import native
from engine import Engine, EngineConfig
from engine.catalog import PARTS_FORMAT_VERSION, CatalogState, snapshot_part
from engine.cli.main import main
from engine.errors import CatalogDamaged
from engine.memory.uploaded_lookup import lookup_uploaded
from engine.state_parts import cut
from engine.verify import AnchorNeedsOnePartition, verify_partitions
from s3stream import StreamStore, open_store
from s3stream.chain import genesis
from s3stream.chain_hash import ChainHash
from s3stream.chain_verify import stored_payloads
from s3stream.errors import MISSING
from s3stream.manifest import load_state
from s3stream.objects import StoredBatch
from s3stream.store import LocalStore
from s3stream.uploader import OBJECT_PREFIX
from tests.engine.conftest import QUIET_STORE
from tests.engine.helpers_records import batch, child_env
from tests.engine.test_takeover import ChildEngine
from tests.s3stream import chain_doc
from tests.s3stream.forgery import Edit, forge_range
from tests.s3stream.test_missing_objects import CompactsOnFirstRead, MergesEachObjectItReads

CONFIG = EngineConfig(store=QUIET_STORE, cleaner_interval_s=3600)
TOPIC = "audit"


def _stream(e: Engine, topic: str = TOPIC, partition: int = 0) -> int:
    return e.catalog.state.topics[topic].streams[partition][0]


def _produce_in_uploads(e: Engine, uploads: list[list[bytes]], topic: str = TOPIC) -> None:
    """Each inner list becomes one upload (one committed range) of batches of one record."""
    for values in uploads:
        for value in values:
            e.produce(topic, 0, batch([value]))
        assert e.flush(30)


def _verify_cli(data_dir: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "engine", "verify", *args]
    return subprocess.run(
        [*command, "--data-dir", str(data_dir), "--object-store", url],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
        check=False,
    )


def _edit_value_keeping_crc(at: int) -> Edit:
    """Flips a bit of the last byte of the record value in the batch at
    ``at`` and recomputes the batch's CRC32C, so the batch is valid Kafka."""

    def edit(batches: list[StoredBatch]) -> list[StoredBatch]:
        out = list(batches)
        for i, b in enumerate(batches):
            if b.base_offset == at:
                payload = bytearray(b.payload)
                payload[-2] ^= 0x01  # the value's last byte; the headers count follows
                struct.pack_into(">I", payload, 17, native.crc32c(bytes(payload[21:])))
                out[i] = b._replace(payload=bytes(payload))
        return out

    return edit


def test_tidelog_verify_finds_an_edited_value_in_s3_with_its_offset(
    tmp_path: Path, s3_url: str
) -> None:
    data_dir = tmp_path / "node"
    with Engine.open(data_dir, s3_url, CONFIG) as e:
        e.create_topic(TOPIC, 1)
        _produce_in_uploads(e, [[b"decision-0", b"decision-1"], [b"approve-2"], [b"tool-3"]])
        stream = _stream(e)
        beside = _verify_cli(tmp_path / "elsewhere", s3_url, TOPIC)
        assert beside.returncode == 0, beside.stdout + beside.stderr
        _produce_in_uploads(e, [[b"still-serving-4"]])  # the verifier fenced no one
        report = e.verify(TOPIC)
    (partition,) = report.partitions
    assert report.ok and partition.verdict.end_offset == 5 and partition.verdict.from_genesis
    assert "verified offsets [0, 4)" in beside.stdout
    head = partition.verdict.head
    assert head is not None

    proven = _verify_cli(data_dir, s3_url, TOPIC)
    assert proven.returncode == 0, proven.stderr
    assert f"{TOPIC}:0: verified offsets [0, 5) from its genesis" in proven.stdout
    assert head.hex() in proven.stdout
    anchored = _verify_cli(data_dir, s3_url, f"{TOPIC}:0", "--expect-head", head.hex())
    assert anchored.returncode == 0, anchored.stdout + anchored.stderr
    wrong = _verify_cli(data_dir, s3_url, f"{TOPIC}:0", "--expect-head", "00" * 32)
    assert wrong.returncode == 1 and "not the expected" in wrong.stdout

    bucket = open_store(s3_url)
    try:
        state = load_state(bucket)
        start, end = forge_range(bucket, state, stream, 2, _edit_value_keeping_crc(2))
        assert (start, end) == (2, 3)
        stored = list(stored_payloads(bucket, load_state(bucket), stream))[2]
        native.validate_batches(stored)  # still a valid batch: its CRC matches
        assert native.decode_records(stored)[0].value == b"approve-3"
    finally:
        bucket.close()
    caught = _verify_cli(data_dir, s3_url, TOPIC)
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert f"{TOPIC}:0: BROKEN at offset 2 (range up to 3" in caught.stdout


def _upload_damaged_catalog(data_dir: Path, url: str) -> int:
    """Uploads a catalog stream that starts with the opening record of a
    snapshot in parts and lacks its second part: as a stream trimmed to
    the opening record whose part was then lost. Returns the stream's id."""
    state = CatalogState()
    state.masking_keys = {TOPIC: b"k" * 600}  # a snapshot of several parts
    body = msgpack.packb(state.to_wire(), use_bin_type=True)
    with StreamStore.open(data_dir, url, QUIET_STORE) as store:
        catalog = store.create_stream()
        store.open_stream(catalog, 0)
        parts = cut(catalog, body, 200, snapshot_part)
        assert len(parts) >= 3
        opening = msgpack.packb(["catalog", PARTS_FORMAT_VERSION, 1])
        for payload in [opening, parts[0], *parts[2:]]:
            offset = store.next_offset(catalog)
            store.append(catalog, offset, offset, payload)
        assert store.flush(30)
    return catalog


def test_verify_reports_a_catalog_whose_start_is_damaged_and_inspect_still_reads_it(
    tmp_path: Path, s3_url: str
) -> None:
    data_dir = tmp_path / "node"
    catalog = _upload_damaged_catalog(data_dir, s3_url)
    shutil.rmtree(data_dir)  # the bucket alone, as a fresh machine has it

    found = _verify_cli(tmp_path / "elsewhere", s3_url)
    assert found.returncode == 1, found.stdout + found.stderr
    assert (
        f"catalog: DAMAGED: stream {catalog}: the catalog starts with a snapshot in parts "
        "that is not whole; the catalog is damaged; its topics cannot be read, so none was "
        "verified"
    ) in found.stdout
    bucket = open_store(s3_url)
    try:
        with pytest.raises(CatalogDamaged):
            verify_partitions(bucket)
        with pytest.raises(CatalogDamaged):
            lookup_uploaded(bucket, [TOPIC], "tidelog.context", b"run-1")
    finally:
        bucket.close()

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(
            ["inspect", "manifest", "--data-dir", str(tmp_path / "elsewhere"),
             "--object-store", s3_url, "--json"]
        )  # fmt: skip
    assert status == 0, err.getvalue()
    assert "the catalog is damaged at its start" in err.getvalue()
    assert [s["name"] for s in json.loads(out.getvalue())["streams"]] == ["catalog"]


def _objects_url(data_dir: Path) -> str:
    return "file://" + str(data_dir / "objects")


def test_an_object_put_in_anothers_place_is_reported_at_its_first_offset(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    with Engine.open(data_dir, None, CONFIG) as e:
        e.create_topic(TOPIC, 1)
        _produce_in_uploads(e, [[b"a", b"b"], [b"c", b"d"], [b"e"]])
        stream = _stream(e)
        bucket = open_store(_objects_url(data_dir))
        state = load_state(bucket)
        (first, _, one), (second, _, two) = state.ranges[stream].entries[:2]
        assert (first, second) == (0, 2)
        keys = [state.objects[one].key, state.objects[two].key]
        bodies = [bucket.get(k) for k in keys]
        bucket.put(keys[0], bodies[1])  # the objects trade places
        bucket.put(keys[1], bodies[0])
        report = e.verify(TOPIC, 0)
    assert not report.ok
    (broken,) = report.partitions[0].verdict.breaks
    assert (broken.offset, broken.end_offset, broken.key) == (0, 2, keys[0])
    assert "the object keeps other links" in broken.reason


def test_a_restart_after_kill_9_continues_the_chain_over_wal_only_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    url = _objects_url(data_dir)
    child = ChildEngine(data_dir, url, tmp_path)
    try:
        assert child.call("create_topic", TOPIC, 1) == {"ok": TOPIC}
        assert child.call("produce", TOPIC, 0, "uploaded") == {"ok": 0}
        assert child.call("flush") == {"ok": True}
        for i in range(1, 4):  # acknowledged (in the fsynced WAL), never uploaded
            assert child.call("produce", TOPIC, 0, f"wal-only-{i}") == {"ok": i}
    finally:
        child.kill()
    with Engine.open(data_dir, None, CONFIG) as e:
        assert e.flush(30)
        stream = _stream(e)
        report = e.verify(TOPIC)
    verdict = report.partitions[0].verdict
    assert report.ok, verdict.breaks
    assert (verdict.start_offset, verdict.end_offset, verdict.batches) == (0, 4, 4)
    assert verdict.from_genesis  # one chain: the replayed data went on from the upload
    bucket = open_store(url)
    link = genesis(stream, 0)
    for payload in stored_payloads(bucket, load_state(bucket), stream):
        link = hashlib.sha256(link + bytes(payload)).digest()
    assert verdict.head == link


def test_retention_and_merges_leave_the_chain_verifiable_from_the_truncation_point(
    tmp_path: Path,
) -> None:
    config = EngineConfig(
        store=dataclasses.replace(QUIET_STORE, garbage_grace_s=0, small_object_bytes=1 << 20),
        cleaner_interval_s=3600,
    )
    with Engine.open(tmp_path / "node", None, config) as e:
        e.create_topic(TOPIC, 1)
        _produce_in_uploads(e, [[b"0", b"1"], [b"2", b"3"], [b"4", b"5"], [b"6", b"7"]])
        head = e.verify(TOPIC).partitions[0].verdict.head
        assert e.delete_records(TOPIC, 0, 3) == 3  # into the second upload
        assert e.flush(30)
        e.store.compact()  # drops the first object, merges the rest
        e.store.compact()
        report = e.verify(TOPIC)
        assert len(e.store.manifest.state.objects) < 4
    verdict = report.partitions[0].verdict
    assert report.ok, verdict.breaks
    assert verdict.start_offset <= 3 and verdict.start_offset >= 2
    assert (verdict.end_offset, verdict.head, verdict.from_genesis) == (8, head, False)


def test_the_cleaners_rewrite_is_reported_and_verifies(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    with Engine.open(data_dir, None, CONFIG) as e:
        e.create_topic(TOPIC, 1, {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0"})
        for value in (b"v1", b"v2", b"v3"):
            e.produce(TOPIC, 0, batch([value], key=b"same"))
            assert e.flush(30)
        e.produce(TOPIC, 0, batch([b"other"], key=b"other"))
        assert e.flush(30)
        stream = _stream(e)
        bucket = open_store(_objects_url(data_dir))
        original = [bytes(p) for p in stored_payloads(bucket, load_state(bucket), stream)]
        assert e.clean() == 1
        e.produce(TOPIC, 0, batch([b"after"], key=b"after"))
        assert e.flush(30)
        report = e.verify(TOPIC)
    verdict = report.partitions[0].verdict
    assert report.ok, verdict.breaks
    (rewrite,) = verdict.rewrites
    assert rewrite.start_offset == 0
    links = [genesis(stream, 0)]  # the original chain, link by link
    for payload in original:
        links.append(hashlib.sha256(links[-1] + payload).digest())
    assert rewrite.old_before == links[0]
    assert rewrite.old_after == links[rewrite.end_offset]
    assert verdict.from_genesis and verdict.end_offset == 5


def test_large_and_small_batches_verify_and_the_report_names_their_algorithms(
    tmp_path: Path,
) -> None:
    """Batches of 2 KiB and more are linked with BLAKE3, smaller ones with
    SHA-256, in the same ranges; verify proves the head the document's
    formulas give and names each range's algorithm, and an edited large
    value is caught at its offset."""
    data_dir = tmp_path / "node"
    values = [b"small-0", b"L" * 5000, b"small-2", b"M" * 3000]
    with Engine.open(data_dir, None, CONFIG) as e:
        e.create_topic(TOPIC, 1)
        _produce_in_uploads(e, [values[:2], values[2:]])
        stream = _stream(e)
        report = e.verify(TOPIC)
    verdict = report.partitions[0].verdict
    assert report.ok, verdict.breaks
    assert verdict.algorithms == {ChainHash.BLAKE3: 2}
    bucket = open_store(_objects_url(data_dir))
    try:
        stored = [bytes(p) for p in stored_payloads(bucket, load_state(bucket), stream)]
        assert [len(p) >= chain_doc.blake3_from_bytes() for p in stored] == [
            False,
            True,
            False,
            True,
        ]
        blake3_id = chain_doc.algorithm_ids()["BLAKE3"]
        assert verdict.head == chain_doc.extend(blake3_id, chain_doc.genesis(stream, 0), stored)
        proven = _verify_cli(data_dir, _objects_url(data_dir), TOPIC)
        assert proven.returncode == 0, proven.stdout + proven.stderr
        assert f"{TOPIC}:0: links made with BLAKE3 (2 ranges)" in proven.stdout
        state = load_state(bucket)
        assert forge_range(bucket, state, stream, 3, _edit_value_keeping_crc(3)) == (2, 4)
    finally:
        bucket.close()
    caught = _verify_cli(data_dir, _objects_url(data_dir), TOPIC)
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert f"{TOPIC}:0: BROKEN at offset 2 (range up to 4" in caught.stdout


def test_an_anchored_head_fails_on_a_rewritten_range_unless_rewrites_are_accepted(
    tmp_path: Path,
) -> None:
    """Whoever can write the bucket puts a rewrite with other records in place
    of a middle range of a topic that was never compacted, as the cleaner
    writes one (the store's own replace_range): the head stays the same, so
    an anchored verify fails on the rewrite itself, naming its offsets, and
    passes only when the auditor accepts rewrites."""
    data_dir = tmp_path / "node"
    url = _objects_url(data_dir)
    with Engine.open(data_dir, None, CONFIG) as e:
        e.create_topic(TOPIC, 2)  # partition 1 stays empty
        _produce_in_uploads(e, [[b"pay-0", b"pay-1"], [b"deny-2", b"deny-3"], [b"done-4"]])
        stream = _stream(e)
        head = e.verify(TOPIC, 0).partitions[0].verdict.head
        assert head is not None
        assert e.verify(TOPIC, 0, expect_head=head).ok  # no rewrite: anchored as before
        fake = [StoredBatch(2, 4, batch([b"approve-2", b"approve-3"], base_offset=2))]
        e.store.replace_range(stream, 2, 4, fake)
        bucket = open_store(url)
        stored = list(stored_payloads(bucket, load_state(bucket), stream))
        bucket.close()
        assert [r.value for r in native.decode_records(stored[2])] == [b"approve-2", b"approve-3"]

        unanchored = e.verify(TOPIC, 0)
        anchored = e.verify(TOPIC, 0, expect_head=head)
        accepted = e.verify(TOPIC, 0, expect_head=head, accept_rewrites=True)
        wrong_head = e.verify(TOPIC, 0, expect_head=b"\0" * 32, accept_rewrites=True)
        with pytest.raises(AnchorNeedsOnePartition):
            e.verify(TOPIC, expect_head=head)  # a head is one partition's
    (partition,) = anchored.partitions
    assert partition.verdict.ok and partition.verdict.head == head  # the chain itself holds
    assert unanchored.ok and not anchored.ok
    assert [(r.start_offset, r.end_offset) for r in partition.unaccepted_rewrites] == [(2, 4)]
    (failure,) = partition.anchor_failures()
    assert failure.startswith(f"{TOPIC}:0: offsets [2, 4) are a log cleaner's rewrite")
    assert "cannot be checked against an anchored head" in failure
    assert accepted.ok and accepted.partitions[0].anchor_failures() == []
    assert not wrong_head.ok and wrong_head.partitions[0].head_mismatch

    strict = _verify_cli(data_dir, url, f"{TOPIC}:0", "--expect-head", head.hex())
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert f"{TOPIC}:0: offsets [2, 4) were rewritten by the log cleaner" in strict.stdout
    assert f"{TOPIC}:0: offsets [2, 4) are a log cleaner's rewrite, which cannot be checked" in (
        strict.stdout
    )
    lenient = _verify_cli(
        data_dir, url, f"{TOPIC}:0", "--expect-head", head.hex(), "--accept-rewrites"
    )
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    assert f"head {head.hex()}" in lenient.stdout
    assert _verify_cli(data_dir, url, TOPIC).returncode == 0  # no anchor: the rewrite is listed
    several = _verify_cli(data_dir, url, TOPIC, "--expect-head", head.hex())
    assert several.returncode == 2
    assert "an expected head needs one partition (TOPIC:PARTITION)" in several.stderr


# -- objects gone from the bucket ------------------------------------------------------------


def test_an_object_deleted_from_under_the_manifest_is_a_break_naming_it(tmp_path: Path) -> None:
    """Removing a whole object is tampering like any other: a break at its
    first offset naming it, not a store error that says nothing was proven."""
    with Engine.open(tmp_path / "node", None, CONFIG) as e:
        e.create_topic(TOPIC, 1)
        _produce_in_uploads(e, [[b"0", b"1"], [b"2", b"3"], [b"4", b"5"]])
        data = _stream(e)
    bucket = LocalStore(tmp_path / "node" / "objects")
    state = load_state(bucket)
    start, end, object_id = state.ranges[data].entries[1]
    key = state.objects[object_id].key
    Path(bucket.root, *key.split("/")).unlink()
    report = verify_partitions(bucket, TOPIC, 0)
    assert not report.ok
    [broken] = report.partitions[0].verdict.breaks
    assert (broken.offset, broken.end_offset, broken.key) == (start, end, key)
    assert broken.reason == MISSING


MERGES_AT_ONCE = EngineConfig(
    store=dataclasses.replace(QUIET_STORE, garbage_grace_s=0, small_object_bytes=1 << 20),
    cleaner_interval_s=3600,
)
"""An engine whose merges delete their inputs at once (no grace)."""


def _three_uploads(e: Engine) -> None:
    """Offsets [0, 6) of TOPIC:0 in three uploads: three small objects."""
    e.create_topic(TOPIC, 1)
    _produce_in_uploads(e, [[b"0", b"1"], [b"2", b"3"], [b"4", b"5"]])


def test_a_proof_meeting_an_object_merged_away_meanwhile_goes_on_from_the_manifest_now(
    tmp_path: Path,
) -> None:
    """A serving engine merges the objects the proof reads and deletes the
    old ones (no grace here): the proof loads the manifest again, proves
    the merged object, and reports no break."""
    with Engine.open(tmp_path / "node", None, MERGES_AT_ONCE) as e:
        _three_uploads(e)
        before = set(e.store.manifest.state.objects)
        bucket = CompactsOnFirstRead(tmp_path / "node" / "objects")
        bucket.store = e.store
        report = verify_partitions(bucket, TOPIC, 0, catalog=e.catalog.state)
        assert bucket.compacted and not before & set(e.store.manifest.state.objects)
    verdict = report.partitions[0].verdict
    assert report.ok, verdict.breaks
    assert (verdict.start_offset, verdict.end_offset, verdict.from_genesis) == (0, 6, True)


def test_a_proof_beside_an_engine_that_merges_every_object_it_reads_ends(
    tmp_path: Path,
) -> None:
    """Each round of the proof, from a newer manifest, would meet its last
    object merged away again: the proof reads a merged-away range where the
    manifest places it now and proves it against the links it loaded,
    rather than start again until it gives up."""
    with Engine.open(tmp_path / "node", None, MERGES_AT_ONCE) as e:
        _three_uploads(e)
        before = set(e.store.manifest.state.objects)
        bucket = MergesEachObjectItReads(
            tmp_path / "node" / "objects",
            e.store,
            lambda merges: _produce_in_uploads(e, [[b"later %d" % merges]]),
        )
        report = verify_partitions(bucket, TOPIC, 0, catalog=e.catalog.state)
        assert not before & set(e.store.manifest.state.objects)
    verdict = report.partitions[0].verdict
    assert report.ok, verdict.breaks
    assert verdict.from_genesis and verdict.start_offset == 0
    assert verdict.end_offset >= 6


class MergedThenForged(LocalStore):
    """The first read of an object finds the engine has merged it away, and
    the merged object rewritten with the value at offset 2 edited."""

    def __init__(self, root: Path, engine: Engine) -> None:
        super().__init__(root)
        self.engine = engine
        self.forged = False

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        if key.startswith(OBJECT_PREFIX) and not self.forged:
            self.forged = True
            self.engine.store.compact()
            bucket = LocalStore(self.root)
            stream = _stream(self.engine)
            forge_range(bucket, load_state(bucket), stream, 2, _edit_value_keeping_crc(2))
        return super().get(key, start, end)


def test_a_merged_away_range_read_where_it_is_now_is_still_caught_if_forged(
    tmp_path: Path,
) -> None:
    """Read where the manifest places it now, the forged batch does not give
    the links the proof loaded: no proof there, and the proof from the
    newer manifest finds the break."""
    with Engine.open(tmp_path / "node", None, MERGES_AT_ONCE) as e:
        _three_uploads(e)
        bucket = MergedThenForged(tmp_path / "node" / "objects", e)
        report = verify_partitions(bucket, TOPIC, 0, catalog=e.catalog.state)
        assert bucket.forged
    [broken] = report.partitions[0].verdict.breaks
    assert broken.offset <= 2 < broken.end_offset
