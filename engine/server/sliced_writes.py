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

An answer of OFF_LOOP_MIN or more, when the transport holds nothing
unsent, goes to the send thread instead (off_loop_sends.py), and the loop
writes none of it; the answers after it queue, whole, until the thread has
sent it, and the connection reads no more meanwhile, as when its
transport's buffer is full.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from engine.protocol.codec import Parts
from engine.server.off_loop_sends import OFF_LOOP_MIN, HandOff, Send

SLICE_BYTES = 1024 * 1024
"""The most given to the transport in one turn of the loop."""

Part = bytes | bytearray | memoryview


class SlicedWriter:
    """One connection's writes (not for TLS transports: see tls.tls_writes)."""

    __slots__ = (
        "_after_sent",
        "_behind",
        "_discarded",
        "_hand_off",
        "_loop",
        "_scheduled",
        "_sending",
        "_slice_bytes",
        "_unsent",
        "_writelines",
    )

    def __init__(
        self,
        writelines: Callable[[Parts], None],
        loop: asyncio.AbstractEventLoop,
        slice_bytes: int = SLICE_BYTES,
        hand_off: HandOff | None = None,
    ) -> None:
        self._writelines = writelines
        self._loop = loop
        self._slice_bytes = slice_bytes
        self._unsent: deque[Part] = deque()
        self._scheduled: asyncio.Handle | None = None
        self._hand_off = hand_off
        """Where large answers go, or None (the loop writes them all)."""
        self._sending: Send | None = None
        """The answer the send thread holds."""
        self._behind: deque[Parts] = deque()
        """Answers written while the send thread holds one, in order."""
        self._after_sent: list[Callable[[], None]] = []
        """What waits for everything to reach the transport (a close)."""
        self._discarded = False

    @property
    def unsent(self) -> int:
        """Bytes not yet given to the transport (nor sent by the send thread)."""
        sending = self._sending.remaining if self._sending is not None else 0
        behind = sum(len(part) for parts in self._behind for part in parts)
        return sum(len(part) for part in self._unsent) + behind + sending

    @property
    def sending(self) -> bool:
        """Whether the send thread holds an answer of this connection."""
        return self._sending is not None

    def write(self, parts: Parts) -> None:
        if self._sending is not None:  # behind an answer the send thread holds
            self._behind.append(parts)
            return
        if self._unsent:  # behind a response still being sliced
            self._unsent.extend(parts)
            return
        size = sum(len(part) for part in parts)
        if size >= OFF_LOOP_MIN and self._give_away(parts):
            return
        if size <= self._slice_bytes:
            self._writelines(parts)
            return
        self._unsent.extend(parts)
        self._write_slice()

    def _give_away(self, parts: Parts) -> bool:
        """Hands ``parts`` to the send thread if the transport holds nothing
        that would have to leave first."""
        hand_off = self._hand_off
        if hand_off is None or hand_off.sender.stopped or hand_off.transport_holds():
            return False
        try:
            self._sending = hand_off.sender.send(hand_off.fd, parts, self._loop, self._sent)
        except OSError:  # the socket is closed already: the transport sees it
            return False
        hand_off.pause()
        return True

    def _sent(self, sent: bool) -> None:
        """The send thread is done with its answer (on the loop)."""
        self._sending = None
        hand_off = self._hand_off
        if self._discarded or hand_off is None:
            return
        if not sent:  # the socket failed: nothing behind it can be delivered
            self.discard()
            hand_off.failed()
            return
        hand_off.resume()
        behind, self._behind = self._behind, deque()
        for parts in behind:
            self.write(parts)
        if self._sending is None and self._after_sent:
            self.flush()
            waiting, self._after_sent = self._after_sent, []
            for then in waiting:
                then()

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
        closing transport still writes what it holds). While the send
        thread holds an answer, what is behind it stays behind it: an
        abort that follows cuts both, as it cuts a transport's buffer."""
        if self._sending is not None:
            return
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        if self._unsent:
            parts = list(self._unsent)
            self._unsent.clear()
            self._writelines(parts)

    def flush_then(self, then: Callable[[], None]) -> None:
        """Flushes, then runs ``then`` (a close): at once, or once the send
        thread has sent what it holds and the answers behind it are given
        to the transport."""
        if self._sending is None:
            self.flush()
            then()
        else:
            self._after_sent.append(then)

    def discard(self) -> None:
        """Drops everything unsent: the connection is gone."""
        self._discarded = True
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        self._unsent.clear()
        self._behind.clear()
        self._after_sent.clear()
        if self._sending is not None and self._hand_off is not None:
            self._hand_off.sender.cancel(self._sending)
