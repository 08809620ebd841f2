"""An algorithm's or an object kind's id in the manifest's entries that names
none this version knows (a damaged manifest, or a float or a bool where an id
belongs) is refused where it is read, with the manifest's CorruptObject, and
by the entries' constructors; the entries' repr names the algorithm and the
kind (docs/design/0158)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3stream.chain import RangeLinks
from s3stream.chain_hash import ChainHash, UnknownChainHash
from s3stream.checkpoint_reading import read_checkpoint
from s3stream.errors import CorruptObject
from s3stream.manifest import Manifest, load_state
from s3stream.manifest_entries import ObjectMeta, RangeMeta, UnknownObjectKind
from s3stream.manifest_records import (
    HEADER_SIZE,
    decode_record,
    delta_key,
    encode_record,
    framed_record,
)
from s3stream.manifest_state import ManifestState
from s3stream.objects import ObjectKind
from s3stream.store import MemoryStore

LINK = bytes(range(32))

# What a damaged id can be: an int naming nothing, or a value that is no id.
not_an_id = st.one_of(
    st.integers(-(2**63), 2**64 - 1).filter(lambda i: i not in (1, 2)),
    st.booleans(),
    st.floats(allow_nan=False),
    st.text(max_size=4),
    st.none(),
)


def _object_wire(kind: Any, algorithm: Any) -> list[Any]:
    return [7, "objects/7", kind, 100, 0, [[1, 0, 10, 100, [LINK, LINK, algorithm]]]]


def _state_with(object_wire: list[Any]) -> dict[str, Any]:
    state = ManifestState()
    state.apply(["create_stream", 1, 0])
    wire: dict[str, Any] = state.to_wire()
    wire["objects"] = [object_wire]
    return wire


@given(bad=not_an_id, in_kind=st.booleans())
def test_a_checkpoint_naming_no_known_kind_or_algorithm_is_refused_as_read(
    bad: object, in_kind: bool
) -> None:
    wire = _object_wire(bad, 1) if in_kind else _object_wire(1, bad)
    body = msgpack.packb(_state_with(wire), use_bin_type=True)
    with pytest.raises(CorruptObject, match="undecodable manifest checkpoint"):
        read_checkpoint("checkpoint", framed_record(body), HEADER_SIZE, keep=True)


@given(bad=not_an_id, in_kind=st.booleans())
def test_a_delta_naming_no_known_kind_or_algorithm_is_refused_at_open(
    bad: object, in_kind: bool
) -> None:
    store = MemoryStore()
    manifest = Manifest.open(store, checkpoint_every=1000)
    manifest.commit([["create_stream", 1, 0]])
    manifest.commit([["add_object", _object_wire(1, 1)]])
    # The last delta damaged where its checksum still holds: rewritten whole.
    key = delta_key(manifest.state.seq)
    delta = decode_record(key, store.get(key))
    delta["ops"][0][1] = _object_wire(bad, 1) if in_kind else _object_wire(1, bad)
    store.put(key, encode_record(delta))
    with pytest.raises(CorruptObject, match="undecodable manifest delta"):
        load_state(store)
    with pytest.raises(CorruptObject, match="undecodable manifest delta"):
        Manifest.open(store)


@pytest.mark.parametrize("bad", [0, 3, 2.0, True, False, "STREAM", None])
def test_an_object_is_made_only_of_a_known_kind(bad: Any) -> None:
    with pytest.raises(UnknownObjectKind):
        ObjectMeta(1, "k", bad, 0, 0, ())
    made = ObjectMeta(1, "k", ObjectKind.STREAM, 0, 0, ())
    with pytest.raises(UnknownObjectKind):
        made._replace(kind_id=bad)
    assert ObjectMeta(1, "k", 2, 0, 0, ()).kind is ObjectKind.STREAM


@pytest.mark.parametrize("bad", [0, 3, 1.0, True, False, "SHA256", None])
def test_links_are_made_only_of_a_known_algorithm(bad: Any) -> None:
    with pytest.raises(UnknownChainHash):
        RangeLinks(bad, LINK, LINK)
    made = RangeLinks(ChainHash.BLAKE3, LINK, LINK)
    with pytest.raises(UnknownChainHash):
        made._replace(algorithm_id=bad)
    assert RangeLinks(1, LINK, LINK).algorithm is ChainHash.SHA256


def test_the_entries_repr_names_the_kind_and_the_algorithm() -> None:
    links = RangeLinks(ChainHash.BLAKE3, LINK, LINK)
    ranged = RangeMeta(1, 0, 10, 100, links)
    meta = ObjectMeta(7, "objects/7", ObjectKind.STREAM_SET, 100, 0, (ranged,))
    assert "algorithm=BLAKE3" in repr(links) and "algorithm_id" not in repr(links)
    assert "kind=STREAM_SET" in repr(meta) and "kind_id" not in repr(meta)
    assert "algorithm=BLAKE3" in repr(meta)
