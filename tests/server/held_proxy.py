"""A Kafka-framed TCP proxy on loopback that keeps its clients' connections
open while the server behind it is replaced: ``hold`` stops forwarding new
requests and waits until every request already sent is answered; the
server can then stop and another take its place; ``resume`` names it, and
each connection goes on there with the requests held. A client that
negotiated with the first server then talks to the second without having
seen a disconnect (as a client of a broker that lost leadership and won
it back does), which no real restart lets a test arrange."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_SIZE = struct.Struct(">i")
_CHUNK = 65536


class _Frames:
    """Whole Kafka frames (size-prefixed) from a stream's bytes."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        frames = []
        while len(self.buffer) >= _SIZE.size:
            (size,) = _SIZE.unpack_from(self.buffer)
            end = _SIZE.size + size
            if len(self.buffer) < end:
                break
            frames.append(bytes(self.buffer[:end]))
            del self.buffer[:end]
        return frames


class _Link:
    """One client connection and its current upstream connection."""

    def __init__(self, proxy: HeldProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.requests = _Frames()
        self.sent = 0
        self.responses = 0
        self.gone = threading.Event()
        self.upstream = socket.create_connection(proxy.target)
        self.reader = threading.Thread(target=self._answers, args=(self.upstream,), daemon=True)
        self.reader.start()

    def in_flight(self) -> int:
        """Requests sent and not yet answered; none once the client left
        (its requests will never be answered: it does not wait for them)."""
        return 0 if self.gone.is_set() else self.sent - self.responses

    def forward_requests(self) -> None:
        try:
            self._forward_requests()
        finally:
            self.gone.set()
            self.upstream.close()

    def _forward_requests(self) -> None:
        while True:
            try:
                data = self.client.recv(_CHUNK)
            except OSError:
                return
            if not data:
                return
            for frame in self.requests.feed(data):
                try:
                    self._send(frame)
                except OSError:
                    return  # closed at the end

    def _send(self, frame: bytes) -> None:
        # Checked and sent under the lock: once ``held`` has cleared
        # ``open``, nothing more reaches the server it waits on.
        while True:
            self.proxy.open.wait()
            with self.proxy.lock:
                if self.proxy.open.is_set():
                    self.upstream.sendall(frame)
                    self.sent += 1
                    return

    def _answers(self, upstream: socket.socket) -> None:
        frames = _Frames()
        while True:
            try:
                data = upstream.recv(_CHUNK)
            except OSError:
                return
            if not data:
                return  # the server went away: the client's connection stays
            for frame in frames.feed(data):
                try:
                    self.client.sendall(frame)
                except OSError:
                    return  # the client went away
                with self.proxy.lock:
                    self.responses += 1

    def reconnect(self) -> None:
        self.upstream.close()
        self.upstream = socket.create_connection(self.proxy.target)
        self.reader = threading.Thread(target=self._answers, args=(self.upstream,), daemon=True)
        self.reader.start()


class HeldProxy:
    """Listens on an ephemeral loopback port; forwards to ``target``."""

    def __init__(self) -> None:
        self.target = ("127.0.0.1", 0)
        """Where connections go: set once the server listens."""
        self.lock = threading.Lock()
        self.open = threading.Event()
        self.open.set()
        self.links: list[_Link] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.open.wait()  # a connection made while held goes to the next server
            try:
                link = _Link(self, client)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.links.append(link)
            threading.Thread(target=link.forward_requests, daemon=True).start()

    @contextmanager
    def held(self, timeout: float) -> Iterator[None]:
        """Within: no request reaches the server, and every one sent before
        has been answered."""
        with self.lock:
            self.open.clear()
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if all(link.in_flight() == 0 for link in self.links):
                    break
            assert time.monotonic() < deadline, "requests still unanswered"
            time.sleep(0.01)
        yield

    def resume(self, target: tuple[str, int]) -> None:
        """Every connection goes on at ``target``, held requests first."""
        with self.lock:
            self.target = target
            for link in self.links:
                if not link.gone.is_set():
                    link.reconnect()
        self.open.set()

    def close(self) -> None:
        self.listener.close()
        with self.lock:
            for link in self.links:
                link.client.close()
                link.upstream.close()
