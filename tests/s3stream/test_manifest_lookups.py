"""The manifest state's quick paths give what the general ones give.

An upload of a thousand streams' small batches reads back a thousand
ranges' links, copies a thousand streams' entries and finds a thousand
chain heads in one object: each of those has a quick path, held here to
the general one it stands in for."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from s3stream.chain import RangeLinks
from s3stream.chain_hash import ChainHash
from s3stream.manifest_entries import ObjectMeta, RangeMeta, StreamMeta
from s3stream.objects import ObjectKind


class _Wire(list[Any]):
    """A list that is not exactly a list: from_wire takes its general path."""


def _outcome(raw: Any) -> object:
    try:
        return RangeLinks.from_wire(raw)
    except Exception as error:  # the same error type and words either way
        return (type(error), str(error))


link = st.one_of(
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=31, max_size=33),
    st.binary(min_size=32, max_size=32).map(bytearray),
    st.just("x" * 32),
)
algorithm = st.one_of(st.integers(-1, 4), st.booleans(), st.just(2.0), st.just(b"\x02"))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(link, algorithm), min_size=0, max_size=6), link, link, algorithm)
def test_links_read_back_as_the_general_path_reads_them(
    other: list[Any], before: Any, after: Any, made_with: Any
) -> None:
    for raw in (other, [before, after, made_with]):
        assert _outcome(list(raw)) == _outcome(_Wire(raw))


def test_a_stream_copy_has_every_field() -> None:
    values = {f.name: 11 + i for i, f in enumerate(dataclasses.fields(StreamMeta))}
    stream = StreamMeta(**values)
    copied = stream.copy()
    assert copied is not stream
    assert dataclasses.asdict(copied) == values


def _walked(ranges: tuple[RangeMeta, ...], stream_id: int, start: int) -> RangeMeta | None:
    return next((x for x in ranges if (x.stream_id, x.start_offset) == (stream_id, start)), None)


def test_an_objects_ranges_are_found_by_stream_and_start_as_a_walk_finds_them() -> None:
    # Two ranges at one (stream, start): the walk finds the first.
    ranges = (
        *(RangeMeta(s, 7 * s, 7 * s + 3, 100) for s in range(5)),
        RangeMeta(5, 35, 38, 100),
        RangeMeta(5, 35, 99, 1),
        *(RangeMeta(s, 7 * s, 7 * s + 3, 100) for s in range(6, 1000)),
    )
    meta = ObjectMeta(1, "objects/1", ObjectKind.STREAM_SET, 0, 0, ranges)
    for r in ranges:
        assert meta.range_at(r.stream_id, r.start_offset) is _walked(
            ranges, r.stream_id, r.start_offset
        )
    assert meta.range_at(5, 36) is None
    assert meta.range_at(1000, 7000) is None
    assert meta.range_at(-1, 0) is None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=20),
    st.booleans(),
    st.tuples(st.integers(-1, 7), st.integers(-1, 7)),
)
def test_a_range_is_found_as_a_walk_finds_it_in_any_order(
    keys: list[tuple[int, int]], in_order: bool, asked: tuple[int, int]
) -> None:
    # Objects written here are in order; one that is not (an older writer's)
    # is still answered as the walk answers, only by the walk.
    if in_order:
        keys.sort()
    ranges = tuple(RangeMeta(s, o, o + 1, i) for i, (s, o) in enumerate(keys))
    meta = ObjectMeta(1, "objects/1", ObjectKind.STREAM_SET, 0, 0, ranges)
    for stream_id, start in [*keys, asked]:
        assert meta.range_at(stream_id, start) is _walked(ranges, stream_id, start)


def test_finding_a_range_keeps_nothing_per_range() -> None:
    ranges = tuple(RangeMeta(s, 0, 1, 1) for s in range(1000))
    meta = ObjectMeta(1, "objects/1", ObjectKind.STREAM_SET, 0, 0, ranges)
    for r in ranges:
        meta.range_at(r.stream_id, 0)
    # One flag (whether the ranges are in order), not an index of them: the
    # object is its fields, and has no __dict__ to keep one in.
    assert meta.in_order is True and not hasattr(meta, "__dict__")
    assert all(not isinstance(v, (dict, list, tuple)) or v is meta.ranges for v in meta)
    assert meta.ranges == ranges


def test_two_ranges_of_one_key_that_do_not_compare_are_found_by_the_walk() -> None:
    # The same stream, offsets and size, one with chain links and one
    # without: the ranges compare as far as their links, which do not.
    links = RangeLinks(ChainHash.SHA256, b"a" * 32, b"b" * 32)
    ranges = (RangeMeta(1, 0, 3, 10, links), RangeMeta(1, 0, 3, 10), RangeMeta(2, 0, 3, 10))
    meta = ObjectMeta(1, "objects/1", ObjectKind.STREAM_SET, 0, 0, ranges)
    assert meta.in_order is False
    assert meta.range_at(1, 0) is ranges[0] and meta.range_at(2, 0) is ranges[2]
