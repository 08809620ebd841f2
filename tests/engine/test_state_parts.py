"""A snapshot cut into parts (engine/state_parts.py), in each writer's
framing (the catalog's arrays, the checkpoint's maps): every part fits the
bound it was cut for, the parts in order join to the bytes cut, and
anything but the next part of the same run ends the snapshot unread."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.catalog import snapshot_part
from engine.checkpoint_records import CHUNK, PART, PART_VERSION, PARTS, checkpoints, part_packer
from engine.state_parts import Join, Pack, cut, framing
from s3stream import AppendTooLarge

END = 2**40
"""The checkpoint's ``end`` its parts name: wide, so its framing is too."""
PACKS: dict[str, Pack] = {"catalog": snapshot_part, "checkpoint": part_packer(END)}
framings = st.sampled_from(sorted(PACKS))


def _fields(record: bytes) -> tuple[object, object, object]:
    """A part's index, count and piece, read back in its writer's shape."""
    part: Any = msgpack.unpackb(record, raw=False)
    if isinstance(part, dict):
        return part[PART], part[PARTS], part[CHUNK]
    return part[1], part[2], part[3]


def _parts(name: str, body: bytes, limit: int) -> list[tuple[object, object, object]]:
    return [_fields(r) for r in cut(7, body, limit, PACKS[name])]


@given(name=framings, body=st.binary(max_size=5000), room=st.integers(1, 600))
def test_parts_fit_and_join_to_what_was_cut(name: str, body: bytes, room: int) -> None:
    limit = framing(PACKS[name]) + room
    records = cut(7, body, limit, PACKS[name])
    assert all(len(record) <= limit for record in records)
    # As large as fit: only the last piece is short.
    assert len(records) == max(1, -(-len(body) // room))
    assert all(len(_fields(r)[2]) == room for r in records[:-1])  # type: ignore[arg-type]
    joined = Join()
    joined.begin(END)
    taken = [joined.take(*_fields(r), key=END) for r in records]
    assert taken == [None] * (len(records) - 1) + [body]
    assert joined.joined == 1


@given(name=framings, body=st.binary(max_size=300), room=st.integers(1, 600))
def test_a_least_count_is_kept_and_joins_all_the_same(name: str, body: bytes, room: int) -> None:
    limit = framing(PACKS[name]) + room
    records = cut(7, body, limit, PACKS[name], least=2)
    assert len(records) >= 2 and all(len(record) <= limit for record in records)
    joined = Join()
    joined.begin()
    assert [joined.take(*_fields(r)) for r in records][-1] == body


@pytest.mark.parametrize("name", sorted(PACKS))
def test_a_bound_no_larger_than_a_parts_framing_is_refused(name: str) -> None:
    with pytest.raises(AppendTooLarge):
        cut(7, b"x" * 10, framing(PACKS[name]), PACKS[name])


def test_the_framing_is_each_writers_own() -> None:
    # Array of a short string and two uint32, then a bin32 header.
    assert framing(snapshot_part) == 1 + 1 + len("snapshot_part") + 5 + 5 + 5
    # A map of five: v, end (here a uint64), part, parts, chunk.
    assert framing(part_packer(END)) == 1 + 2 + 1 + 4 + 9 + 5 + 5 + 6 + 5 + 6 + 5
    assert framing(part_packer(20)) < framing(part_packer(END))


@given(
    body=st.binary(min_size=200, max_size=2000),
    cut_as=st.sampled_from(
        ["missing", "repeated", "other count", "other key", "ended", "no opening"]
    ),
    at=st.integers(1, 100),
)
def test_anything_but_the_next_part_ends_the_snapshot_unread(
    body: bytes, cut_as: str, at: int
) -> None:
    parts = _parts("catalog", body, 100)
    at = at % (len(parts) - 1) + 1
    joined = Join()
    if cut_as != "no opening":
        joined.begin("k")
    for part in parts[:at]:
        assert joined.take(*part, key="k") is None
    key = "k"
    if cut_as == "missing":
        rest = parts[at + 1 :]
    elif cut_as == "repeated":
        rest = [parts[at - 1], *parts[at:]]
    elif cut_as == "other count":
        rest = [(at, len(parts) + 1, b"x"), *parts[at + 1 :]]
    elif cut_as == "other key":
        key = "another"
        rest = parts[at:]
    else:
        joined.end()
        rest = parts[at:]
    assert [joined.take(*part, key=key) for part in rest] == [None] * len(rest)
    if rest:  # nor does the run go on after what ended it
        assert [joined.take(*p, key="k") for p in parts[at:]] == [None] * (len(parts) - at)
    assert joined.joined == 0
    joined.begin("k")  # a whole snapshot after it is taken
    assert [joined.take(*part, key="k") for part in parts][-1] == body


def test_a_part_of_another_shape_is_refused() -> None:
    joined = Join()
    joined.begin()
    with pytest.raises(ValueError):
        joined.take(0, 1, "text, not bytes")
    with pytest.raises(ValueError):
        joined.take(0, 2**40, 12)  # a count names no bytes to make
    with pytest.raises(ValueError):
        joined.take("0", 1, b"x")


def test_a_checkpoint_part_naming_bytes_it_does_not_hold_is_refused() -> None:
    # A chunk that is a number would have been made into that many bytes.
    part = {"v": PART_VERSION, "end": 5, PART: 0, PARTS: 2, CHUNK: 2**40}
    with pytest.raises(ValueError):
        list(checkpoints([part], "p"))
