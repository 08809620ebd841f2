"""encode_entries and join_parts: an s3stream object's bytes, C against the pure twin.

For any runs of stored batches and any block size, both implementations
give the same parts (each payload of 4 KiB or more the caller's own
object, never a copy; the entry headers and smaller payloads between them
joined, one part each stretch), the same blocks with the same CRC32Cs, runs and spans; an
object encoded through either is the same bytes, and the object decoder
(s3stream/objects.py) reads every batch back from it. Bad runs raise the
same errors in both. join_parts (how a store joins an object's parts
before a PUT) gives b"".join's bytes.
"""

from __future__ import annotations

import itertools
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from native import _pure, crc32c, crc32c_combine
from s3stream import objects
from s3stream.objects import ObjectKind, StoredBatch, encode_object, parse_object
from tests.native.conftest import C_IMPL, c_impl, needs_c

IMPLS = [_pure] + ([C_IMPL] if C_IMPL else [])
COPY_BELOW = _pure._ENTRY_COPY_BELOW
payloads = st.one_of(
    st.binary(min_size=0, max_size=300),
    # Either side of the size from which a payload is its own part.
    st.integers(COPY_BELOW - 2, COPY_BELOW + 1).map(lambda n: bytes([n % 251]) * n),
).flatmap(lambda data: st.sampled_from([data, bytearray(data), memoryview(data)]))


@st.composite
def runs(draw: st.DrawFn) -> list[tuple[int, list[StoredBatch]]]:
    """Runs in (stream, offset) order, not overlapping, each of consecutive batches."""
    out: list[tuple[int, list[StoredBatch]]] = []
    stream = draw(st.integers(0, 5))
    offset = draw(st.integers(0, 2**40))
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.booleans()):
            stream += draw(st.integers(1, 3))
            offset = draw(st.integers(0, 2**40))
        else:
            offset += draw(st.integers(0, 50))  # a gap between runs of one stream
        batches = []
        for _ in range(draw(st.integers(1, 8))):
            count = draw(st.integers(1, 20))
            batches.append(StoredBatch(offset, offset + count, draw(payloads)))
            offset += count
        out.append((stream, batches))
    return out


def comparable(result: tuple[object, ...]) -> tuple[object, ...]:
    parts, size, blocks, ranges, spans = result  # type: ignore[misc]
    flat_spans = (
        None
        if spans is None
        else {key: (pos, head, bytes(payload)) for key, (pos, head, payload) in spans.items()}  # type: ignore[attr-defined]
    )
    return [bytes(p) for p in parts], size, blocks, ranges, flat_spans  # type: ignore[attr-defined]


@needs_c
@settings(max_examples=300, deadline=None)
@given(runs(), st.integers(1, 3000), st.booleans(), st.booleans())
def test_c_and_pure_lay_out_the_same_entries(
    layout: list[tuple[int, list[StoredBatch]]], block_bytes: int, with_spans: bool, copy: bool
) -> None:
    c_result = c_impl().encode_entries(layout, block_bytes, with_spans=with_spans, copy_small=copy)
    pure_result = _pure.encode_entries(layout, block_bytes, with_spans=with_spans, copy_small=copy)
    assert comparable(c_result) == comparable(pure_result)
    for parts in (c_result[0], pure_result[0]):
        assert_parts_as_laid_out(parts, [b for _, bs in layout for b in bs], copy)


def assert_parts_as_laid_out(
    parts: list[object], batches: list[StoredBatch], copy_small: bool = True
) -> None:
    """A large payload (without ``copy_small``, every payload) is the
    caller's object, never a copy, and a part of its own; everything
    between two of them (entry headers, small payloads) is one bytes part."""
    below = COPY_BELOW if copy_small else 0
    large = [b.payload for b in batches if len(b.payload) >= below]
    assert [p for p in parts if any(p is payload for payload in large)] == large
    joined = [p for p in parts if not any(p is payload for payload in large)]
    assert all(type(p) is bytes for p in joined)
    # No two joined parts side by side: a stretch is one part.
    kinds = ["large" if any(p is payload for payload in large) else "joined" for p in parts]
    assert all(not (a == b == "joined") for a, b in itertools.pairwise(kinds))
    # One stretch from the first batch, and one after each large batch but the last.
    assert len(joined) == min(len(batches), 1) + sum(
        1 for b, _ in itertools.pairwise(batches) if len(b.payload) >= below
    )


@settings(max_examples=100, deadline=None)
@given(runs(), st.integers(1, 3000))
def test_objects_from_either_are_the_same_bytes_and_decode_to_the_batches(
    layout: list[tuple[int, list[StoredBatch]]], block_bytes: int
) -> None:
    encoded = []
    for impl in IMPLS:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(objects, "encode_entries", impl.encode_entries)
            encoded.append(encode_object(ObjectKind.STREAM_SET, layout, block_bytes).data)
    assert all(data == encoded[0] for data in encoded)
    index, blocks = parse_object("key", encoded[0])
    read = [
        (info.stream_id, b.base_offset, b.end_offset, bytes(b.payload))
        for info, batches in zip(index.blocks, blocks, strict=True)
        for b in batches
    ]
    assert read == [
        (stream, b.base_offset, b.end_offset, bytes(b.payload)) for stream, bs in layout for b in bs
    ]
    assert all(
        info.size <= block_bytes or len(bs) == 1
        for info, bs in zip(index.blocks, blocks, strict=True)
    )


def with_crcs(
    layout: list[tuple[int, list[StoredBatch]]], flip: int = 0
) -> list[tuple[int, list[StoredBatch]]]:
    """The layout with each batch's payload CRC32C given (xor ``flip``)."""
    return [
        (stream, [b._replace(crc=crc32c(b.payload) ^ flip) for b in batches])
        for stream, batches in layout
    ]


@settings(max_examples=100, deadline=None)
@given(runs(), st.integers(1, 3000), st.booleans())
def test_a_known_payload_crc_is_combined_into_its_block_and_the_payload_not_read(
    layout: list[tuple[int, list[StoredBatch]]], block_bytes: int, with_spans: bool
) -> None:
    for impl in IMPLS:
        read = comparable(impl.encode_entries(layout, block_bytes, with_spans=with_spans))
        combined = comparable(
            impl.encode_entries(with_crcs(layout), block_bytes, with_spans=with_spans)
        )
        assert combined == read
        # A CRC that does not match its payload shows in its block: the
        # payload was not read for it.
        right = impl.encode_entries(layout, block_bytes)[2]
        wrong = impl.encode_entries(with_crcs(layout, flip=1), block_bytes)[2]
        assert all(w[5] != r[5] for w, r in zip(wrong, right, strict=True))


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
def test_a_wrong_payload_crc_makes_the_block_crc_the_one_it_implies(impl: ModuleType) -> None:
    header = objects.ENTRY_HEADER.pack(7, 2, 3)
    wrong = crc32c(b"abc") ^ 0xFFFF
    (block,) = impl.encode_entries([(1, [StoredBatch(7, 9, b"abc", wrong)])], 1024)[2]
    assert block[5] == crc32c_combine(crc32c(header), wrong, 3) != crc32c(header + b"abc")


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
@pytest.mark.parametrize(
    ("crc", "error"),
    [("1", TypeError), (1.0, TypeError), (-1, OverflowError), (1 << 32, OverflowError)],
)
def test_a_payload_crc_that_is_not_32_bits_is_refused(
    impl: ModuleType, crc: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        impl.encode_entries([(1, [(0, 1, b"a", crc)])], 1024)


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
def test_a_batch_that_does_not_follow_is_refused(impl: ModuleType) -> None:
    layout = [(3, [StoredBatch(0, 2, b"a"), StoredBatch(5, 6, b"b")])]
    with pytest.raises(ValueError, match=r"stream 3: batch \[5, 6\) does not follow offset 2"):
        impl.encode_entries(layout, 1024)
    with pytest.raises(ValueError, match=r"stream 3: batch \[4, 4\) does not follow offset 4"):
        impl.encode_entries([(3, [StoredBatch(4, 4, b"a")])], 1024)


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
@pytest.mark.parametrize(
    "layout",
    [
        ((1, [StoredBatch(0, 1, b"a")]),),  # not a list
        [(1, [StoredBatch(0, 1, b"a")], 3)],
        [("1", [StoredBatch(0, 1, b"a")])],
        [(1, [(0, 1)])],
        [(1, [(0, "1", b"a")])],
        [(1, [(0, 1, 5)])],
        [(1, [(0, 1, b"a", None, 0)])],
        [(1, 7)],
    ],
)
def test_malformed_runs_raise_type_error(impl: ModuleType, layout: object) -> None:
    with pytest.raises(TypeError):
        impl.encode_entries(layout, 1024)


@settings(max_examples=100, deadline=None)
@given(st.lists(payloads, max_size=20), st.integers(0, 200_000))
def test_join_parts_gives_the_bytes_of_the_parts_in_order(
    parts: list[bytes | bytearray | memoryview], large: int
) -> None:
    # A part past the size where the C copy releases the GIL.
    parts = [*parts, bytes(range(256)) * (large // 256)]
    for impl in IMPLS:
        joined = impl.join_parts(parts)
        assert type(joined) is bytes
        assert joined == b"".join(parts)


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
def test_join_parts_refuses_what_is_not_a_buffer(impl: ModuleType) -> None:
    with pytest.raises(TypeError):
        impl.join_parts([b"a", 1])
    with pytest.raises(TypeError):
        impl.join_parts(7)
