"""Sending a large answer to the socket with the GIL released.

uvloop writes a transport's buffers with the GIL held: a replay's Fetch
answers, megabytes each, held it some 170 us per MiB in the event loop
(docs/design/0064), and every thread that wanted it meanwhile (the WAL's
writer, the store's read threads) waited. ``os.writev`` releases the GIL
around its system call, so a large write is offered to the kernel with it
first, on the loop's thread and without blocking (the transport's socket
is non-blocking); whatever the kernel does not take goes to the transport,
which then writes, buffers and pauses the protocol exactly as before.

Only when the transport holds nothing: a byte sent around bytes it still
holds would leave out of order. Only on a plain socket (a TLS transport
encrypts what it is given: see tls.tls_writes). A send the kernel refuses
for any reason (its buffer full, the peer gone) sends nothing: the
transport is given it all and meets the same condition itself, and closes
the connection on an error as it always has.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Protocol

from engine.protocol.codec import Parts

DIRECT_SEND_MIN = 64 * 1024
"""Writes smaller than this go to the transport as they are: a send of a
few kilobytes holds the GIL for less than releasing and taking it back
costs another thread waiting for it."""
IOV_MAX = 1024
"""The most buffers one writev takes on Linux (sysconf's SC_IOV_MAX)."""

Writev = Callable[[int, Sequence[bytes | bytearray | memoryview]], int]


class _Stats(Protocol):
    bytes_sent_direct: int


class _Transport(Protocol):
    def get_write_buffer_size(self) -> int: ...

    def is_closing(self) -> bool: ...

    def writelines(self, parts: Parts, /) -> None: ...


class DirectSender:
    """One connection's writes: large ones offered to its socket first."""

    __slots__ = ("_fd", "_min_bytes", "_stats", "_transport", "_writev")

    def __init__(
        self,
        fd: int,
        transport: _Transport,
        stats: _Stats,
        writev: Writev = os.writev,
        min_bytes: int | None = None,
    ) -> None:
        self._fd = fd
        self._transport = transport
        self._stats = stats
        """Counts the bytes the socket took straight from here."""
        self._writev = writev
        self._min_bytes = DIRECT_SEND_MIN if min_bytes is None else min_bytes

    def writelines(self, parts: Parts) -> None:
        transport = self._transport
        if (
            sum(len(part) for part in parts) < self._min_bytes
            or transport.get_write_buffer_size()
            or transport.is_closing()
        ):
            transport.writelines(parts)
            return
        unsent = self._send(parts)
        if unsent:
            transport.writelines(unsent)

    def _send(self, parts: Parts) -> Parts:
        """Sends as much of ``parts`` as the kernel takes now; returns the rest."""
        start = 0
        while start < len(parts):
            window = parts[start : start + IOV_MAX]
            try:
                sent = self._writev(self._fd, window)
            except OSError:  # EAGAIN, or a reset the transport will meet: see above
                break
            self._stats.bytes_sent_direct += sent
            for part in window:
                size = len(part)
                if sent < size:
                    if sent:
                        rest = memoryview(part).cast("B")[sent:]
                        return [rest, *parts[start + 1 :]]
                    return parts[start:]
                sent -= size
                start += 1
        return parts[start:]
