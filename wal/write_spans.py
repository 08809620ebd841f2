"""Splitting a file write so that no one call covers a whole 2 MiB of the file.

Linux (6.x, ext4 and others with large folios) gives a buffered write
that covers an aligned 2 MiB of the file one 2 MiB folio: an order-9
allocation, the size that free page reporting hands back to the host of
a virtual machine (``page_reporting_order`` 9), so each such folio is
memory the host must back again on its first write. Measured on one such
machine, 1 GiB written into new files: 3.7-4.0 ms of CPU per MiB in
writes of 2 or 4 MiB, 0.21-0.23 in writes of 1 MiB or of 1,953 KiB
(docs/design/0021-produce-cpu-breakdown.md). Writes that end on the
file's MiB boundaries take folios of 1 MiB at most, which the kernel
cuts from memory it already holds. A call per MiB costs a few
microseconds; the bytes are the same and land where they did.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

BytesLike = bytes | bytearray | memoryview
"""A buffer of bytes (a memoryview of format "B")."""
SPAN_BYTES = 1 << 20
"""No write crosses a multiple of this in the file."""
IOV_MAX = 1024
"""Linux's limit on buffers per writev / pwritev call."""


def write_spans(
    buffers: Sequence[BytesLike], offset: int, span: int = SPAN_BYTES, most: int = IOV_MAX
) -> Iterator[Sequence[BytesLike]]:
    """The buffers, to be written back to back from file offset ``offset``,
    in calls of at most ``most`` buffers none of which crosses a multiple
    of ``span`` in the file: a buffer that does is cut there (a memoryview,
    no copy). A write inside one span comes back as it is."""
    total = 0
    for buffer in buffers:
        total += len(buffer)
    if total == 0:
        return
    end = offset + total
    if len(buffers) <= most and (end - 1) // span == offset // span:
        yield buffers
        return
    call: list[BytesLike] = []
    boundary = (offset // span + 1) * span
    position = offset
    for buffer in buffers:
        view: BytesLike = buffer
        while len(view):
            room = boundary - position
            if len(view) > room:
                view = memoryview(view).cast("B")
                call.append(view[:room])
                view = view[room:]
                position += room
            else:
                call.append(view)
                position += len(view)
                view = b""
            if position == boundary or len(call) == most:
                yield call
                call = []
                if position == boundary:
                    boundary += span
    if call:
        yield call
