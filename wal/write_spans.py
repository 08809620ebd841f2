"""Splitting a file write so that no one call covers a whole 2 MiB of the file.

Linux (6.x, ext4 and others with large folios) gives a buffered write
that covers an aligned 2 MiB of the file one 2 MiB folio: an order-9
allocation, the size that free page reporting hands back to the host of
a virtual machine (``page_reporting_order`` 9), so each such folio is
memory the host must back again on its first write. Measured on one such
machine, 1 GiB written into new files: 3.7-4.0 ms of CPU per MiB in
writes of 2 or 4 MiB, 0.21-0.23 in writes of 1 MiB or of 1,953 KiB
(docs/design/0023-produce-cpu-breakdown.md). A call that holds no whole
aligned 2 MiB takes folios of 1 MiB at most, which the kernel cuts from
smaller free blocks the guest still holds (while there are
any: the local object store gives its pages back for that). A call per
MiB costs a few microseconds; the bytes are the same and land where
they did.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from native.buffers import BytesLike

SPAN_BYTES = 1 << 20
"""By default no write crosses a multiple of this in the file."""
IOV_MAX = 1024
"""Linux's limit on buffers per writev / pwritev call."""


FOLIO_BYTES = 2 * SPAN_BYTES
"""The largest folio a buffered write can be given: the one to avoid."""


def covers_a_whole_folio(offset: int, length: int) -> bool:
    """Whether bytes [offset, offset + length) of a file hold a whole
    aligned ``FOLIO_BYTES``, which one write call would get as one folio."""
    first = -(-offset // FOLIO_BYTES) * FOLIO_BYTES
    return first + FOLIO_BYTES <= offset + length


def write_spans(
    buffers: Sequence[BytesLike],
    offset: int,
    span: int = SPAN_BYTES,
    most: int = IOV_MAX,
    cut_at: int = 0,
) -> Iterator[Sequence[BytesLike]]:
    """The buffers, to be written back to back from file offset ``offset``,
    in calls of at most ``most`` buffers none of which crosses a file
    offset ``cut_at`` plus a multiple of ``span``: a buffer that does is
    cut there (a memoryview, no copy). A write inside one span comes back
    as it is.

    With ``span`` 1 MiB every call ends on a MiB boundary; with ``span``
    2 MiB and ``cut_at`` 1 MiB, on an odd one: calls up to twice as long,
    half as many, and still none covers a whole aligned 2 MiB."""
    total = sum(map(len, buffers))
    if total == 0:
        return
    start, end = offset - cut_at, offset - cut_at + total
    if len(buffers) <= most and (end - 1) // span == start // span:
        yield buffers
        return
    call: list[BytesLike] = []
    boundary = (start // span + 1) * span + cut_at
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
