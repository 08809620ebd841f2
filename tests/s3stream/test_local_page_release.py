"""The local object store gives an object's pages back to the kernel once
they are written out (s3stream/store/local.py, ``_release_pages``): kept,
every put took fresh pages, which on a virtual machine whose host takes
back free memory cost a fault in the host per page written
(docs/design/0023-produce-cpu-breakdown.md)."""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

import pytest

from s3stream.store import local
from s3stream.store.local import LocalStore
from tests.buffered_puts import without_direct_writes

MiB = 1 << 20
PAGE = mmap.PAGESIZE

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p)
_libc.mincore.restype = ctypes.c_int


def cached_pages(path: Path) -> int:
    """How many of the file's pages the page cache holds (mincore on a
    private mapping of it, which faults nothing in)."""
    size = path.stat().st_size
    with open(path, "rb") as file, mmap.mmap(file.fileno(), size, access=mmap.ACCESS_COPY) as view:
        pages = (size + PAGE - 1) // PAGE
        vector = ctypes.create_string_buffer(pages)
        first = ctypes.c_char.from_buffer(view)
        try:
            if _libc.mincore(ctypes.addressof(first), size, vector) != 0:
                raise OSError(ctypes.get_errno(), "mincore")
        finally:
            del first  # the mapping cannot close while a ctypes object exports it
        return sum(byte & 1 for byte in vector.raw)


@pytest.fixture
def dropping_filesystem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path, if its filesystem lets written-out pages go (tmpfs keeps
    them: they are the file); puts go through the page cache."""
    without_direct_writes(monkeypatch)
    if not hasattr(os, "posix_fadvise"):
        pytest.skip("no posix_fadvise here: the store keeps its pages")
    probe = tmp_path / "probe"
    with open(probe, "wb") as file:
        file.write(os.urandom(MiB))
        file.flush()
        os.fsync(file.fileno())
        os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    if cached_pages(probe) == MiB // PAGE:
        pytest.skip("this filesystem keeps written-out pages cached")
    probe.unlink()
    return tmp_path


def test_a_put_object_leaves_no_pages_cached(dropping_filesystem: Path) -> None:
    store = LocalStore(dropping_filesystem / "objects")
    parts = [os.urandom(MiB // 2 + 100) for _ in range(9)]  # 4.5 MiB, parts not page-aligned
    store.put("objects/a", parts)
    path = dropping_filesystem / "objects" / "objects" / "a"
    assert cached_pages(path) == 0
    assert store.get("objects/a") == b"".join(parts)  # read back from the disk whole


def test_a_single_buffer_put_leaves_no_pages_cached(dropping_filesystem: Path) -> None:
    store = LocalStore(dropping_filesystem / "objects")
    data = os.urandom(3 * MiB + 5)
    store.put_if_absent("m/1", data)
    assert cached_pages(dropping_filesystem / "objects" / "m" / "1") == 0
    assert store.get("m/1", 5, 3 * MiB) == data[5 : 3 * MiB]


def test_pages_are_released_a_mib_at_a_time(
    dropping_filesystem: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Released as each MiB is written out, so the next MiB is given the
    pages just freed, not only once the object is whole; each release
    spans only pages not given back yet."""
    released: list[tuple[int, int, int]] = []
    real = local._release_pages

    def recorded(fd: int, start: int, end: int) -> int:
        ended = real(fd, start, end)
        released.append((start, end, cached_pages_of_fd(fd)))
        return ended

    monkeypatch.setattr(local, "_release_pages", recorded)
    LocalStore(dropping_filesystem / "objects").put("s/1", [os.urandom(MiB + 1000)] * 3)
    assert released == [(0, MiB, 0), (MiB, 2 * MiB, 0), (2 * MiB, 3 * MiB, 0), (3 * MiB, 0, 0)]
    assert cached_pages(dropping_filesystem / "objects" / "s" / "1") == 0


def test_the_page_a_release_ends_inside_stays(dropping_filesystem: Path) -> None:
    """Linux would drop it at the file's end; a write continuing the file
    would then first read it back from the disk."""
    path = dropping_filesystem / "file"
    with open(path, "wb") as file:
        file.write(os.urandom(MiB + 1000))
        file.flush()
        os.fsync(file.fileno())
        assert local._release_pages(file.fileno(), 0, MiB + 1000) == MiB
    assert cached_pages(path) == 1


def cached_pages_of_fd(fd: int) -> int:
    return cached_pages(Path(f"/proc/self/fd/{fd}"))
