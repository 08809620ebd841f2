"""Large objects written past the page cache (s3stream/store/direct_writes.py,
docs/design/0130): the same bytes as the buffered writer, no page-cache
pages to write out or give back, and a filesystem that refuses O_DIRECT
(when the flag is set, or at any write) gets the object through the page
cache, whole and once. A write that fails otherwise fails the put and
leaves the key's earlier object.

The refusals and failures are injected (wrappers around fcntl and pwrite):
a real filesystem does not refuse on cue."""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from native.buffers import BytesLike
from s3stream.store import direct_writes
from s3stream.store.base import ObjectStoreError
from s3stream.store.local import LocalStore
from tests.buffered_puts import without_direct_writes
from tests.s3stream.test_local_page_release import cached_pages
from wal import writeback

MiB = 1 << 20


def _takes_direct_writes(directory: Path) -> bool:
    probe = directory / "direct-probe"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        return direct_writes.write_direct(fd, [memoryview(bytes(MiB))], MiB)
    finally:
        os.close(fd)
        probe.unlink()


@pytest.fixture
def direct_root(tmp_path: Path) -> Path:
    """tmp_path, if its filesystem takes O_DIRECT."""
    if not _takes_direct_writes(tmp_path):
        pytest.skip("this filesystem refuses O_DIRECT")
    return tmp_path / "objects"


def _parts(lengths: list[int], seed: int) -> list[bytes]:
    return [bytes([(seed + index) % 256]) * length for index, length in enumerate(lengths)]


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(
        st.one_of(
            st.integers(0, 5000), st.integers(MiB - 5000, MiB + 5000), st.integers(0, 2 * MiB)
        ),
        min_size=1,
        max_size=6,
    ),
    seed=st.integers(0, 255),
)
def test_a_direct_put_stores_the_bytes_the_buffered_writer_stores(
    tmp_path_factory: pytest.TempPathFactory, lengths: list[int], seed: int
) -> None:
    root = tmp_path_factory.mktemp("objects")
    if not _takes_direct_writes(root):
        pytest.skip("this filesystem refuses O_DIRECT")
    parts = _parts(lengths, seed)
    size = sum(lengths)
    store = LocalStore(root)
    store.put("a/direct", parts)
    with pytest.MonkeyPatch.context() as patch:
        without_direct_writes(patch)
        store.put("a/buffered", parts)
    assert store.get("a/direct") == store.get("a/buffered") == b"".join(parts)
    assert store.head("a/direct").size == size
    # Below a MiB, through the page cache as before; from a MiB on, direct.
    assert store.bytes_written_direct == (size if size >= direct_writes.DIRECT_MIN_BYTES else 0)


def test_a_large_put_is_neither_written_out_nor_released_page_by_page(
    direct_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_outs: list[int] = []
    real = writeback.sync_file_range
    assert real is not None, "Linux with glibc: sync_file_range is there"

    def recorded(fd: int, offset: int, length: int, flags: int) -> int:
        write_outs.append(length)
        return real(fd, offset, length, flags)

    monkeypatch.setattr(writeback, "sync_file_range", recorded)
    store = LocalStore(direct_root)
    parts = [os.urandom(1_000_000) for _ in range(5)]  # as the uploader's record batches
    store.put("objects/a", parts)
    assert write_outs == []
    assert store.bytes_written_direct == 5_000_000
    assert cached_pages(direct_root / "objects" / "a") == 0
    assert store.get("objects/a") == b"".join(parts)


Refusal = Callable[[pytest.MonkeyPatch], None]


def _refused_flag(code: int) -> Refusal:
    """Setting O_DIRECT fails with ``code``."""

    def install(patch: pytest.MonkeyPatch) -> None:
        real = fcntl.fcntl

        def refusing(fd: int, command: int, argument: int = 0) -> int:
            if command == fcntl.F_SETFL and argument & os.O_DIRECT:
                raise OSError(code, "O_DIRECT refused")
            return real(fd, command, argument)

        patch.setattr(fcntl, "fcntl", refusing)

    return install


def _failing_write(at: int, code: int) -> Refusal:
    """The ``at``-th pwrite fails with ``code``."""

    def install(patch: pytest.MonkeyPatch) -> None:
        real = os.pwrite
        calls = [0]

        def failing(fd: int, data: BytesLike, offset: int) -> int:
            calls[0] += 1
            if calls[0] == at:
                raise OSError(code, os.strerror(code))
            return real(fd, data, offset)

        patch.setattr(os, "pwrite", failing)

    return install


REFUSALS: dict[str, Refusal] = {
    "when the flag is set": _refused_flag(errno.EINVAL),
    "at the first write": _failing_write(1, errno.EINVAL),
    "at the third write": _failing_write(3, errno.EINVAL),
    # Some FUSE and network filesystems say "not supported" rather than
    # "invalid": a put failed on it would be retried and fail every time.
    "as not supported when the flag is set": _refused_flag(errno.EOPNOTSUPP),
    "as not supported at the first write": _failing_write(1, errno.EOPNOTSUPP),
}


@pytest.mark.parametrize("refusal", REFUSALS.values(), ids=REFUSALS.keys())
def test_a_filesystem_refusing_direct_writes_gets_the_object_through_the_page_cache(
    tmp_path: Path, refusal: Refusal
) -> None:
    parts = [os.urandom(1_000_000) for _ in range(4)]
    store = LocalStore(tmp_path / "objects")
    with pytest.MonkeyPatch.context() as patch:
        refusal(patch)
        store.put("objects/a", parts)
    assert store.get("objects/a") == b"".join(parts)
    assert store.head("objects/a").size == 4_000_000
    assert store.bytes_written_direct == 0


@pytest.mark.parametrize(
    "kept_buffers",
    [direct_writes._KEPT_BUFFERS, 0],
    # 0: more puts at once than buffers kept, so this put's is not kept
    ids=["its buffer kept", "its buffer not kept"],
)
@pytest.mark.parametrize("at", [1, 2, 3])  # of three: two MiB, then the rest
def test_a_direct_write_failing_fails_the_put_and_keeps_the_earlier_object(
    direct_root: Path, at: int, kept_buffers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(direct_writes, "_KEPT_BUFFERS", kept_buffers)
    store = LocalStore(direct_root)
    earlier = os.urandom(2 * MiB)
    store.put("objects/a", earlier)
    with pytest.MonkeyPatch.context() as patch:
        _failing_write(at, errno.EIO)(patch)
        with pytest.raises(ObjectStoreError) as failed:
            store.put("objects/a", [os.urandom(1_000_000) for _ in range(3)])
    assert failed.value.transient  # the uploader retries it, as a buffered put's EIO
    assert store.get("objects/a") == earlier
    assert sorted(os.listdir(direct_root / "objects")) == ["a"]


def test_short_direct_writes_store_the_same_object(
    direct_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.pwrite

    def short(fd: int, data: BytesLike, offset: int) -> int:
        view = memoryview(data).cast("B")
        if len(view) > direct_writes.ALIGNMENT:  # a whole number of blocks, as a full disk ends one
            view = view[: len(view) // 2 // direct_writes.ALIGNMENT * direct_writes.ALIGNMENT]
        return real(fd, view, offset)

    monkeypatch.setattr(os, "pwrite", short)
    store = LocalStore(direct_root)
    parts = [os.urandom(700_000) for _ in range(4)]
    store.put("objects/a", parts)
    assert store.get("objects/a") == b"".join(parts)
    assert store.bytes_written_direct == 2_800_000


def test_puts_at_once_each_write_from_a_bounce_buffer_of_their_own(
    direct_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both puts have filled their buffer before either writes: one buffer
    # shared would hand one of them the other's bytes.
    both_filled = threading.Barrier(2, timeout=30)
    real = os.pwrite

    def after_both_filled(fd: int, data: BytesLike, offset: int) -> int:
        if offset == 0:
            both_filled.wait()
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", after_both_filled)
    store = LocalStore(direct_root)
    objects = {f"objects/{name}": [os.urandom(1_000_000) for _ in range(3)] for name in "ab"}
    with ThreadPoolExecutor(2) as pool:
        for done in [pool.submit(store.put, key, parts) for key, parts in objects.items()]:
            done.result()
    for key, parts in objects.items():
        assert store.get(key) == b"".join(parts), key
    assert store.bytes_written_direct == 6_000_000
