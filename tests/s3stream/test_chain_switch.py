"""A stream's hash chain across the switch from SHA-256 to BLAKE3
(docs/tamper-evidence.md, "Hash algorithms"): objects and manifest ranges
as versions before BLAKE3 wrote them (format version 4 objects, links
without an algorithm) still verify; the chain goes on from their last link
with BLAKE3; a merge keeps the two apart; and a changed batch is found on
either side of the switch."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from s3stream.chain_hash import ChainHash
from s3stream.chain_verify import verify_stream
from s3stream.compaction import merge_objects
from s3stream.manifest_state import ManifestState
from s3stream.objects import ChainLinks, ObjectKind, StoredBatch
from s3stream.store import MemoryStore
from s3stream.uploader import ObjectIds, PreparedObject, add_ops, object_key, prepare_objects
from tests.s3stream import chain_doc
from tests.s3stream.forgery import flip_byte, forge_range
from tests.s3stream.test_chain import payload_lists
from tests.s3stream.test_spec import doc_object, doc_object_meta

STREAM = 7
BLOCK_BYTES = 4096
SHA256 = chain_doc.algorithm_ids()["SHA-256"]
BLAKE3 = chain_doc.algorithm_ids()["BLAKE3"]


def _batches(payloads: list[bytes], first: int) -> list[StoredBatch]:
    return [StoredBatch(first + i, first + i + 1, p) for i, p in enumerate(payloads)]


class _Stream:
    """STREAM in a bucket: uploads as an older version wrote them, then as
    this one does."""

    def __init__(self) -> None:
        self.bucket = MemoryStore()
        self.state = ManifestState()
        self.state.apply(["create_stream", STREAM, 0])
        self.ids = ObjectIds(1000)
        self.old_objects = 0
        self.link = chain_doc.genesis(STREAM, 0)
        self.end = 0

    def old_upload(self, payloads: list[bytes]) -> None:
        """An upload as a version before BLAKE3 wrote it: a version 4 object
        laid out by the document, SHA-256 links, and its range's links two
        elements with no algorithm."""
        batches = _batches(payloads, self.end)
        after = chain_doc.extend(SHA256, self.link, payloads)
        self.old_objects += 1
        key, data = self.old_object(self.old_objects, batches, self.link, after)
        self.bucket.put(key, data)
        start, end = batches[0].base_offset, batches[-1].end_offset
        wire_range = {
            "stream_id": STREAM,
            "start_offset": start,
            "end_offset": end,
            "size_bytes": len(data),
            "links": [self.link, after],
        }
        kind = int(ObjectKind.STREAM_SET)
        meta = doc_object_meta(self.old_objects, key, kind, len(data), 1, [wire_range])
        self.state.apply(["add_object", meta])
        self.link, self.end = after, end

    @staticmethod
    def old_object(
        object_id: int, batches: list[StoredBatch], before: bytes, after: bytes
    ) -> tuple[str, bytes]:
        """A version 4 object's key and bytes, laid out by the document."""
        start, end = batches[0].base_offset, batches[-1].end_offset
        links = ChainLinks(STREAM, start, end, ChainHash.SHA256, before, after)
        kind = ObjectKind.STREAM_SET
        data = doc_object(int(kind), [(STREAM, batches)], BLOCK_BYTES, [links], version=4)
        return object_key(1, object_id, kind), data

    def upload(self, payloads: list[bytes]) -> None:
        """An upload as the uploader makes it now."""
        batches = _batches(payloads, self.end)
        objects = prepare_objects(
            [(STREAM, batches)],
            state=self.state,
            epoch=2,
            ids=self.ids,
            now_ms=2,
            block_bytes=BLOCK_BYTES,
            stream_object_bytes=1 << 30,
        )
        self._commit(objects)
        self.link = chain_doc.extend(BLAKE3, self.link, payloads)
        self.end = batches[-1].end_offset

    def merge_all(self) -> None:
        merged = merge_objects(
            self.bucket,
            self.state,
            sorted(self.state.objects),
            ids=self.ids,
            now_ms=3,
            block_bytes=BLOCK_BYTES,
            stream_object_bytes=1 << 30,
        )
        self._commit(merged, [["remove_object", oid, 0] for oid in sorted(self.state.objects)])

    def _commit(self, objects: list[PreparedObject], more: Sequence[list[object]] = ()) -> None:
        """Puts the objects, then applies their additions and ``more``."""
        for prepared in objects:
            self.bucket.put(prepared.meta.key, prepared.data)
        for op in [*add_ops(objects), *more]:
            self.state.apply(op)

    def algorithms(self) -> list[ChainHash]:
        """Each range's algorithm, in offset order."""
        found = []
        for start, _, object_id in self.state.ranges[STREAM].entries:
            meta = self.state.range_meta(STREAM, start, object_id)
            assert meta is not None and meta.links is not None
            found.append(meta.links.algorithm)
        return found


def _pieces(payloads: list[bytes], cuts: list[int]) -> list[list[bytes]]:
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(payloads)}), len(payloads)]
    return [payloads[a:b] for a, b in itertools.pairwise(bounds)]


def _switched(old: list[bytes], new: list[bytes], cuts: list[int]) -> _Stream:
    stream = _Stream()
    for piece in _pieces(old, cuts):
        stream.old_upload(piece)
    for piece in _pieces(new, cuts):
        stream.upload(piece)
    return stream


cut_lists = st.lists(st.integers(0, 24), max_size=4)


@settings(max_examples=40, deadline=None)
@given(payload_lists, payload_lists, cut_lists, st.booleans())
def test_a_chain_goes_on_from_sha256_to_blake3_and_verifies(
    old: list[bytes], new: list[bytes], cuts: list[int], merged: bool
) -> None:
    stream = _switched(old, new, cuts)
    if merged:
        stream.merge_all()
    old_head = chain_doc.extend(SHA256, chain_doc.genesis(STREAM, 0), old)
    want = chain_doc.extend(BLAKE3, old_head, new)
    assert stream.link == want
    assert stream.state.chain_head(STREAM) == (len(old) + len(new), want)
    verdict = verify_stream(stream.bucket, stream.state, STREAM)
    assert verdict.ok, verdict.breaks
    assert verdict.from_genesis and verdict.head == want
    assert verdict.batches == len(old) + len(new)
    # Every object keeps links: the old ones without an algorithm, SHA-256.
    assert verdict.ranges_without_object_links == 0
    algorithms = stream.algorithms()
    assert algorithms == sorted(algorithms) and set(algorithms) == set(ChainHash)
    if merged:  # a merge joins the ranges of each side, never across the switch
        assert algorithms == [ChainHash.SHA256, ChainHash.BLAKE3]


@settings(max_examples=40, deadline=None)
@given(payload_lists, payload_lists, cut_lists, st.data())
def test_a_changed_batch_is_found_on_either_side_of_the_switch(
    old: list[bytes], new: list[bytes], cuts: list[int], data: st.DataObject
) -> None:
    stream = _switched(old, new, cuts)
    offset = data.draw(st.integers(0, len(old) + len(new) - 1))
    found = stream.state.ranges[STREAM].find(offset)
    assert found is not None
    start, end, object_id = found
    if object_id <= stream.old_objects:
        # The old object edited and laid out again as the older version did.
        meta = stream.state.range_meta(STREAM, start, object_id)
        assert meta is not None and meta.links is not None
        forged = flip_byte(offset, 0)(_batches((old + new)[start:end], start))
        key, data_ = stream.old_object(object_id, forged, meta.links.before, meta.links.after)
        stream.bucket.put(key, data_)
    else:
        forge_range(stream.bucket, stream.state, STREAM, offset, flip_byte(offset, 0))
    verdict = verify_stream(stream.bucket, stream.state, STREAM)
    assert not verdict.ok
    (broken,) = verdict.breaks
    assert (broken.offset, broken.end_offset) == (start, end)
    assert "changed" in broken.reason
