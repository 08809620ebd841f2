"""Packing a map in pieces gives msgpack's own bytes for it."""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
import msgpack
from hypothesis import given

from engine import packing
from engine.packing import pack_yielding

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
