"""Sending connections' large answers from a thread of their own, below the
event loop's priority.

A replay's Fetch is answered with megabytes. Written from the event loop
(a slice per turn, sliced_writes.py), each slice's writev holds the GIL for
the copy and, on loopback, the receiving socket's TCP work runs in the
writing thread's own kernel time: the loop that acknowledges every produce
spends that time on the replay and then waits for a CPU
(docs/design/0034). Here one thread sends every connection's large
answers: it waits for writability with poll and writes with os.writev,
both with the GIL released, so that copy and that kernel work are done on
a thread at the store's read priority, and the loop only hands the answer
over and hears when it is sent.

One thread serves every connection: it polls their sockets together and
writes to whichever can take bytes, so a client that reads slowly (or not
at all) holds back its own answers only.

Each answer is sent through a duplicate of its socket's descriptor, which
only this thread uses and closes: once the connection closes its own
descriptor, the number may be given to a new socket, but this thread's
number stays its own until it lets it go.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import select
import threading
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from engine.protocol.codec import Parts
from wal.thread_priority import ThreadPriority

log = logging.getLogger("tidelog.server")

OFF_LOOP_MIN = 1024 * 1024
"""An answer this large goes to the send thread: one the event loop would
otherwise write a slice at a time over several turns (sliced_writes.py's
SLICE_BYTES). A replay's Fetch answers are megabytes (up to
fetch.max.bytes); produce answers, metadata and a tailing consumer's
fetches are far under it. Not lower: the small answers a read gathers are
written together once they pass 256 KiB (connection.py), and each hand-off
stops the connection's reading until the thread is done (a duplicated
descriptor and two wake-ups across threads, more than such a write costs);
a pipelining client would be stopped after every gathered write."""

_IOV_MAX = 1024
"""The most parts one writev takes (Linux's UIO_MAXIOV)."""
_POLL_MS = 1000
"""The longest the thread sleeps without looking at its queue (new sends
and cancellations also wake it through its pipe)."""

SentCallback = Callable[[bool], None]
"""Called on the connection's event loop once an answer is sent (True) or
given up (False: the socket failed, or the send was cancelled)."""


class Send:
    """One answer with the send thread."""

    __slots__ = ("cancelled", "done", "fd", "loop", "remaining", "size", "unsent")

    def __init__(
        self, fd: int, parts: Parts, loop: asyncio.AbstractEventLoop, done: SentCallback
    ) -> None:
        self.fd = fd
        """The thread's own duplicate of the socket's descriptor."""
        self.unsent: deque[memoryview] = deque(memoryview(part).cast("B") for part in parts)
        self.size = sum(len(part) for part in self.unsent)
        self.remaining = self.size
        """Bytes not sent yet (read on the loop, written by the thread)."""
        self.loop = loop
        self.done = done
        self.cancelled = False


class SendThread:
    """The thread that sends large answers (started with the server)."""

    def __init__(self, priority: ThreadPriority, name: str = "tidelog-send") -> None:
        self._priority = priority
        self._name = name
        self._lock = threading.Lock()
        self._incoming: list[Send] = []
        self._stopping = False
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._thread: threading.Thread | None = None
        self.sent_answers = 0
        self.sent_bytes = 0
        self.holding = 0
        """Answers the thread holds, their descriptors open (set by the thread)."""

    @property
    def stopped(self) -> bool:
        return self._stopping

    def start(self) -> None:
        self._thread = self._priority.thread(self._run, self._name)
        self._thread.start()

    def send(
        self, fd: int, parts: Parts, loop: asyncio.AbstractEventLoop, done: SentCallback
    ) -> Send:
        """Takes an answer to send on socket ``fd`` (non-blocking, nothing
        else writing to it until ``done`` is called). Raises OSError if the
        descriptor cannot be duplicated (it is closed already)."""
        send = Send(os.dup(fd), parts, loop, done)
        with self._lock:
            if self._stopping:
                os.close(send.fd)
                raise OSError("the send thread is stopped")
            self._incoming.append(send)
        self._wake()
        return send

    def cancel(self, send: Send) -> None:
        """Gives up ``send`` (its connection is gone): the thread closes its
        descriptor and writes no more of it."""
        send.cancelled = True
        self._wake()

    def stop(self, timeout_s: float) -> None:
        """Gives up every send and ends the thread (waits up to ``timeout_s``)."""
        with self._lock:
            self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("the send thread did not stop within %.1f s", timeout_s)
                return  # it closes the pipe when it ends
        self._close_pipe()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):  # full: a wake-up is pending
            os.write(self._wake_write, b"\0")

    def _close_pipe(self) -> None:
        with self._lock:
            fds, self._wake_read, self._wake_write = (self._wake_read, self._wake_write), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)

    # -- the thread -------------------------------------------------------------------

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._wake_read, select.POLLIN)
        sends: dict[int, Send] = {}
        try:
            while True:
                for fd, _events in poller.poll(_POLL_MS):
                    if fd == self._wake_read:
                        with contextlib.suppress(BlockingIOError):
                            os.read(self._wake_read, 4096)
                    elif fd in sends and self._write(sends[fd]):
                        self._finish(poller, sends, sends[fd], True)
                with self._lock:
                    incoming, self._incoming = self._incoming, []
                    stopping = self._stopping
                for send in incoming:
                    sends[send.fd] = send
                    poller.register(send.fd, select.POLLOUT)
                for send in [s for s in sends.values() if s.cancelled or stopping]:
                    self._finish(poller, sends, send, False)
                self.holding = len(sends)
                if stopping:
                    return
        finally:
            for send in list(sends.values()):
                self._finish(poller, sends, send, False)
            self.holding = 0

    def _write(self, send: Send) -> bool:
        """Writes as much as the socket takes; True once finished (all sent,
        or the socket failed)."""
        unsent = send.unsent
        while unsent and not send.cancelled:
            try:
                written = os.writev(send.fd, list(itertools.islice(unsent, _IOV_MAX)))
            except BlockingIOError:
                return False
            except InterruptedError:
                continue
            except OSError as error:  # the peer is gone: its connection sees it too
                log.debug("an answer's send failed: %s", error)
                send.cancelled = True
                return True
            send.remaining -= written
            while written:
                head = unsent[0]
                if len(head) > written:
                    unsent[0] = head[written:]
                    break
                written -= len(head)
                unsent.popleft()
        return True

    def _finish(self, poller: select.poll, sends: dict[int, Send], send: Send, ok: bool) -> None:
        del sends[send.fd]
        poller.unregister(send.fd)
        os.close(send.fd)
        sent = ok and not send.cancelled and not send.unsent
        if sent:
            self.sent_answers += 1
            self.sent_bytes += send.size
        send.unsent.clear()
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            send.loop.call_soon_threadsafe(send.done, sent)


class HandOff(NamedTuple):
    """What a connection's writer needs to give an answer to the send thread."""

    sender: SendThread
    fd: int
    """The connection's socket (non-blocking)."""
    transport_holds: Callable[[], int]
    """Bytes the transport has not written yet: an answer is handed over
    only when it holds none, so nothing it holds could follow it."""
    pause: Callable[[], None]
    """Stops the connection reading while the thread holds its answer, as
    a full transport does (Connection.pause_writing)."""
    resume: Callable[[], None]
    failed: Callable[[], None]
    """Aborts the connection after its socket failed in the thread."""
