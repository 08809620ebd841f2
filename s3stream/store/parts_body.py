"""A request body read straight from an object's parts, never joined.

An upload is laid out as many parts (data blocks, index, footer: see
objects.py). Joining them into one buffer before a PUT costs a copy of
every byte into freshly mapped memory: about 0.7 ms of CPU per MiB, mostly
the kernel faulting in and zeroing the new pages, as much as everything
else the upload does on this side of the socket. The HTTP client reads a
body like this one in blocks of its own choosing, each a small copy of one
stretch of the parts. It seeks back to its start for a retry, and finds the
body's length by seeking to its end, as it would in a file.
"""

from __future__ import annotations

import bisect
import io
import itertools
from collections.abc import Sequence

from native.buffers import BytesLike


class PartsBody(io.RawIOBase):
    """The concatenation of ``parts``, readable and seekable like a file."""

    def __init__(self, parts: Sequence[BytesLike]) -> None:
        super().__init__()
        self._parts = [memoryview(part).cast("B") for part in parts if len(part)]
        self._starts = [0, *itertools.accumulate(part.nbytes for part in self._parts)]
        self.size = self._starts[-1]
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}.get(whence)
        if base is None:
            raise ValueError(f"invalid whence {whence}")
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self._position + size)
        if self._position >= end:
            return b""
        index = bisect.bisect_right(self._starts, self._position) - 1
        chunks = []
        while self._position < end:
            part, start = self._parts[index], self._starts[index]
            stop = min(end, start + part.nbytes)
            chunks.append(part[self._position - start : stop - start])
            self._position = stop
            index += 1
        return chunks[0].tobytes() if len(chunks) == 1 else b"".join(chunks)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)
