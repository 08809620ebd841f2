"""Writing a connection's responses to its transport, a large one a slice
per turn of the event loop.

A replay's Fetch is answered with tens of megabytes. Handed to the
transport whole, its first write copies as much as the socket takes
(megabytes, on loopback) while the event loop does nothing else: every
other connection's produce and fetch waits that long, 5-16 ms a response on
a two-core machine. Written a slice at a time, one slice per turn of the
loop, the requests of other connections are read and answered between two
slices; the large response is not slower for it (the socket drains while
the loop turns). A response of up to a slice, the usual case, is written at
once, as before. Responses leave in order: while a large one is being
sliced, the ones after it queue behind it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from engine.protocol.codec import Parts

SLICE_BYTES = 1024 * 1024
"""The most given to the transport in one turn of the loop."""

Part = bytes | bytearray | memoryview


class SlicedWriter:
    """One connection's writes (not for TLS transports: see tls.tls_writes)."""

    __slots__ = ("_loop", "_scheduled", "_slice_bytes", "_unsent", "_writelines")

    def __init__(
        self,
        writelines: Callable[[Parts], None],
        loop: asyncio.AbstractEventLoop,
        slice_bytes: int = SLICE_BYTES,
    ) -> None:
        self._writelines = writelines
        self._loop = loop
        self._slice_bytes = slice_bytes
        self._unsent: deque[Part] = deque()
        self._scheduled: asyncio.Handle | None = None

    @property
    def unsent(self) -> int:
        """Bytes not yet given to the transport."""
        return sum(map(len, self._unsent))

    def write(self, parts: Parts) -> None:
        if self._unsent:  # behind a response still being sliced
            self._unsent.extend(parts)
            return
        if sum(map(len, parts)) <= self._slice_bytes:
            self._writelines(parts)
            return
        self._unsent.extend(parts)
        self._write_slice()

    def _write_slice(self) -> None:
        self._scheduled = None
        unsent = self._unsent
        room = self._slice_bytes
        written: Parts = []
        while unsent and room > 0:
            part = unsent.popleft()
            if len(part) > room:
                view = memoryview(part)
                unsent.appendleft(view[room:])
                part = view[:room]
            written.append(part)
            room -= len(part)
        self._writelines(written)
        if unsent:
            self._scheduled = self._loop.call_soon(self._write_slice)

    def flush(self) -> None:
        """Gives the transport everything unsent (before it is closed: a
        closing transport still writes what it holds)."""
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        if self._unsent:
            parts = list(self._unsent)
            self._unsent.clear()
            self._writelines(parts)

    def discard(self) -> None:
        """Drops everything unsent: the connection is gone."""
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        self._unsent.clear()
