"""unfilled_bytearray and extend_unfilled: a request buffer of the size
asked, and grown by the bytes asked, its bytes kept, writable and resizable
like any bytearray (the C ones skip the zero-fill of bytearray(size) and
extend(bytes(added))); a size that is not a non-negative int, a buffer that
is not a bytearray and one a view holds are refused alike by both."""

from __future__ import annotations

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
