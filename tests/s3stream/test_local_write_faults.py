"""A local object put the disk takes in pieces, or refuses at any step
(s3stream/store/local.py): short writes still store the object's bytes
exactly, and a put that fails at any step (a write, a MiB's write-out, a
page release, the fsync) raises, leaves no object and no temporary file,
and leaves the key's earlier object as it was.

The faults are injected (wrappers around the os calls and the write-out):
a real disk does not fill up or fail on cue."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from native.buffers import BytesLike
from s3stream.store import local
from s3stream.store.base import ObjectStoreError
from s3stream.store.local import LocalStore
from tests.buffered_puts import without_direct_writes
from tests.short_writes import leading_bytes
from wal import writeback

MiB = 1 << 20
MOST_SHORT_WRITES = 20_000
"""Past this many short writes the disk takes the rest whole: a put of
megabytes one byte a write would take minutes on a loaded machine."""


@pytest.fixture(autouse=True)
def buffered_puts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer through the page cache: its write-outs and page releases
    are among the steps that fail (direct writes' faults:
    test_local_direct_writes.py)."""
    without_direct_writes(monkeypatch)


@settings(max_examples=30, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 900_000), min_size=1, max_size=8),
    fractions=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6),
)
def test_any_sequence_of_short_writes_stores_the_same_object(
    tmp_path_factory: pytest.TempPathFactory, lengths: list[int], fractions: list[float]
) -> None:
    root = tmp_path_factory.mktemp("objects")
    parts = [bytes([1 + index % 250]) * length for index, length in enumerate(lengths)]
    calls = [0]
    real_write = os.write

    def share(size: int) -> int:
        fraction = fractions[calls[0] % len(fractions)]
        calls[0] += 1
        if calls[0] > MOST_SHORT_WRITES:
            return size
        return max(1, min(size, int(size * fraction)))

    def short_writev(fd: int, buffers: Sequence[BytesLike]) -> int:
        wanted = share(sum(memoryview(buffer).nbytes for buffer in buffers))
        return real_write(fd, leading_bytes(buffers, wanted))

    def short_write(fd: int, data: BytesLike) -> int:
        view = memoryview(data).cast("B")
        return real_write(fd, view[: share(len(view))])

    store = LocalStore(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(local.os, "writev", short_writev)
        patch.setattr(local.os, "write", short_write)
        store.put("a/object", parts)
    assert store.get("a/object") == b"".join(parts)


Step = Callable[[pytest.MonkeyPatch, Callable[[], None]], None]


def _failing_writev(patch: pytest.MonkeyPatch, fail: Callable[[], None]) -> None:
    real = os.writev

    def writev(fd: int, buffers: Sequence[BytesLike]) -> int:
        fail()
        return real(fd, buffers)

    patch.setattr(local.os, "writev", writev)


def _failing_write_out(patch: pytest.MonkeyPatch, fail: Callable[[], None]) -> None:
    real = writeback.sync_file_range
    assert real is not None, "Linux with glibc: sync_file_range is there"

    def sync_file_range(fd: int, offset: int, length: int, flags: int) -> int:
        try:
            fail()
        except OSError as error:  # as the C call fails: -1, and errno set
            ctypes.set_errno(error.errno or 0)
            return -1
        return real(fd, offset, length, flags)

    patch.setattr(writeback, "sync_file_range", sync_file_range)


def _failing_release(patch: pytest.MonkeyPatch, fail: Callable[[], None]) -> None:
    real = local._FADVISE
    if real is None:
        pytest.skip("no posix_fadvise here")

    def fadvise(fd: int, offset: int, length: int, advice: int) -> None:
        fail()
        real(fd, offset, length, advice)

    patch.setattr(local, "_FADVISE", fadvise)


def _failing_fsync(patch: pytest.MonkeyPatch, fail: Callable[[], None]) -> None:
    real = os.fsync

    def fsync(fd: int) -> None:
        if not os.path.isdir(f"/proc/self/fd/{fd}"):  # the object's, not a directory's
            fail()
        real(fd)

    patch.setattr(local.os, "fsync", fsync)


STEPS: dict[str, tuple[Step, int]] = {
    # the step, and which of its calls fails (a 3.5 MiB object: four
    # writes, three write-outs, four releases, one fsync)
    "the third write": (_failing_writev, 3),
    "the second write-out": (_failing_write_out, 2),
    "the fourth release": (_failing_release, 4),
    "the fsync": (_failing_fsync, 1),
}


@pytest.mark.parametrize("error", [errno.EIO, errno.ENOSPC])
@pytest.mark.parametrize("step", sorted(STEPS))
def test_a_put_failing_at_any_step_leaves_the_earlier_object_and_no_file(
    tmp_path: Path, step: str, error: int
) -> None:
    store = LocalStore(tmp_path / "objects")
    earlier = os.urandom(100_000)
    store.put("s/object", earlier)
    version = store.head("s/object").version
    inject, failing_call = STEPS[step]
    calls = [0]

    def fail() -> None:
        calls[0] += 1
        if calls[0] == failing_call:
            raise OSError(error, os.strerror(error))

    with pytest.MonkeyPatch.context() as patch:
        inject(patch, fail)
        with pytest.raises(ObjectStoreError) as raised:
            store.put("s/object", [os.urandom(MiB // 2) for _ in range(7)])
    assert raised.value.transient == (error != errno.ENOSPC)
    assert calls[0] == failing_call
    assert store.get("s/object") == earlier
    assert store.head("s/object").version == version
    assert sorted(path.name for path in (tmp_path / "objects" / "s").iterdir()) == ["object"]
