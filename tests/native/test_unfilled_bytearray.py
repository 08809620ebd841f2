"""unfilled_bytearray: a request buffer of the size asked, writable and
resizable like any bytearray (the C one skips bytearray(size)'s zero-fill);
a size that is not a non-negative int is refused alike by both."""

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
