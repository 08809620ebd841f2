"""A crash between the commit that takes an object's last reference (a
fork's share of it) and the object's deletion, or between the deletion and
the commit that forgets it: the next owner, another data directory opening
the same bucket, finishes the deletion, and touches nothing a stream still
reads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from s3stream import StreamStore
from s3stream.store import LocalStore
from s3stream.uploader import OBJECT_PREFIX
from tests.s3stream.faults import FaultyStore, InjectedFault
from tests.s3stream.test_forks import CONFIG, object_keys, open_fork, uploaded
from tests.s3stream.test_ownership import crash
from tests.s3stream.test_stream_store import expected, fill, read_all


class LosesDeleteAnswers(FaultyStore):
    """Deletes of data objects take effect, and their answers are lost."""

    def delete(self, key: str) -> None:
        self.inner.delete(key)
        if key.startswith(OBJECT_PREFIX):
            raise InjectedFault("delete", key)


def refused_before(store: FaultyStore) -> None:
    store.fail("delete", prefix=OBJECT_PREFIX)


def no_fault(store: FaultyStore) -> None:
    """LosesDeleteAnswers needs no arming: every data object's delete loses its answer."""


CRASHES: dict[str, tuple[type[FaultyStore], Callable[[FaultyStore], None]]] = {
    "before-the-deletes": (FaultyStore, refused_before),
    "after-the-deletes": (LosesDeleteAnswers, no_fault),
}


@pytest.mark.parametrize(("wrapper", "arm"), CRASHES.values(), ids=CRASHES.keys())
def test_a_crash_around_the_deletion_of_a_forks_last_objects_is_finished_by_the_next_owner(
    tmp_path: Path, wrapper: type[FaultyStore], arm: Callable[[FaultyStore], None]
) -> None:
    bucket = LocalStore(tmp_path / "bucket")
    faulty = FaultyStore(bucket)
    a = StreamStore.open(tmp_path / "a", faulty, CONFIG)
    source = a.create_stream()
    a.open_stream(source, 1)
    uploaded(a, source, 4, rounds=3)  # objects holding [0, 12), [12, 24), [24, 36)
    fork = open_fork(a, source)  # shares all three
    fill(a, fork, 2)
    assert a.flush(timeout=30)
    a.trim(source, 24)
    fill(a, source, 1)
    assert a.flush(timeout=30)
    assert a.manifest.state.streams[source].start_offset == 24
    a.compact()  # the fork still holds the first two objects
    first_two = {
        a.manifest.state.objects[oid].key
        for start, _, oid in a.manifest.state.ranges[fork].entries
        if start < 24
    }
    assert len(first_two) == 2 and first_two <= object_keys(bucket)
    crash(a)

    # The same directory, its store now failing around the deletes.
    faulty = wrapper(bucket)
    arm(faulty)
    a = StreamStore.open(tmp_path / "a", faulty, CONFIG)
    a.delete_stream(fork)  # the last reference to the first two objects goes
    with pytest.raises(InjectedFault):
        a.compact()
    garbage = set(a.manifest.state.garbage)  # removed (and merged inputs); not forgotten
    assert first_two <= garbage
    crash(a)

    with StreamStore.open(tmp_path / "b", bucket, CONFIG) as b:
        assert set(b.manifest.state.garbage) == garbage
        b.compact()
        state = b.manifest.state
        assert state.garbage == {}
        assert object_keys(bucket) == {meta.key for meta in state.objects.values()}
        assert not first_two & object_keys(bucket)
        assert read_all(b, source) == expected(source, 24, 5)
