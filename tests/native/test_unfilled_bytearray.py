"""unfilled_bytearray and extend_unfilled: a request buffer of the size
asked, and grown by the bytes asked, its bytes kept, writable and resizable
like any bytearray (the C ones skip the zero-fill of bytearray(size) and
extend(bytes(added))); a size that is not a non-negative int, a buffer that
is not a bytearray and one a view holds are refused alike by both. A
large one comes with its pages present (the C ones populate them in one
call, native/src/prefault.c)."""

from __future__ import annotations

import ctypes
import mmap
import sys
from types import ModuleType

import pytest

from native import _pure
from tests.native.conftest import C_IMPL

IMPLS = [_pure] + ([C_IMPL] if C_IMPL else [])


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("size", [0, 1, 4095, 1 << 20])
def test_a_buffer_of_the_size_asked_that_takes_what_is_written(impl: ModuleType, size: int) -> None:
    buffer = impl.unfilled_bytearray(size)
    assert type(buffer) is bytearray
    assert len(buffer) == size
    data = bytes(i % 251 for i in range(size))
    memoryview(buffer)[:] = data
    assert buffer == data
    buffer.extend(b"more")  # an ordinary bytearray: it grows
    assert buffer[size:] == b"more"


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
@pytest.mark.parametrize(
    ("size", "error"),
    [(-1, ValueError), ("8", TypeError), (8.0, TypeError), (1 << 64, OverflowError)],
)
def test_a_size_that_is_not_a_non_negative_int_is_refused(
    impl: ModuleType, size: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        impl.unfilled_bytearray(size)


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
@pytest.mark.parametrize(("start", "added"), [(0, 0), (0, 5), (3, 1 << 20), (70_000, 4096)])
def test_a_buffer_grows_by_the_bytes_asked_and_keeps_its_own(
    impl: ModuleType, start: int, added: int
) -> None:
    kept = bytes(i % 253 for i in range(start))
    buffer = bytearray(kept)
    impl.extend_unfilled(buffer, added)
    assert len(buffer) == start + added
    assert buffer[:start] == kept
    memoryview(buffer)[start:] = b"\x07" * added
    assert buffer[start:] == b"\x07" * added


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
@pytest.mark.parametrize(
    ("buffer", "added", "error"),
    [
        (bytearray(2), -1, ValueError),
        (bytearray(2), "1", TypeError),
        (b"ab", 1, TypeError),
        (memoryview(bytearray(2)), 1, TypeError),
        (bytearray(2), 1 << 64, OverflowError),
    ],
)
def test_growing_what_is_not_a_bytearray_or_by_a_bad_count_is_refused(
    impl: ModuleType, buffer: object, added: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        impl.extend_unfilled(buffer, added)


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
def test_a_buffer_a_view_holds_is_not_grown(impl: ModuleType) -> None:
    buffer = bytearray(b"abc")
    view = memoryview(buffer)
    with pytest.raises(BufferError):
        impl.extend_unfilled(buffer, 10)
    assert buffer == b"abc"
    view.release()


_FRESH_BYTES = 64 * 1024 * 1024
"""Above glibc's largest mmap threshold: the allocator maps it afresh, so
none of its pages is present until something makes it so."""


def _present_pages(buffer: bytearray, start: int = 0) -> tuple[int, int]:
    """Of the whole pages of ``buffer[start:]``: how many are present in
    memory (mincore), and how many there are."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    page = mmap.PAGESIZE
    address = ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer)) + start
    first = (address + page - 1) & ~(page - 1)
    end = (address + len(buffer) - start) & ~(page - 1)
    pages = (end - first) // page
    present = (ctypes.c_ubyte * pages)()
    if libc.mincore(first, end - first, present) != 0:
        pytest.skip(f"mincore failed: errno {ctypes.get_errno()}")
    return sum(flag & 1 for flag in present), pages


def _populate_supported() -> bool:
    """Whether this kernel takes MADV_POPULATE_WRITE (Linux 5.14)."""
    if not sys.platform.startswith("linux") or not hasattr(mmap, "MADV_DONTNEED"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    scratch = bytearray(mmap.PAGESIZE * 2)
    address = ctypes.addressof((ctypes.c_char * len(scratch)).from_buffer(scratch))
    first = (address + mmap.PAGESIZE - 1) & ~(mmap.PAGESIZE - 1)
    return libc.madvise(first, mmap.PAGESIZE, _MADV_POPULATE_WRITE) == 0


_MADV_POPULATE_WRITE = 23
prefaulting = pytest.mark.skipif(
    not _populate_supported(), reason="the kernel cannot populate pages ahead (Linux 5.14)"
)


@prefaulting
@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
def test_a_large_buffer_comes_with_its_pages_present(impl: ModuleType) -> None:
    """Every byte is about to be written (a request read from the socket):
    the C one makes the pages present in one call rather than leave each
    to fault at its first write, which is what bytearray's zero-fill does
    for the Python one."""
    buffer = impl.unfilled_bytearray(_FRESH_BYTES)
    present, pages = _present_pages(buffer)
    assert present == pages


@prefaulting
@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
def test_the_bytes_a_buffer_grows_by_come_with_their_pages_present(impl: ModuleType) -> None:
    buffer = bytearray(b"kept")
    impl.extend_unfilled(buffer, _FRESH_BYTES)
    present, pages = _present_pages(buffer, start=4)
    assert present == pages
    assert buffer[:4] == b"kept"
