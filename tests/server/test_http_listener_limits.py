"""The HTTP listeners (the Schema Registry API and the operations
endpoints) under a hostile client, over real sockets on ephemeral ports:
connections past ``max_connections``, or past an address's share of them,
answered 503 and closed, connections
without a whole request head closed after ``idle_timeout_s``, a huge
header section answered 400, a body too large answered 413 and a slow
one 408, and HTTP Basic checks in a bounded pool (503 past it) that
derive an unknown user's password as they do a known one's. After each,
the listener still serves. Bounds are shown by counts and by what each
connection is answered, never by how long anything took."""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import pytest

import engine
from engine.server.http_config import HttpConfig
from engine.server.operations_http import OperationsServer
from engine.server.registry_config import RegistryConfig
from engine.server.sasl.password_checks import PasswordChecks
from engine.server.schema_registry import SchemaRegistryServer
from tests.engine.conftest import QUIET_STORE
from tests.server.held_checks import held_checks
from wal.thread_priority import ThreadPriority

TIMEOUT = 30.0
"""The longest any socket waits: a failing test ends, a passing one never waits this long."""
BODY_WAIT_S = 10.0
"""How long a test waits for the 408: far past the body timeout it sets,
short of the 30 s default."""
PASSWORD = "correct horse battery staple"
SHORT_IDLE_S = 0.2
"""An idle timeout short enough that a test sees it act."""


class Listener(Protocol):
    @property
    def port(self) -> int: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@contextmanager
def running(listener: Listener) -> Iterator[int]:
    """``listener`` served on an event loop of its own thread; its port."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="http-listener")
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(listener.start(), loop).result(TIMEOUT)
        try:
            yield listener.port
        finally:  # its connections closed, a failed test's too
            asyncio.run_coroutine_threadsafe(listener.stop(), loop).result(TIMEOUT)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(TIMEOUT)
        loop.close()


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[engine.Engine]:
    with engine.open(tmp_path / "node", config=engine.EngineConfig(store=QUIET_STORE)) as e:
        yield e


ADDRESS = ("127.0.0.1", 0)


class ListenerFactory(Protocol):
    def __call__(
        self,
        opened: engine.Engine,
        max_connections: int,
        idle_s: float,
        per_address: int | None = None,
    ) -> tuple[Listener, str]: ...


def _limits(max_connections: int, idle_s: float, per_address: int | None) -> dict[str, Any]:
    """The connection limits both listeners' configs take, by name."""
    return {
        "listen": ADDRESS,
        "max_connections": max_connections,
        "max_connections_per_address": per_address,
        "idle_timeout_s": idle_s,
    }


def _registry(
    opened: engine.Engine, max_connections: int, idle_s: float, per_address: int | None = None
) -> tuple[Listener, str]:
    config = RegistryConfig(**_limits(max_connections, idle_s, per_address))
    return SchemaRegistryServer(opened, config, authenticate=False), "/subjects"


def _operations(
    opened: engine.Engine, max_connections: int, idle_s: float, per_address: int | None = None
) -> tuple[Listener, str]:
    config = HttpConfig(**_limits(max_connections, idle_s, per_address))
    return OperationsServer(opened, config), "/healthz"


BOTH = pytest.mark.parametrize("listener_for", [_registry, _operations], ids=["registry", "ops"])


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    """A connection from ``source`` (Linux routes all of 127/8 to loopback)."""
    sock = socket.create_connection(
        ("127.0.0.1", port), timeout=TIMEOUT, source_address=(source, 0)
    )
    sock.settimeout(TIMEOUT)
    return sock


def request(path: str, headers: str = "", body: bytes = b"", method: str = "GET") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n{headers}"
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


def answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response's status, headers (names in lower case) and body."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a whole answer: {raw!r}"
        raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        assert chunk, "closed in the middle of a body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes ``sock`` (reads and drops what it sends first)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def served(port: int, path: str, source: str = "127.0.0.1") -> int:
    with connect(port, source) as sock:
        sock.sendall(request(path, "Connection: close\r\n"))
        return answer(sock)[0]


def closed_then_served(port: int, path: str, talk: Callable[[socket.socket], None]) -> None:
    """The server closes a connection after ``talk`` on it, and serves the next."""
    with connect(port) as sock:
        talk(sock)
        assert closed_by_server(sock)
    assert served(port, path) == 200


@BOTH
def test_a_connection_past_max_connections_is_answered_503_and_closed(
    opened: engine.Engine, listener_for: ListenerFactory
) -> None:
    limit = 3
    listener, path = listener_for(opened, limit, TIMEOUT)
    with running(listener) as port:
        # From three addresses: each has a share of one (a quarter, at least 1).
        held = [connect(port, f"127.0.0.{i + 1}") for i in range(limit)]
        for sock in held:  # each served once and kept alive
            sock.sendall(request(path))
            assert answer(sock)[0] == 200
        refused = [connect(port, "127.0.0.9") for _ in range(5)]  # an address with none open
        for sock in refused:
            refused_with_503(sock, path)
        for sock in held:  # still served on the connections they hold
            sock.sendall(request(path))
            assert answer(sock)[0] == 200
        gone = held.pop()
        source = gone.getsockname()[0]
        gone.close()
        # Served again once the server has seen that connection go.
        statuses = [served(port, path, source) for _ in range(50)]
        assert 200 in statuses, statuses
        for sock in held:
            sock.close()


def refused_with_503(sock: socket.socket, path: str) -> None:
    """``sock`` is answered 503 (``Connection: close``, ``Retry-After``)
    and closed; then it is closed here too."""
    sock.sendall(request(path))
    status, headers, _ = answer(sock)
    assert (status, headers["connection"], headers["retry-after"]) == (503, "close", "1")
    assert closed_by_server(sock)
    sock.close()


@BOTH
@pytest.mark.parametrize(("per_address", "share"), [(None, 2), (3, 3)], ids=["default", "set"])
def test_an_address_past_its_share_is_answered_503_while_another_address_is_served(
    opened: engine.Engine, listener_for: ListenerFactory, per_address: int | None, share: int
) -> None:
    """max_connections_per_address, or a quarter of max_connections."""
    listener, path = listener_for(opened, 8, TIMEOUT, per_address)
    with running(listener) as port:
        held = [connect(port, "127.0.0.1") for _ in range(share)]
        for sock in held:
            sock.sendall(request(path))
            assert answer(sock)[0] == 200
        for _ in range(3):  # its share taken: refused as one past the whole limit is
            refused_with_503(connect(port, "127.0.0.1"), path)
        other = [connect(port, "127.0.0.2") for _ in range(share)]
        for sock in other:  # another address has its own share
            sock.sendall(request(path))
            assert answer(sock)[0] == 200
        refused_with_503(connect(port, "127.0.0.2"), path)
        held.pop().close()
        statuses = [served(port, path, "127.0.0.1") for _ in range(50)]
        assert 200 in statuses, statuses
        for sock in held + other:
            sock.close()


@BOTH
@pytest.mark.parametrize(
    "sent",
    [b"", b"GET / HTTP/1.1\r\nHost: local", b"GET / HTTP/1.1\r\nHost: localhost\r\n"],
    ids=["nothing", "part-of-a-header", "headers-without-their-end"],
)
def test_a_connection_without_a_whole_request_head_is_closed(
    opened: engine.Engine, listener_for: ListenerFactory, sent: bytes
) -> None:
    listener, path = listener_for(opened, 8, SHORT_IDLE_S)

    def trickle(sock: socket.socket) -> None:
        for byte in sent:  # a byte at a time
            sock.sendall(bytes([byte]))

    with running(listener) as port:
        closed_then_served(port, path, trickle)


@BOTH
def test_an_idle_keep_alive_connection_is_closed(
    opened: engine.Engine, listener_for: ListenerFactory
) -> None:
    listener, path = listener_for(opened, 8, SHORT_IDLE_S)

    def served_once(sock: socket.socket) -> None:
        sock.sendall(request(path))
        assert answer(sock)[0] == 200

    with running(listener) as port:
        closed_then_served(port, path, served_once)


@BOTH
@pytest.mark.parametrize(
    "headers",
    ["".join(f"X-Header-{i}: {'v' * 64}\r\n" for i in range(1000)), f"X-Big: {'v' * 65536}\r\n"],
    ids=["many-headers", "one-huge-header"],
)
def test_a_huge_header_section_is_answered_400_and_the_listener_serves_on(
    opened: engine.Engine, listener_for: ListenerFactory, headers: str
) -> None:
    listener, path = listener_for(opened, 8, TIMEOUT)

    def refused(sock: socket.socket) -> None:
        sock.sendall(request(path, headers))
        assert answer(sock)[0] == 400

    with running(listener) as port:
        closed_then_served(port, path, refused)


def test_a_body_larger_than_max_request_bytes_is_answered_413_whatever_it_claims(
    opened: engine.Engine,
) -> None:
    limit = 4096
    config = RegistryConfig(listen=ADDRESS, max_request_bytes=limit)
    with running(SchemaRegistryServer(opened, config, authenticate=False)) as port:
        body = b'{"schema": "' + b"x" * (2 * limit) + b'"}'
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)  # no length claimed at all
        with connect(port) as sock:
            sock.sendall(
                request("/subjects/s/versions", "Transfer-Encoding: chunked\r\n", method="POST")
                + chunked
            )
            assert answer(sock)[0] == 413
        assert served(port, "/subjects") == 200


def test_a_body_slower_than_body_timeout_s_is_answered_408(opened: engine.Engine) -> None:
    config = RegistryConfig(listen=ADDRESS, body_timeout_s=SHORT_IDLE_S)
    with running(SchemaRegistryServer(opened, config, authenticate=False)) as port:
        with connect(port) as sock:
            sock.settimeout(BODY_WAIT_S)
            whole = request("/subjects/s/versions", method="POST", body=b'{"schema": "x"}')
            sock.sendall(whole[:-5])  # the head and most of the body, never the rest
            assert answer(sock)[0] == 408
        assert served(port, "/subjects") == 200


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "never came to be"
        time.sleep(0.01)


def _basic(user: str, password: str) -> str:
    return "Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _login(port: int, user: str, password: str, source: str = "127.0.0.1") -> socket.socket:
    sock = connect(port, source)
    sock.sendall(request("/subjects", _basic(user, password) + "\r\n"))
    return sock


def _registry_on_pool(
    opened: engine.Engine, max_queued: int, per_address: int
) -> tuple[PasswordChecks, SchemaRegistryServer]:
    """An authenticating registry whose logins alice may try, on a pool of
    one thread and ``max_queued`` waiting, ``per_address`` of them an address's."""
    opened.credentials.add("alice", "SCRAM-SHA-512", PASSWORD)
    checks = PasswordChecks(
        threads=1, max_queued=max_queued, per_address=per_address, priority=ThreadPriority()
    )
    config = RegistryConfig(listen=ADDRESS)
    return checks, SchemaRegistryServer(opened, config, authenticate=True, password_checks=checks)


def test_logins_past_the_password_pool_are_answered_503_and_the_rest_401(
    opened: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks, server = _registry_on_pool(opened, max_queued=1, per_address=2)
    with running(server) as port, held_checks(monkeypatch) as held:
        admitted = [_login(port, "alice", "wrong") for _ in range(2)]  # one runs, one waits
        until(lambda: checks.admitted == 2)
        refused = [_login(port, "alice", "wrong") for _ in range(5)]
        for sock in refused:
            status, headers, _ = answer(sock)
            assert (status, headers["retry-after"]) == (503, "1")
            sock.close()
        held.release()
        for sock in admitted:
            assert answer(sock)[0] == 401
            sock.close()
        assert (held.started, checks.refused) == (2, 5)
        with _login(port, "alice", PASSWORD) as sock:
            assert answer(sock)[0] == 200


def test_an_unknown_user_costs_a_password_derivation_as_a_known_one_does(
    opened: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened.credentials.add("alice", "SCRAM-SHA-512", PASSWORD)
    config = RegistryConfig(listen=ADDRESS)
    with (
        running(SchemaRegistryServer(opened, config, authenticate=True)) as port,
        held_checks(monkeypatch) as held,
    ):
        held.release()
        with _login(port, "alice", "wrong") as sock:
            assert answer(sock)[0] == 401
        assert held.started == 1
        with _login(port, "mallory", "wrong") as sock:
            assert answer(sock)[0] == 401
        assert held.started == 2


def test_a_registry_login_past_its_address_share_is_answered_503_while_another_address_is_checked(
    opened: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks, server = _registry_on_pool(opened, max_queued=4, per_address=1)
    with running(server) as port, held_checks(monkeypatch) as held:
        first = _login(port, "alice", "wrong")
        until(lambda: checks.admitted == 1)
        with _login(port, "alice", "wrong") as sock:  # the same address: its share is taken
            status, headers, _ = answer(sock)
            assert (status, headers["retry-after"]) == (503, "1")
        other = _login(port, "alice", "wrong", source="127.0.0.2")
        until(lambda: checks.admitted == 2)
        held.release()
        for sock in (first, other):
            assert answer(sock)[0] == 401
            sock.close()
        assert (held.started, checks.refused) == (2, 1)
