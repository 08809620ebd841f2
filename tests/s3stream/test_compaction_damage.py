"""Compaction meeting damage: an input object that is damaged (a flipped
byte, cut short, emptied) or gone is left as it is, named in the log, and
never removed from the manifest by a merge; the other objects are merged
and the garbage collected as before, pass after pass."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from s3stream import StreamStore
from s3stream.errors import CorruptObject
from s3stream.manifest_entries import ObjectMeta
from s3stream.manifest_records import delta_key
from s3stream.manifest_state import ManifestState
from s3stream.objects import FOOTER_SIZE, read_index
from s3stream.store import LocalStore, ObjectStoreError
from s3stream.uploader import OBJECT_PREFIX
from tests.s3stream.faults import FailsOneHead
from tests.s3stream.test_compaction import CONFIG, uploads
from tests.s3stream.test_stream_store import expected, new_stream, read_all

ROUNDS = 8
PER_ROUND = 2  # appends per stream and round, 3 offsets each


def flip_first_block(path: Path) -> None:
    """Inverts a byte in the middle of the object's first data block."""
    data = bytearray(path.read_bytes())
    index = read_index(path.name, bytes(data), len(data))
    assert not isinstance(index, int)
    first = index.blocks[0]
    data[first.position + first.size // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: -FOOTER_SIZE // 2])


def empty(path: Path) -> None:
    path.write_bytes(b"")


def remove(path: Path) -> None:
    path.unlink()


DAMAGES: dict[str, Callable[[Path], None]] = {
    "flipped-byte": flip_first_block,
    "truncated": cut_short,
    "zero-length": empty,
    "missing": remove,
}


def object_keys(bucket: LocalStore) -> set[str]:
    return {info.key for info in bucket.list(OBJECT_PREFIX)}


def uploaded(store: StreamStore) -> tuple[list[int], ManifestState, ObjectMeta]:
    """Three streams, each in every one of ROUNDS uploads; the manifest
    then, and its oldest object (holding all three)."""
    streams = [new_stream(store) for _ in range(3)]
    uploads(store, streams, rounds=ROUNDS, count=PER_ROUND)
    state = store.manifest.state
    oldest = state.objects[min(state.objects)]
    assert {r.stream_id for r in oldest.ranges} == set(streams)
    return streams, state, oldest


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_a_damaged_input_is_left_as_it_is_and_the_rest_is_merged_and_collected(
    tmp_path: Path, damage: Callable[[Path], None], caplog: pytest.LogCaptureFixture
) -> None:
    bucket = LocalStore(tmp_path / "objects")
    with StreamStore.open(tmp_path / "node", bucket, CONFIG) as store:
        streams, _, oldest = uploaded(store)
        damage(Path(bucket.root, *oldest.key.split("/")))

        with caplog.at_level(logging.ERROR, logger="tidelog.s3stream"):
            store.compact()
        after = store.manifest.state
        # The damaged object stays named: its records are refused by name
        # when read, never cut from the log by a merge that could not read them.
        assert after.objects.get(oldest.object_id) == oldest
        assert any(oldest.key in r.getMessage() for r in caplog.records), caplog.text
        # The rest were merged into one object, and their originals deleted.
        assert len(after.objects) == 2
        assert after.garbage == {}
        assert object_keys(bucket) == {m.key for m in after.objects.values()} - (
            {oldest.key} if damage is remove else set()
        )
        per_object = PER_ROUND * 3
        for stream in streams:
            assert read_all_from(store, stream, per_object) == expected(
                stream, per_object, (ROUNDS - 1) * PER_ROUND
            )
        with pytest.raises((CorruptObject, ObjectStoreError)) as refused:
            read_all(store, streams[0])
        assert oldest.key in str(refused.value)

        # Later passes leave it alone too, and go on with everything else.
        store.compact()
        assert set(store.manifest.state.objects) == set(after.objects)


def read_all_from(store: StreamStore, stream: int, offset: int) -> list[tuple[int, int, bytes]]:
    out = []
    while offset < store.end_offset(stream):
        result = store.fetch(stream, offset, 1 << 20)
        out += [(b.base_offset, b.end_offset, bytes(b.payload)) for b in result.batches]
        offset = result.next_offset
    return out


def test_a_gone_input_is_not_left_alone_while_a_takeover_cannot_be_ruled_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The fence check a gone input calls for fails: the pass fails with the
    store's error and the next pass asks again, rather than log the object
    as damage for the rest of the process."""
    bucket = FailsOneHead(tmp_path / "objects")
    with StreamStore.open(tmp_path / "node", bucket, CONFIG) as store:
        _, state, oldest = uploaded(store)
        remove(Path(bucket.root, *oldest.key.split("/")))
        bucket.unreachable = delta_key(state.seq + 1)
        with (
            caplog.at_level(logging.ERROR, logger="tidelog.s3stream"),
            pytest.raises(ObjectStoreError) as failed,
        ):
            store.compact()
        assert failed.value.transient
        assert "cannot be merged" not in caplog.text
        assert store.manifest.state.objects == state.objects  # nothing merged or removed

        with caplog.at_level(logging.ERROR, logger="tidelog.s3stream"):
            store.compact()  # not fenced: the object is gone, left alone
        assert "cannot be merged" in caplog.text
        after = store.manifest.state
        assert after.objects.get(oldest.object_id) == oldest
        assert len(after.objects) == 2
