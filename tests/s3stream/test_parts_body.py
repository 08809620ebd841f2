"""PartsBody reads and seeks like a file holding its parts joined."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3stream.store.parts_body import PartsBody

parts_lists = st.lists(st.binary(max_size=64), max_size=8)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("read"), st.integers(-1, 100)),
        st.tuples(st.just("seek"), st.integers(0, 300), st.sampled_from([0, 1, 2])),
        st.tuples(st.just("readinto"), st.integers(0, 100)),
    ),
    max_size=20,
)


@given(parts_lists, steps)
def test_reads_and_seeks_match_a_file_of_the_joined_parts(
    parts: list[bytes], script: list[tuple[object, ...]]
) -> None:
    body, file = PartsBody(parts), io.BytesIO(b"".join(parts))
    assert body.size == len(file.getvalue())
    for step in script:
        if step[0] == "read":
            size = step[1]
            assert isinstance(size, int)
            assert body.read(size) == file.read(size)
        elif step[0] == "readinto":
            size = step[1]
            assert isinstance(size, int)
            ours, theirs = bytearray(size), bytearray(size)
            assert body.readinto(ours) == file.readinto(theirs)
            assert ours == theirs
        else:
            offset, whence = step[1], step[2]
            assert isinstance(offset, int) and isinstance(whence, int)
            # BytesIO refuses negative positions from SEEK_SET only; clamp the
            # others to where both agree (within 0 .. size + 300).
            if whence != 0 and offset + (file.tell() if whence == 1 else body.size) < 0:
                continue
            assert body.seek(offset, whence) == file.seek(offset, whence)
        assert body.tell() == file.tell()
    body.seek(0)
    assert body.read() == file.getvalue()


def test_parts_of_any_buffer_type_are_read_as_bytes() -> None:
    body = PartsBody([b"ab", bytearray(b"cd"), memoryview(b"xefx")[1:3]])
    assert body.read(3) == b"abc" and body.read() == b"def" and body.read() == b""


def test_bad_seeks_are_refused() -> None:
    body = PartsBody([b"abc"])
    with pytest.raises(ValueError, match="negative"):
        body.seek(-1)
    with pytest.raises(ValueError, match="whence"):
        body.seek(0, 7)
