"""A client that pipelines requests and reads none of the answers, over a
socket it is given (plain or TLS)."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

from kio.index import load_request_schema

from engine.protocol.apis import ApiKey
from tests.server.wire import build, encode_request

HANG_S = 10.0
"""How long the sender may take to stop once the socket is reset."""
API_VERSIONS = build(load_request_schema(ApiKey.API_VERSIONS, 0))
PIPELINED = 1024 * 1024
"""Bytes of requests sent: their answers, some twenty times their size,
fill any socket buffers."""
SMALL_RECEIVE_BUFFER = 4096
"""A non-reader's receive buffer (set before it connects): its answers
fill it at once."""


class NonReader:
    """Sends ApiVersions requests from a thread (the server stops reading
    them) and never reads an answer."""

    def __init__(self, sock: socket.socket, first_correlation_id: int = 1) -> None:
        self.sock = sock
        host, port = sock.getsockname()[:2]
        self.peer = f"{host}:{port}"
        one = encode_request(API_VERSIONS, first_correlation_id)
        self.requests = PIPELINED // len(one)
        self._sender = threading.Thread(target=self._send, args=(one * self.requests,), daemon=True)
        self._sender.start()

    def _send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # reset by the test while the server was not reading
            self.sock.sendall(data)

    def reset(self) -> None:
        """Closes with a reset, as a client that crashed with answers unread
        does: the server learns of it at once, reading or not. The sender
        is woken first (a close alone would wait for its send)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)  # the TCP socket under TLS too
        self._sender.join(HANG_S)
        self.sock.close()
