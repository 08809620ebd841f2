"""CRC32C: known vectors, continuation, every length and alignment, both implementations."""

from __future__ import annotations

import os
import platform
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

import native
from native._crc32c_reference import crc32c_reference
from tests.native.conftest import C_IMPL, IMPLEMENTATIONS, needs_c

# RFC 3720 (iSCSI) appendix B.4 and the classic check value.
KNOWN = [
    (b"123456789", 0xE3069283),
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
    (b"", 0),
]


@pytest.mark.parametrize(("data", "expected"), KNOWN)
def test_known_vectors(impl: ModuleType, data: bytes, expected: int) -> None:
    assert impl.crc32c(data) == expected
    assert crc32c_reference(data) == expected


def test_every_length_and_alignment_matches_the_reference(impl: ModuleType) -> None:
    data = os.urandom(400)
    for start in range(9):
        for length in range(0, 300, 7):
            view = memoryview(data)[start : start + length]
            assert impl.crc32c(view) == crc32c_reference(view), (start, length)


@pytest.mark.parametrize("size", [6143, 6144, 6145, 12288 + 5, 100_000, 1 << 20])
def test_buffers_past_the_interleaved_threshold(impl: ModuleType, size: int) -> None:
    data = os.urandom(size)
    expected = crc32c_reference(data[: size // 2])
    expected = crc32c_reference(data[size // 2 :], expected)
    assert impl.crc32c(data) == expected


@given(st.binary(max_size=3000), st.binary(max_size=3000))
def test_continuation(a: bytes, b: bytes) -> None:
    for impl in IMPLEMENTATIONS:
        module = impl.values[0]
        assert module.crc32c(a + b) == module.crc32c(b, module.crc32c(a))


def test_any_buffer_object_is_accepted(impl: ModuleType) -> None:
    data = b"tidelog"
    assert impl.crc32c(bytearray(data)) == impl.crc32c(memoryview(data)) == impl.crc32c(data)


def test_the_live_backend_is_named() -> None:
    assert native.crc32c_backend()
    if native.IMPLEMENTATION == "c":
        assert native.crc32c_backend() in {"sse4.2-3way", "armv8-crc32c-3way", "table"}


@pytest.mark.skipif(native.IMPLEMENTATION != "c", reason="the C extension is not loaded")
def test_the_c_implementations_are_the_tables_and_one_3_way_loop() -> None:
    """No fold on wide registers, whatever the CPU has (docs/design/0100):
    the tables, then the crc32 instructions' 3-way loop where the CPU has
    them, which is the live one."""
    from native import _cnative

    backends = _cnative.crc32c_backends()
    assert backends[0] == "table"
    assert backends[1:] in ([], ["sse4.2-3way"], ["armv8-crc32c-3way"])
    assert backends[-1] == native.crc32c_backend()
    if platform.machine() == "x86_64" and "sse4_2" in _cpu_flags():
        assert backends == ["table", "sse4.2-3way"]


def _cpu_flags() -> set[str]:
    """The flags Linux reports for the first CPU (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@given(st.binary(max_size=20_000), st.integers(0, 2**32 - 1))
def test_agrees_with_the_crc32c_package_on_random_data(data: bytes, start: int) -> None:
    import crc32c as crc32c_package

    for impl in IMPLEMENTATIONS:
        module = impl.values[0]
        assert module.crc32c(data, start) == crc32c_package.crc32c(data, start)


def _c_backends() -> list[str]:
    # The C extension's own, whichever implementation is live: these tests
    # hold the C to the reference, so the pure pass leaves them out (needs_c).
    return [] if C_IMPL is None else list(C_IMPL.crc32c_backends())


# Lengths at the edges of each C implementation's steps: the 3-way loop's
# three short lanes (768 bytes) and three long ones (6,144), once and twice
# and with the other behind, and its 8-byte words.
_EDGES = sorted(
    {
        n + d
        for n in (768, 1536, 2048, 4096, 6144, 6912, 12288)
        for d in (-17, -9, -8, -1, 0, 1, 7, 8, 9, 17)
    }
)


@needs_c
@pytest.mark.parametrize("backend", _c_backends())
def test_each_c_implementation_at_its_edges(backend: str) -> None:
    from native import _cnative

    data = os.urandom(13_000)
    for start in (0, 1, 7):
        for length in _EDGES:
            view = memoryview(data)[start : start + length]
            for crc in (0, 0xFFFFFFFF, 0x1234ABCD):
                expected = crc32c_reference(view, crc)
                assert _cnative.crc32c_with(backend, view, crc) == expected, (start, length, crc)


@needs_c
@given(st.binary(max_size=70_000), st.integers(0, 2**32 - 1), st.integers(0, 15))
def test_every_c_implementation_agrees_with_the_crc32c_package(
    data: bytes, start: int, skip: int
) -> None:
    import crc32c as crc32c_package

    view = memoryview(data)[min(skip, len(data)) :]
    expected = crc32c_package.crc32c(view, start)
    for backend in _c_backends():
        from native import _cnative

        assert _cnative.crc32c_with(backend, view, start) == expected, backend


@needs_c
def test_a_megabyte_through_every_c_implementation() -> None:
    import crc32c as crc32c_package

    data = os.urandom((1 << 20) + 77)
    expected = crc32c_package.crc32c(data)
    for backend in _c_backends():
        from native import _cnative

        assert _cnative.crc32c_with(backend, data) == expected, backend


@pytest.mark.skipif(native.IMPLEMENTATION != "c", reason="the C extension is not loaded")
def test_crc32c_with_refuses_an_unknown_implementation_and_a_start_past_32_bits() -> None:
    from native import _cnative

    assert _cnative.crc32c_backends()[-1] == native.crc32c_backend()
    with pytest.raises(ValueError, match="no CRC32C implementation"):
        _cnative.crc32c_with("no-such-backend", b"x")
    with pytest.raises(OverflowError):
        _cnative.crc32c_with("table", b"x", 2**32)


@needs_c
@pytest.mark.parametrize("backend", _c_backends())
def test_each_c_implementation_at_every_length_to_4096_and_every_start_alignment(
    backend: str,
) -> None:
    """Every length across the 3-way loop's short lanes (768 bytes, then
    each 768 more) and its 8-byte words, each of the 64 starts within a
    cache line, from a start of 0 and from one that differs with each
    length."""
    import crc32c as crc32c_package

    from native import _cnative

    data = os.urandom(4096 + 64)
    for start in range(64):
        for length in range(4097):
            view = memoryview(data)[start : start + length]
            for crc in (0, (length * 0x9E3779B1 + start) & 0xFFFFFFFF):
                expected = crc32c_package.crc32c(view, crc)
                assert _cnative.crc32c_with(backend, view, crc) == expected, (start, length, crc)


@needs_c
@given(st.binary(min_size=1000, max_size=9000), st.data())
def test_a_buffer_fed_in_pieces_through_any_implementations_is_one_buffer(
    data: bytes, draw: st.DataObject
) -> None:
    """A running CRC continues from any implementation into any other: the
    3-way loop's start and end states are the tables'."""
    import crc32c as crc32c_package

    from native import _cnative

    backends = _c_backends()
    if not backends:
        pytest.skip("the C extension is not loaded")
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=6)))
    start = draw.draw(st.integers(0, 2**32 - 1))
    crc = start
    for low, high in zip([0, *cuts], [*cuts, len(data)], strict=True):
        backend = draw.draw(st.sampled_from(backends))
        crc = _cnative.crc32c_with(backend, memoryview(data)[low:high], crc)
    assert crc == crc32c_package.crc32c(data, start)


def test_read_only_buffers_are_read_and_non_contiguous_ones_refused(impl: ModuleType) -> None:
    data = os.urandom(3000)
    read_only = memoryview(data).toreadonly()
    assert impl.crc32c(read_only, 5) == crc32c_reference(data, 5)
    with pytest.raises(BufferError):
        impl.crc32c(memoryview(bytearray(data))[::2])
    for backend in _c_backends():
        from native import _cnative

        assert _cnative.crc32c_with(backend, read_only, 5) == crc32c_reference(data, 5)
        with pytest.raises(BufferError):
            _cnative.crc32c_with(backend, memoryview(data)[::3])
