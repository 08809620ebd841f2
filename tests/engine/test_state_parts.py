"""A snapshot cut into parts (engine/state_parts.py): every part fits the
bound it was cut for, the parts in order join to the bytes cut, and
anything but the next part ends the snapshot unread."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.state_parts import JoinedParts, part_framing, part_records
from s3stream import AppendTooLarge

KIND = "snapshot_part"


def _parts(body: bytes, limit: int) -> list[list[object]]:
    return [msgpack.unpackb(p, raw=False) for p in part_records(7, KIND, body, limit)]


@given(body=st.binary(min_size=1, max_size=5000), limit=st.integers(31, 600))
def test_parts_fit_and_join_to_what_was_cut(body: bytes, limit: int) -> None:
    records = part_records(7, KIND, body, limit)
    assert all(len(record) <= limit for record in records)
    joined = JoinedParts()
    joined.begin()
    taken = [joined.take(msgpack.unpackb(r, raw=False)) for r in records]
    assert taken == [None] * (len(records) - 1) + [body]
    assert joined.joined == 1


def test_a_bound_no_larger_than_a_parts_framing_is_refused() -> None:
    with pytest.raises(AppendTooLarge):
        part_records(7, KIND, b"x" * 10, part_framing(KIND))


@given(
    body=st.binary(min_size=200, max_size=2000),
    cut=st.sampled_from(["missing", "repeated", "other count", "ended", "no opening"]),
    at=st.integers(1, 100),
)
def test_anything_but_the_next_part_ends_the_snapshot_unread(
    body: bytes, cut: str, at: int
) -> None:
    parts = _parts(body, 100)
    at = at % (len(parts) - 1) + 1
    joined = JoinedParts()
    if cut != "no opening":
        joined.begin()
    for part in parts[:at]:
        assert joined.take(part) is None
    if cut == "missing":
        rest = parts[at + 1 :]
    elif cut == "repeated":
        rest = [parts[at - 1], *parts[at:]]
    elif cut == "other count":
        rest = [[KIND, at, len(parts) + 1, b"x"], *parts[at + 1 :]]
    else:
        joined.end()
        rest = parts[at:]
    assert [joined.take(part) for part in rest] == [None] * len(rest)
    assert joined.joined == 0
    joined.begin()  # a whole snapshot after it is taken
    assert [joined.take(part) for part in parts][-1] == body


def test_a_part_of_another_shape_is_refused() -> None:
    joined = JoinedParts()
    joined.begin()
    with pytest.raises(ValueError):
        joined.take([KIND, 0, 1])
    with pytest.raises(ValueError):
        joined.take([KIND, 0, 1, "text, not bytes"])
