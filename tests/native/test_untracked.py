"""untracked_view and untracked_record: a stored payload and its batch out
of the cyclic collector's way (docs/design/0154).

The C extension's ByteSlice is a read-only view of part of an exact bytes or
bytearray that the collector does not track; it exports the buffer protocol
(so os.writev, bytes.join, hashlib and the CRC take it as they take a
memoryview), has len(), indexing and slicing, and holds an export of its
owner, so a bytearray cannot be resized under it. untracked_record builds a
NamedTuple of such items and leaves it untracked, which CPython's collector
never does for a tuple subclass. The pure twin gives read-only memoryviews
and tracked records: the same results, only the collector's cost differs.
"""

from __future__ import annotations

import array
import gc
import hashlib
import os
from types import ModuleType
from typing import NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from native import _pure
from tests.native.conftest import c_impl, differential, needs_c


class Batch(NamedTuple):
    base_offset: int
    end_offset: int
    payload: object
    crc: int | None = None


def _frame(size: int) -> bytearray:
    return bytearray(i % 251 for i in range(size))


@needs_c
def test_a_slice_is_the_bytes_of_its_range_through_the_buffer_protocol() -> None:
    owner = _frame(64)
    view = c_impl().untracked_view(memoryview(owner)[8:40])
    assert type(view).__name__ == "ByteSlice"
    assert len(view) == view.nbytes == 32
    assert bytes(view) == view.tobytes() == bytes(owner[8:40])
    assert view == bytes(owner[8:40]) and bytes(owner[8:40]) == view
    assert view == memoryview(owner)[8:40] and view != bytes(owner[8:41])
    assert memoryview(view).tobytes() == bytes(owner[8:40])
    assert b"".join([view, view]) == bytes(owner[8:40]) * 2
    assert hashlib.sha256(view).digest() == hashlib.sha256(owner[8:40]).digest()
    assert c_impl().crc32c(view) == c_impl().crc32c(bytes(owner[8:40]))
    read, write = os.pipe()
    try:
        assert os.writev(write, [view]) == 32
        assert os.read(read, 64) == bytes(owner[8:40])
    finally:
        os.close(read)
        os.close(write)
    assert view.obj is owner and view.start == 8 and view.readonly
    with pytest.raises(TypeError):  # as a read-only memoryview of a bytearray
        hash(view)
    assert hash(c_impl().ByteSlice(bytes(owner), 8, 32)) == hash(bytes(owner[8:40]))


@needs_c
def test_a_slice_indexes_and_slices_as_a_memoryview_does() -> None:
    owner = _frame(50)
    reference = memoryview(owner)[5:45].toreadonly()
    view = c_impl().untracked_view(memoryview(owner)[5:45])
    for i in (0, 1, 39, -1, -40):
        assert view[i] == reference[i]
    for i in (40, -41):
        with pytest.raises(IndexError):
            view[i]
    for key in (slice(3, 9), slice(-5, None), slice(None, 100), slice(20, 10), slice(0, 40, 3)):
        assert view[key] == reference[key]
    inner = view[3:9]
    assert type(inner).__name__ == "ByteSlice" and inner.start == 8 and inner.obj is owner
    with pytest.raises(TypeError):
        view["a"]  # type: ignore[call-overload]


@needs_c
def test_a_slice_is_read_only() -> None:
    view = c_impl().untracked_view(memoryview(_frame(16))[2:10])
    with pytest.raises(TypeError):
        memoryview(view)[0] = 1
    with pytest.raises(TypeError):
        view[0] = 1  # type: ignore[index]


@needs_c
def test_a_bytearray_a_slice_holds_is_not_resized_until_the_slice_is_gone() -> None:
    owner = _frame(32)
    view = c_impl().untracked_view(memoryview(owner)[4:12])
    kept = bytes(view)
    with pytest.raises(BufferError):
        owner.extend(b"more")
    with pytest.raises(BufferError):
        del owner[:4]
    assert bytes(view) == kept
    del view
    owner.extend(b"more")  # its export released with it
    assert owner[-4:] == b"more"


@needs_c
def test_the_type_takes_only_an_exact_bytes_or_bytearray() -> None:
    byte_slice = c_impl().ByteSlice

    class Bytes(bytes):
        pass

    class Bytearray(bytearray):
        pass

    for owner in (
        memoryview(b"abc"),
        array.array("B", b"abc"),
        Bytes(b"abc"),
        Bytearray(b"abc"),
        "abc",
        3,
    ):
        with pytest.raises(TypeError):
            byte_slice(owner)
    assert byte_slice(b"abcdef", 1, 3) == b"bcd"
    assert byte_slice(bytearray(b"abcdef"), 2) == b"cdef"
    for start, length in ((-1, 1), (7, 0), (2, 5), (0, -2)):
        with pytest.raises(ValueError):
            byte_slice(b"abcdef", start, length)
    with pytest.raises(TypeError):

        class Sub(byte_slice):  # type: ignore[misc]
            pass


@needs_c
def test_neither_a_slice_nor_a_record_of_it_is_tracked() -> None:
    c = c_impl()
    owner = _frame(300)
    view = c.untracked_view(memoryview(owner)[100:200])
    assert not gc.is_tracked(view)
    batch = c.untracked_record(Batch, 10, 11, memoryview(owner)[100:200], None)
    assert type(batch) is Batch and type(batch.payload).__name__ == "ByteSlice"
    assert not gc.is_tracked(batch)
    gc.collect()
    assert not gc.is_tracked(batch) and not gc.is_tracked(batch.payload)
    # What a NamedTuple of a memoryview is, made the usual way: tracked for
    # good, a collection keeps it so (a tuple subclass is never untracked).
    usual = Batch(10, 11, memoryview(owner)[100:200], None)
    gc.collect()
    assert gc.is_tracked(usual)


@needs_c
def test_a_record_holding_anything_tracked_stays_tracked() -> None:
    c = c_impl()
    # A dict of atoms is untracked until it holds a list: CPython's own rule.
    for item in ([1], memoryview(array.array("B", b"abc")), {"a": 1}, (1, [2])):
        assert gc.is_tracked(c.untracked_record(Batch, 0, 1, item, None))
    assert not gc.is_tracked(c.untracked_record(Batch, 0, 1, b"abc", 7))
    assert not gc.is_tracked(c.untracked_record(Batch, 0, 1, bytearray(b"abc"), None))


def test_a_record_class_must_be_a_tuple_without_a_dict(impl: ModuleType) -> None:
    class WithDict(tuple):  # type: ignore[type-arg]
        pass

    for cls in (WithDict, list, int, object(), "x"):
        with pytest.raises(TypeError):
            impl.untracked_record(cls, 1, 2)
    assert impl.untracked_record(Batch, 1, 2, b"x", None) == Batch(1, 2, b"x")


def test_what_cannot_be_a_slice_is_given_back_as_it_is(impl: ModuleType) -> None:
    released = memoryview(b"abc")
    released.release()
    others = (
        b"abc",
        bytearray(b"abc"),
        memoryview(array.array("I", [1, 2])),  # not bytes: its len() counts items
        memoryview(b"abcd").cast("I"),
        memoryview(b"abcdef")[::2],  # not contiguous
        released,
        None,
        5,
    )
    for data in others:
        assert impl.untracked_view(data) is data


@needs_c
@differential
@given(
    size=st.integers(0, 600),
    start=st.integers(0, 600),
    length=st.integers(0, 600),
    owner_type=st.sampled_from([bytes, bytearray]),
    keys=st.lists(
        st.one_of(
            st.integers(-700, 700),
            st.tuples(
                st.integers(-700, 700), st.integers(-700, 700), st.sampled_from([None, 1, 2, -1])
            ),
        ),
        max_size=6,
    ),
)
def test_the_c_slice_reads_as_the_twins_view(
    size: int,
    start: int,
    length: int,
    owner_type: type[bytes] | type[bytearray],
    keys: list[int | tuple[int, int, int | None]],
) -> None:
    owner = owner_type(i * 7 % 256 for i in range(size))
    start = min(start, size)
    end = min(start + length, size)
    c_view = c_impl().untracked_view(memoryview(owner)[start:end])
    pure_view = _pure.untracked_view(memoryview(owner)[start:end])
    assert type(pure_view) is memoryview and pure_view.readonly
    assert len(c_view) == len(pure_view) and bytes(c_view) == bytes(pure_view)
    assert c_view == pure_view and c_view.readonly == pure_view.readonly
    assert c_impl().crc32c(c_view) == _pure.crc32c(pure_view)
    for key in keys:
        index = key if isinstance(key, int) else slice(*key)
        try:
            expected: object = pure_view[index]
        except IndexError:
            with pytest.raises(IndexError):
                c_view[index]
            continue
        got = c_view[index]
        assert got == expected
        if not isinstance(expected, int):
            assert bytes(got) == bytes(expected)


def test_a_record_takes_every_field_of_a_named_tuple_and_nothing_else(impl: ModuleType) -> None:
    """Every field is given (a record short of one fails only where that
    field is read), and only a class with _fields: a C tuple subclass such
    as os.stat_result keeps hidden items that its dealloc reads past what
    was allocated (it crashed the process)."""
    for items in ((1, 2, b"x"), (1, 2, b"x", None, 5), ()):
        with pytest.raises(TypeError):
            impl.untracked_record(Batch, *items)
    for cls, count in ((os.stat_result, 1), (os.stat_result, 10), (os.terminal_size, 2)):
        with pytest.raises(TypeError):
            impl.untracked_record(cls, *range(count))
    assert impl.untracked_record(Batch, 1, 2, b"x", 7) == Batch(1, 2, b"x", 7)


@needs_c
@differential
@given(data=st.binary(max_size=40), owner_type=st.sampled_from([bytes, bytearray]))
def test_the_c_slice_hashes_and_compares_as_the_twins_view(
    data: bytes, owner_type: type[bytes] | type[bytearray]
) -> None:
    """A hash only where the owner is hashable (a bytearray's bytes may still
    change), and equality as a memoryview's: a zero-dimensional view of one
    byte is not a sequence of one byte."""
    owner = owner_type(data)
    c_view = c_impl().untracked_view(memoryview(owner))
    pure_view = _pure.untracked_view(memoryview(owner))
    try:
        expected: object = hash(pure_view)
    except TypeError:
        with pytest.raises(TypeError):
            hash(c_view)
    else:
        assert hash(c_view) == expected
    others = [memoryview(data), memoryview(data).cast("c"), array.array("b", data)]
    if len(data) == 1:
        others.append(memoryview(data).cast("B", shape=[]))
    for other in others:
        assert (c_view == other) == (pure_view == other), other
        assert (c_view != other) == (pure_view != other), other


@needs_c
def test_a_record_or_tuple_of_untracked_records_is_untracked() -> None:
    """CPython's collector keeps a tuple holding a tuple subclass tracked
    whatever it holds, so a record (or an exact tuple) of untracked records,
    as the manifest's ranges and their links are (docs/design/0158), is
    untracked here; a tracked record or tuple inside keeps it tracked."""
    c = c_impl()
    inner = c.untracked_record(Batch, 0, 1, b"x", None)
    outer = c.untracked_record(Batch, 0, 1, inner, None)
    assert not gc.is_tracked(inner) and not gc.is_tracked(outer)
    many = c.untracked_tuple(c.untracked_record(Batch, i, i + 1, inner, None) for i in range(5))
    assert type(many) is tuple and len(many) == 5 and not gc.is_tracked(many)
    assert not gc.is_tracked(c.untracked_tuple([1, b"x", None, (), many]))
    gc.collect()
    usual = (inner, outer)  # what CPython itself would untrack, were it an exact tuple's items
    assert gc.is_tracked(usual)
    tracked = Batch(0, 1, b"x")
    assert gc.is_tracked(c.untracked_record(Batch, 0, 1, tracked, None))
    assert gc.is_tracked(c.untracked_tuple([inner, tracked]))
    assert gc.is_tracked(c.untracked_tuple([inner, [1]]))
    assert gc.is_tracked(c.untracked_tuple([inner, {"a": 1}]))


def test_a_tuple_of_items_is_their_tuple(impl: ModuleType) -> None:
    assert impl.untracked_tuple([]) == ()
    assert impl.untracked_tuple(iter([1, b"x", None])) == (1, b"x", None)
    assert impl.untracked_tuple("ab") == ("a", "b")
    with pytest.raises(TypeError):
        impl.untracked_tuple(5)
