"""Users' credentials in the catalog: the ``user_credentials`` record's
bytes (golden), its round trip through records and snapshots, and users
kept by a fresh engine on the same store."""

from __future__ import annotations

from pathlib import Path

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine.catalog import CatalogState
from engine.credentials import MECHANISMS, ScramCredential, new_credential

GOLDEN = ScramCredential(b"s" * 4, b"k" * 4, b"v" * 4, 4096)
GOLDEN_RECORD = bytes.fromhex(
    "94b0757365725f63726564656e7469616c73a5616c696365ad534352414d2d5348412d353132"
    "94c40473737373c4046b6b6b6bc40476767676cd1000"
)
"""["user_credentials", "alice", "SCRAM-SHA-512", [salt, stored_key,
server_key, 4096]] as msgpack (docs/engine-format.md)."""


def test_the_record_is_as_the_document_lays_it_out() -> None:
    record = ["user_credentials", "alice", "SCRAM-SHA-512", GOLDEN.to_wire()]
    assert msgpack.packb(record, use_bin_type=True) == GOLDEN_RECORD
    state = CatalogState()
    state.apply(msgpack.unpackb(GOLDEN_RECORD, raw=False))
    assert state.credentials == {"alice": {"SCRAM-SHA-512": GOLDEN.to_wire()}}


credentials = st.builds(
    ScramCredential,
    st.binary(min_size=1, max_size=32),
    st.binary(min_size=32, max_size=64),
    st.binary(min_size=32, max_size=64),
    st.integers(4096, 16384),
)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["alice", "bob", "carol"]),
            st.sampled_from(MECHANISMS),
            st.none() | credentials,
        ),
        max_size=12,
    )
)
def test_records_and_snapshots_agree(
    changes: list[tuple[str, str, ScramCredential | None]],
) -> None:
    state = CatalogState()
    expected: dict[tuple[str, str], ScramCredential] = {}
    for user, mechanism, credential in changes:
        wire = None if credential is None else credential.to_wire()
        packed = msgpack.packb(["user_credentials", user, mechanism, wire], use_bin_type=True)
        state.apply(msgpack.unpackb(packed, raw=False))
        if credential is None:
            expected.pop((user, mechanism), None)
        else:
            expected[(user, mechanism)] = credential
    snapshot = msgpack.packb(["snapshot", state.to_wire()], use_bin_type=True)
    restored = CatalogState()
    restored.apply(msgpack.unpackb(snapshot, raw=False, strict_map_key=False))
    for read in (state, restored):
        found = {
            (user, mechanism): ScramCredential.from_wire(raw)
            for user, mechanisms in read.credentials.items()
            for mechanism, raw in mechanisms.items()
        }
        assert found == expected


def test_a_fresh_engine_on_the_same_store_knows_the_users(tmp_path: Path) -> None:
    objects = f"file://{tmp_path / 'objects'}"
    with engine.open(tmp_path / "first", objects) as e:
        e.credentials.add("alice", "SCRAM-SHA-256", "pencil")
        kept = e.credentials.get("alice", "SCRAM-SHA-256")
    with engine.open(tmp_path / "second", objects) as e:
        assert e.credentials.get("alice", "SCRAM-SHA-256") == kept
        assert e.credentials.users() == ["alice"]
    assert kept is not None and kept != new_credential("SCRAM-SHA-256", "pencil")  # salted afresh
