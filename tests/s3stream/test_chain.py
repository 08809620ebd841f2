"""The hash chain over a stream's stored batches: links kept with each
object range, continued across uploads, merges and retention, started
afresh (and recorded) by a cleaner's rewrite, and proven by verify_stream
from the objects alone (docs/tamper-evidence.md)."""

from __future__ import annotations

import hashlib
import itertools
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from s3stream import chain
from s3stream.chain_hash import BLAKE3_FROM_BYTES, ChainHash
from s3stream.chain_verify import StreamVerdict, verify_stream
from s3stream.compaction import merge_objects
from s3stream.manifest_state import ManifestState
from s3stream.objects import StoredBatch
from s3stream.replacing import replace_range
from s3stream.store import MemoryStore
from s3stream.uploader import ObjectIds, add_ops, prepare_objects
from tests.s3stream import chain_doc
from tests.s3stream.forgery import drop_renumbered, flip_byte, forge_range, swap_payloads

STREAM = 7
OTHER = 8


class _Writer:
    """Just enough of a ManifestWriter for replace_range: commits apply at once."""

    def __init__(self, state: ManifestState) -> None:
        self.serial = threading.Lock()
        self.manifest = self
        self.state = state
        self.epoch = 1

    def commit(self, ops: list[list[object]]) -> ManifestState:
        for op in ops:
            self.state.apply(op)
        return self.state


def _batches(payloads: list[bytes], first: int = 0) -> list[StoredBatch]:
    return [StoredBatch(first + i, first + i + 1, p) for i, p in enumerate(payloads)]


def _upload(
    bucket: MemoryStore, state: ManifestState, ids: ObjectIds, batches: list[StoredBatch]
) -> None:
    """One upload of the log cache: the stream's batches and a neighbour's."""
    neighbour = _batches([b"n" * 3], state.streams[OTHER].end_offset)
    objects = prepare_objects(
        [(STREAM, batches), (OTHER, neighbour)],
        state=state,
        epoch=1,
        ids=ids,
        now_ms=1,
        block_bytes=64,
        stream_object_bytes=1 << 20,
    )
    for prepared in objects:
        bucket.put(prepared.meta.key, prepared.data)
    for op in add_ops(objects):
        state.apply(op)


def _stored(payloads: list[bytes], cuts: list[int]) -> tuple[MemoryStore, ManifestState, ObjectIds]:
    """The payloads of STREAM uploaded in pieces split at ``cuts``."""
    bucket = MemoryStore()
    state = ManifestState()
    state.apply(["create_stream", STREAM, 0])
    state.apply(["create_stream", OTHER, 0])
    ids = ObjectIds(1)
    batches = _batches(payloads)
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(batches))), len(batches)]
    for begin, end in itertools.pairwise(bounds):
        _upload(bucket, state, ids, batches[begin:end])
    return bucket, state, ids


def _head(payloads: list[bytes]) -> bytes:
    """The link after the payloads from the stream's genesis, as uploads
    link them now (the document's formulas, written out)."""
    blake3_id = chain_doc.algorithm_ids()["BLAKE3"]
    return chain_doc.extend(blake3_id, chain_doc.genesis(STREAM, 0), payloads)


def payloads_of(lengths: st.SearchStrategy[int]) -> st.SearchStrategy[bytes]:
    """Batches of the lengths drawn, a few seed bytes repeated to fill them."""
    return st.tuples(lengths, st.binary(min_size=1, max_size=8)).map(
        lambda shape: (shape[1] * shape[0])[: shape[0]]
    )


# Small batches, and some past BLAKE3's size rule (BLAKE3_FROM_BYTES).
payload_lists = st.lists(
    payloads_of(st.sampled_from([1, 5, 40, 2048, 3000])), min_size=1, max_size=24
)
cut_lists = st.lists(st.integers(0, 24), max_size=6)


@settings(max_examples=60, deadline=None)
@given(payload_lists, cut_lists)
def test_any_split_into_uploads_gives_the_same_head(payloads: list[bytes], cuts: list[int]) -> None:
    bucket, state, _ = _stored(payloads, cuts)
    want = _head(payloads)  # the spec's formula, written out
    assert state.chain_head(STREAM) == (len(payloads), want)
    verdict = verify_stream(bucket, state, STREAM)
    assert verdict.ok, verdict.breaks
    assert (verdict.start_offset, verdict.end_offset, verdict.head) == (0, len(payloads), want)
    assert verdict.from_genesis and verdict.batches == len(payloads)


def _broken_at(verdict: StreamVerdict) -> tuple[int, int]:
    assert not verdict.ok
    (broken,) = verdict.breaks
    return broken.offset, broken.end_offset


@settings(max_examples=60, deadline=None)
@given(payload_lists, cut_lists, st.data())
def test_a_changed_byte_is_caught_in_the_range_that_holds_it(
    payloads: list[bytes], cuts: list[int], data: st.DataObject
) -> None:
    bucket, state, _ = _stored(payloads, cuts)
    offset = data.draw(st.integers(0, len(payloads) - 1))
    start, end = forge_range(bucket, state, STREAM, offset, flip_byte(offset, 0))
    assert _broken_at(verify_stream(bucket, state, STREAM)) == (start, end)


@settings(max_examples=60, deadline=None)
@given(payload_lists, cut_lists, st.data())
def test_swapped_batches_are_caught_in_the_range_that_holds_them(
    payloads: list[bytes], cuts: list[int], data: st.DataObject
) -> None:
    bucket, state, _ = _stored(payloads, cuts)
    found = state.ranges[STREAM].find(data.draw(st.integers(0, len(payloads) - 1)))
    assert found is not None
    start, end, _ = found
    candidates = [o for o in range(start, end - 1) if payloads[o] != payloads[o + 1]]
    if not candidates:
        return  # swapping equal batches changes nothing
    offset = data.draw(st.sampled_from(candidates))
    forge_range(bucket, state, STREAM, offset, swap_payloads(offset))
    assert _broken_at(verify_stream(bucket, state, STREAM)) == (start, end)


@settings(max_examples=40, deadline=None)
@given(payload_lists.filter(lambda p: len(p) > 1), cut_lists, st.data())
def test_a_removed_batch_is_caught_at_its_offset(
    payloads: list[bytes], cuts: list[int], data: st.DataObject
) -> None:
    bucket, state, _ = _stored(payloads, cuts)
    found = state.ranges[STREAM].find(data.draw(st.integers(0, len(payloads) - 1)))
    assert found is not None
    start, end, _ = found
    if end - start < 2:
        return  # a range of one batch cannot lose one and keep its bounds
    offset = data.draw(st.integers(start, end - 2))
    forge_range(bucket, state, STREAM, offset, drop_renumbered(offset))
    verdict = verify_stream(bucket, state, STREAM)
    # The renumbered batches no longer reach the range's end.
    assert _broken_at(verdict) == (end - 1, end)
    assert "missing" in verdict.breaks[0].reason


def test_a_removed_range_breaks_the_chain_where_it_was() -> None:
    payloads = [bytes([i]) * 5 for i in range(9)]
    bucket, state, _ = _stored(payloads, [3, 6])
    start, _, object_id = state.ranges[STREAM].find(3) or (0, 0, 0)
    # Hide the middle range: offsets shift down over it in a forged manifest.
    state.ranges[STREAM].remove(start, object_id)
    verdict = verify_stream(bucket, state, STREAM)
    assert _broken_at(verdict) == (6, 9)
    assert "does not go on" in verdict.breaks[0].reason


def test_verification_starts_at_the_truncation_point_after_retention_and_merges() -> None:
    payloads = [bytes([i]) * 7 for i in range(12)]
    bucket, state, ids = _stored(payloads, [4, 8])
    state.apply(["trim", STREAM, 6])  # retention moves the log start into the second range
    merged = merge_objects(
        bucket,
        state,
        sorted(state.objects),
        ids=ids,
        now_ms=2,
        block_bytes=64,
        stream_object_bytes=1 << 20,
    )
    for prepared in merged:
        bucket.put(prepared.meta.key, prepared.data)
    ops = add_ops(merged) + [["remove_object", oid, 0] for oid in sorted(state.objects)]
    for op in ops:
        state.apply(op)
    verdict = verify_stream(bucket, state, STREAM)
    assert verdict.ok, verdict.breaks
    assert (verdict.start_offset, verdict.end_offset) == (6, 12)
    assert verdict.head == _head(payloads) and not verdict.from_genesis
    assert state.chain_head(STREAM) == (12, _head(payloads))


def test_a_cleaners_rewrite_is_reported_and_the_chain_goes_on() -> None:
    payloads = [bytes([i]) * 6 for i in range(9)]
    bucket, state, ids = _stored(payloads, [3, 6])
    writer = _Writer(state)
    kept = _batches([payloads[4]], 4) + _batches([payloads[5]], 5)
    replace_range(writer, bucket, ids, 64, STREAM, 0, 3, 6, kept)  # type: ignore[arg-type]
    _upload(bucket, state, ids, _batches([b"after"], 9))
    verdict = verify_stream(bucket, state, STREAM)
    assert verdict.ok, verdict.breaks
    (rewrite,) = verdict.rewrites
    old_before = _head(payloads[:3])
    old_after = _head(payloads[:6])
    assert rewrite == (3, 6, old_before, old_after)
    assert verdict.head == hashlib.sha256(_head(payloads) + b"after").digest()


def test_verification_from_an_offset_starts_at_the_range_holding_it() -> None:
    payloads = [bytes([i]) * 4 for i in range(9)]
    bucket, state, _ = _stored(payloads, [3, 6])
    forge_range(bucket, state, STREAM, 1, flip_byte(1, 0))  # before the start asked for
    verdict = verify_stream(bucket, state, STREAM, from_offset=4)
    assert verdict.ok, verdict.breaks
    assert (verdict.start_offset, verdict.end_offset, verdict.batches) == (3, 9, 6)
    assert verdict.head == _head(payloads) and not verdict.from_genesis
    assert not verify_stream(bucket, state, STREAM).ok


@given(st.integers(0, 2**63 - 1), st.integers(0, 2**62), st.binary(min_size=32, max_size=32))
def test_the_genesis_links_are_the_documents_formulas(
    stream_id: int, offset: int, link: bytes
) -> None:
    assert chain.genesis(stream_id, offset) == chain_doc.genesis(stream_id, offset)
    end = offset + 7
    assert (
        chain.rewrite_genesis(stream_id, offset, end, link, link[::-1])
        == hashlib.sha256(
            chain_doc.tag("rewrite")
            + chain_doc.int64(stream_id)
            + chain_doc.int64(offset)
            + chain_doc.int64(end)
            + link
            + link[::-1]
        ).digest()
    )


def test_the_algorithms_are_the_documents() -> None:
    assert {
        ChainHash[name.replace("-", "")]: v for name, v in chain_doc.algorithm_ids().items()
    } == {h: h.value for h in ChainHash}
    assert chain_doc.blake3_from_bytes() == BLAKE3_FROM_BYTES


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(list(ChainHash)),
    st.binary(min_size=32, max_size=32),
    # Lengths about the size rule, and a few of BLAKE3's 1 KiB chunks.
    st.lists(payloads_of(st.sampled_from([0, 1, 31, 1024, 2047, 2048, 2049, 9000])), max_size=6),
)
def test_each_algorithm_links_as_the_documents_table_says(
    algorithm: ChainHash, link: bytes, payloads: list[bytes]
) -> None:
    batches = _batches(payloads)
    assert chain.extend(algorithm, link, batches) == chain_doc.extend(
        algorithm.value, link, payloads
    )
