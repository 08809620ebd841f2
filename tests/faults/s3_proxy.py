"""An HTTP proxy in front of an S3 server that misbehaves on purpose.

Real S3 throttles (503 SlowDown), drops connections, slows down, and
sometimes performs a request whose answer never arrives. moto's server does
none of this on cue, so the tests put this proxy between the store and moto:
it forwards every request unchanged (the store signs for the proxy's
address, which moto does not check) and, on command or at seeded random
rates, injects one of the faults in :class:`Fault`. The *lost response*
faults forward the request first, so the write really happens, and only then
break the answer: the case a client cannot tell from a failed request.

Used by ``tests/faults/conftest.py`` (the ``s3_fault_proxy`` fixture) and by
any test that needs an object store that fails like a real one.
"""

from __future__ import annotations

import collections
import enum
import http.client
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_UPSTREAM_TIMEOUT_S = 30.0
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class Fault(enum.Enum):
    SLOW_DOWN = "slow_down"
    """503 SlowDown without forwarding: nothing happened."""
    RESET = "reset"
    """The connection is reset before forwarding: nothing happened."""
    LATENCY = "latency"
    """Forwarded after a delay; the answer arrives."""
    LOST_RESPONSE = "lost_response"
    """Forwarded (the request takes effect), then the connection is reset."""
    LOST_RESPONSE_500 = "lost_response_500"
    """Forwarded (the request takes effect), then answered 500 InternalError."""
    NO_SUCH_UPLOAD = "no_such_upload"
    """404 NoSuchUpload without forwarding: what S3 answers a retried
    CompleteMultipartUpload once the upload is complete (moto answers 200)."""


WRITE_FAULTS = (Fault.LOST_RESPONSE, Fault.LOST_RESPONSE_500)

Match = Callable[[str, str], bool]
"""Whether a request (method, path with query) is eligible for a fault."""


def any_request(method: str, path: str) -> bool:
    return True


def puts_to(fragment: str) -> Match:
    """Matches PUT requests whose path contains ``fragment`` (e.g. "manifest/log/")."""
    return lambda method, path: method == "PUT" and fragment in path


@dataclass
class ProxyStats:
    requests: int = 0
    faults: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def injected(self) -> int:
        return sum(self.faults.values())

    def summary(self) -> str:
        kinds = ", ".join(f"{kind.value}={self.faults[kind.value]}" for kind in Fault)
        return f"requests={self.requests} faults={self.injected} ({kinds})"


class S3FaultProxy:
    """A proxy on 127.0.0.1 (ephemeral port) forwarding to ``upstream``.

    ``inject(fault, count, match)`` queues faults for the next matching
    requests; ``set_rates({fault: probability}, match)`` injects them at
    random (seeded by ``seed``) until ``set_rates({})``. Queued faults go
    first. ``stats`` counts requests and injected faults by kind.
    """

    def __init__(self, upstream: str, *, seed: int = 0, latency_s: float = 0.05) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the proxy forwards to http(s)://host:port, not {upstream!r}")
        self._upstream = (parts.scheme, parts.hostname, parts.port)
        self.latency_s = latency_s
        self.stats = ProxyStats()
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._queued: list[tuple[Fault, Match]] = []
        self._rates: dict[Fault, float] = {}
        self._rate_match: Match = any_request
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="s3-proxy"
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> S3FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> S3FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- commands -------------------------------------------------------------

    def inject(self, fault: Fault, count: int = 1, match: Match = any_request) -> None:
        with self._lock:
            self._queued.extend([(fault, match)] * count)

    def set_rates(self, rates: dict[Fault, float], match: Match = any_request) -> None:
        if sum(rates.values()) > 1:
            raise ValueError(f"fault probabilities add up to more than 1: {rates}")
        with self._lock:
            self._rates = dict(rates)
            self._rate_match = match

    def heal(self) -> None:
        """No more faults: the queue is emptied and the rates set to zero."""
        with self._lock:
            self._queued.clear()
            self._rates = {}

    @property
    def pending(self) -> int:
        """Queued faults not yet injected."""
        with self._lock:
            return len(self._queued)

    def _choose(self, method: str, path: str) -> Fault | None:
        with self._lock:
            self.stats.requests += 1
            fault = None
            for index, (queued, match) in enumerate(self._queued):
                if match(method, path):
                    del self._queued[index]
                    fault = queued
                    break
            if fault is None and self._rates and self._rate_match(method, path):
                draw = self._random.random()
                for kind, rate in self._rates.items():
                    if draw < rate:
                        fault = kind
                        break
                    draw -= rate
            if fault is not None:
                self.stats.faults[fault.value] += 1
            return fault

    # -- forwarding -------------------------------------------------------------

    def _forward(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        scheme, host, port = self._upstream
        connection_type = (
            http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_type(host, port, timeout=_UPSTREAM_TIMEOUT_S)
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    connection.putheader(name, value)
            if body or method in ("PUT", "POST"):
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            data = response.read()
            return response.status, response.reason, list(response.getheaders()), data
        finally:
            connection.close()


def _handler_for(proxy: S3FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as botocore's pool expects

        def log_message(self, format: str, *args: object) -> None:
            pass  # a line per request would drown the test output

        def _handle(self) -> None:
            body = self._read_body()
            fault = proxy._choose(self.command, self.path)
            if fault is Fault.SLOW_DOWN:
                self._reply_error(503, "SlowDown", "Please reduce your request rate.")
                return
            if fault is Fault.RESET:
                self._reset()
                return
            if fault is Fault.NO_SUCH_UPLOAD:
                self._reply_error(404, "NoSuchUpload", "The specified upload does not exist.")
                return
            if fault is Fault.LATENCY:
                time.sleep(proxy.latency_s)
            status, reason, headers, data = proxy._forward(
                self.command, self.path, list(self.headers.items()), body
            )
            if fault is Fault.LOST_RESPONSE:
                self._reset()
                return
            if fault is Fault.LOST_RESPONSE_500:
                self._reply_error(500, "InternalError", "We encountered an internal error.")
                return
            self.send_response_only(status, reason)
            for name, value in headers:
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            if self.command == "HEAD":
                length = dict((k.lower(), v) for k, v in headers).get("content-length", "0")
                self.send_header("Content-Length", length)
                self.end_headers()
                return
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _reply_error(self, status: int, code: str, message: str) -> None:
            data = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{code}</Code><Message>{message}</Message>"
                "<RequestId>tidelog-fault-proxy</RequestId></Error>"
            ).encode()
            self.send_response_only(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _reset(self) -> None:
            # SO_LINGER with a zero timeout makes close() send RST, not FIN:
            # the client sees "connection reset by peer", as from a dead middlebox.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True

        # http.server dispatches on these names.
        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815

    return Handler
