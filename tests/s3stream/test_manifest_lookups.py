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
from s3stream.manifest_state import ObjectMeta, RangeMeta, StreamMeta
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


def test_an_objects_ranges_are_found_by_stream_and_start_as_a_walk_finds_them() -> None:
    # A second range at one (stream, start) last: the walk finds the first.
    ranges = (*(RangeMeta(s, 7 * s, 7 * s + 3, 100) for s in range(1000)), RangeMeta(5, 35, 99, 1))
    meta = ObjectMeta(1, "objects/1", ObjectKind.STREAM_SET, 0, 0, ranges)
    for r in ranges:
        walked = next(
            x for x in ranges if (x.stream_id, x.start_offset) == (r.stream_id, r.start_offset)
        )
        assert meta.range_at[(r.stream_id, r.start_offset)] is walked
    assert (5, 36) not in meta.range_at
