"""Packing a map in pieces gives msgpack's own bytes for it."""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
import msgpack
from hypothesis import given

from engine import packing
from engine.packing import pack_yielding
from tests.long_runs import costly_under_ci

leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.text(max_size=5),
    st.binary(max_size=5), st.floats(allow_nan=False),
)  # fmt: skip
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=10,
)
keys = st.one_of(st.text(max_size=4), st.integers(-(2**63), 2**63 - 1))
containers = st.one_of(
    st.lists(values, max_size=40),
    st.dictionaries(keys, values, max_size=40),
    values,
)


# 100 examples under ci: an example draws up to some 2,400 nested leaves
# (25 ms of drawing), and six bugs planted one at a time in pack_yielding
# (a chunk one element short, a map's last chunk dropped, a wrong array
# header, an int key past the third chunk changed, a value under an empty
# key replaced, a long list stepped CHUNK + 1) were each found at 100
# examples with every seed tried (3), as at 500.
@costly_under_ci(100)
@given(st.dictionaries(st.text(max_size=8), containers, max_size=6), st.integers(1, 8))
def test_a_map_packed_in_pieces_is_msgpacks_own_bytes(value: dict[str, Any], chunk: int) -> None:
    saved = packing.CHUNK
    packing.CHUNK = chunk  # chunks smaller than the lists drawn
    try:
        packed = pack_yielding(value)
    finally:
        packing.CHUNK = saved
    assert bytes(packed) == msgpack.packb(value, use_bin_type=True)


def test_a_list_past_16_bits_of_elements_gets_msgpacks_widest_header() -> None:
    value = {"acls": list(range(70_000)), "map": {str(i): i for i in range(70_000)}}
    assert bytes(pack_yielding(value)) == msgpack.packb(value, use_bin_type=True)
