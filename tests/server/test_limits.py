"""What one client can take from the server over a socket, and the limits
that stop it: memory claimed by size prefixes, memory held by idle
connections, partial requests against the in-flight budgets, the number of
connections (in all and per address), idle connections and requests that
never finish arriving. During each abuse a canary client produces and
consumes, and must see no error."""

from __future__ import annotations

import datetime
import select
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.conftest import ServerProcess
from tests.server.test_bad_input import (
    NONE,
    api_versions,
    batch,
    fetch,
    metadata,
    partition_error,
    produce,
    rss_bytes,
    server_pid,
)
from tests.server.wire import Wire, header_bytes

MiB = 1024 * 1024


class Canary:
    """A well-behaved client: each check produces one batch and reads the
    whole topic back."""

    def __init__(self, bootstrap: str) -> None:
        self.wire = Wire(bootstrap, timeout=30)
        self.topic = f"canary-{uuid.uuid4().hex[:8]}"
        self.produced = 0
        self.wire.request(metadata(self.topic))

    def check(self) -> None:
        value = b"canary %d" % self.produced
        response = self.wire.request(produce({self.topic: batch(value)}))
        assert partition_error(response) == NONE
        assert response.responses[0].partition_responses[0].base_offset == self.produced
        self.produced += 1
        partition = self.wire.request(fetch(self.topic, 0)).responses[0].partitions[0]
        assert partition.error_code == NONE
        assert partition.high_watermark == self.produced
        assert value in bytes(partition.records)

    def close(self) -> None:
        self.wire.close()


def start_server(root: Path, server_settings: str = "") -> ServerProcess:
    config = root / "tidelog.toml"
    config.write_text(f"[server]\n{server_settings}\n")
    return ServerProcess(root / "data", args=["--config", str(config)]).start()


@pytest.fixture
def limited(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[ServerProcess, Canary]]:
    """A server with the test's [server] settings (parametrized indirectly)
    and a canary connected to it."""
    server = start_server(tmp_path, getattr(request, "param", ""))
    canary = Canary(server.bootstrap)
    try:
        canary.check()
        yield server, canary
        canary.check()
    finally:
        canary.close()
        assert server.stop() == 0, server.log()


def _answers(wire: Wire) -> bool:
    return bool(wire.request(api_versions()).api_keys)


# -- memory ------------------------------------------------------------------------------


def test_a_claimed_size_is_not_allocated_before_its_bytes_arrive(
    limited: tuple[ServerProcess, Canary],
) -> None:
    """20 connections each announce a Produce of 64 MiB and send its first
    bytes only: the server holds what arrived, not what was claimed."""
    server, canary = limited
    before = rss_bytes(server_pid(server))
    claims = [Wire(server.bootstrap) for _ in range(20)]
    try:
        for wire in claims:
            wire.send_raw(struct.pack(">i", 64 * MiB) + header_bytes(0, 9, 1, flexible=True))
        for _ in range(3):  # the server reads every claim while it serves these
            canary.check()
        assert rss_bytes(server_pid(server)) - before < 32 * MiB
        for wire in claims:
            assert not wire.closed_by_server(timeout=0.01)
    finally:
        for wire in claims:
            wire.close()


def test_idle_connections_cost_little_memory(limited: tuple[ServerProcess, Canary]) -> None:
    """1,000 connections, each answered once and then idle: the server's
    memory grows by less than 64 KiB for each."""
    server, canary = limited
    count = 1000
    before = rss_bytes(server_pid(server))
    idle: list[Wire] = []
    try:
        for _ in range(count):
            wire = Wire(server.bootstrap)
            idle.append(wire)
            assert _answers(wire)
        canary.check()
        growth = rss_bytes(server_pid(server)) - before
        assert growth / count < 64 * 1024, f"{growth / count / 1024:.0f} KiB per connection"
    finally:
        for wire in idle:
            wire.close()


def _send_until_blocked(sock: socket.socket, data: memoryview, stall: float) -> int:
    """Writes ``data`` until the socket stays unwritable for ``stall``
    seconds; returns the bytes the kernel took."""
    sock.setblocking(False)
    sent = 0
    try:
        while sent < len(data):
            try:
                sent += sock.send(data[sent:])
            except BlockingIOError:
                if not select.select([], [sock], [], stall)[1]:
                    break
    finally:
        sock.setblocking(True)
    return sent


@pytest.mark.parametrize(
    "limited",
    [f"max_inflight_bytes = {16 * MiB}\nconnections_partial_request_timeout_ms = 4000\n"],
    indirect=True,
)
def test_partial_requests_count_against_the_in_flight_budget(
    limited: tuple[ServerProcess, Canary],
) -> None:
    """Six connections each send 40 MiB of a 90 MiB request: past the
    server's 16 MiB budget it stops reading them but one (which it reads to
    the end of what was sent, as no answer will free the budget), so its
    memory does not take in what they send; the partial-request timeout then
    closes them, which frees the budget for everyone (the canary waits, and
    is served)."""
    server, canary = limited
    before = rss_bytes(server_pid(server))
    senders = [Wire(server.bootstrap, timeout=30) for _ in range(6)]
    try:
        start = struct.pack(">i", 90 * MiB) + header_bytes(0, 9, 1, flexible=True)
        data = memoryview(start + bytes(40 * MiB))
        taken = [_send_until_blocked(wire.sock, data, stall=1.0) for wire in senders]
        assert sum(taken) < len(senders) * len(data)
        # The budget and one request past it (40 MiB, its buffer grown by an
        # 8 MiB step at most), far from the 240 MiB sent.
        assert rss_bytes(server_pid(server)) - before < 96 * MiB + 48 * MiB
        canary.check()
        for wire in senders:
            assert wire.closed_by_server(timeout=30)
        assert "connections.partial.request.timeout.ms" in server.log()
    finally:
        for wire in senders:
            wire.close()


# -- connection limits ----------------------------------------------------------------------


@pytest.mark.parametrize("limited", ['"max.connections" = 4'], indirect=True)
def test_max_connections_closes_the_one_over_the_limit(
    limited: tuple[ServerProcess, Canary],
) -> None:
    server, canary = limited
    others = [Wire(server.bootstrap) for _ in range(3)]  # with the canary: 4
    try:
        for wire in others:
            assert _answers(wire)
        for _ in range(20):
            with Wire(server.bootstrap) as over:
                assert over.closed_by_server(timeout=10)
        canary.check()
        refused = [line for line in server.log().splitlines() if "refused" in line]
        assert 1 <= len(refused) <= 2, "\n".join(refused)  # rate-limited
        others.pop().close()
        deadline = time.monotonic() + 10
        while True:  # the server sees the close in a moment; then one more may come
            with Wire(server.bootstrap) as again:
                if not again.closed_by_server(timeout=0.2):
                    assert _answers(again)
                    break
            assert time.monotonic() < deadline, "no room after a connection closed"
        assert "max.connections (4)" in server.log()
    finally:
        for wire in others:
            wire.close()


@pytest.mark.parametrize("limited", ['"max.connections.per.ip" = 3'], indirect=True)
def test_max_connections_per_ip_limits_one_address_only(
    limited: tuple[ServerProcess, Canary],
) -> None:
    """Three connections from 127.0.0.2; a fourth from there is closed, while
    the canary (127.0.0.1) and another connection from 127.0.0.1 are served."""
    server, canary = limited
    crowd = [Wire(server.bootstrap, source="127.0.0.2") for _ in range(3)]
    try:
        for wire in crowd:
            assert _answers(wire)
        with Wire(server.bootstrap, source="127.0.0.2") as over:
            assert over.closed_by_server(timeout=10)
        with Wire(server.bootstrap, source="127.0.0.1") as elsewhere:
            assert _answers(elsewhere)
        canary.check()
        assert "max.connections.per.ip (3) are open from 127.0.0.2" in server.log()
    finally:
        for wire in crowd:
            wire.close()


# -- time limits ------------------------------------------------------------------------------


@pytest.mark.parametrize("limited", ['"connections.max.idle.ms" = 1500'], indirect=True)
def test_idle_connections_are_closed(limited: tuple[ServerProcess, Canary]) -> None:
    """A connection that does nothing is closed after connections.max.idle.ms;
    one waiting for a long-poll Fetch is not idle; the canary, busy, stays."""
    server, canary = limited
    with Wire(server.bootstrap) as idle, Wire(server.bootstrap, timeout=30) as polling:
        assert _answers(idle)
        waiting = f"waiting-{uuid.uuid4().hex[:8]}"
        polling.request(metadata(waiting))
        polling.send(fetch(waiting, 0, max_wait=datetime.timedelta(seconds=4), min_bytes=1))
        deadline = time.monotonic() + 15
        while not idle.closed_by_server(timeout=0.2):
            canary.check()
            assert time.monotonic() < deadline, "the idle connection is still open"
        # The long poll's own wait (4 s) is longer than the idle limit: it
        # is answered, on a connection the server kept.
        while not select.select([polling.sock], [], [], 0.2)[0]:
            canary.check()  # busy, so never idle
        polling.read_frame()
        assert _answers(polling)


@pytest.mark.parametrize(
    "limited", ['"connections.partial.request.timeout.ms" = 1000'], indirect=True
)
@pytest.mark.parametrize("how", ["stalled", "trickled"])
def test_a_request_that_never_finishes_arriving_closes_its_connection(
    limited: tuple[ServerProcess, Canary], how: str
) -> None:
    """A request whose bytes stop, or come one every 100 ms (so the
    connection is never idle), closes its connection after
    connections.partial.request.timeout.ms; the canary is unaffected."""
    server, canary = limited
    whole = struct.pack(">i", 200) + header_bytes(18, 3, 1, flexible=True) + bytes(200)
    with Wire(server.bootstrap) as slow:
        slow.send_raw(whole[:10])
        deadline = time.monotonic() + 15
        position = 10
        while not slow.closed_by_server(timeout=0.1):
            if how == "trickled":
                try:
                    slow.send_raw(whole[position : position + 1])
                except (BrokenPipeError, ConnectionResetError):
                    break
                position += 1
            canary.check()
            assert time.monotonic() < deadline, "the slow request's connection is still open"
        assert position < len(whole)
    assert "a request still incomplete after" in server.log()


# -- logging ------------------------------------------------------------------------------

TLS_CLIENT_HELLO_START = bytes.fromhex("16030100c4010000c00303") + bytes(32)
"""The start of a TLS ClientHello: read as a size prefix, 369 MB."""


def test_a_flood_of_garbage_connections_logs_a_bounded_number_of_lines(
    limited: tuple[ServerProcess, Canary],
) -> None:
    """200 connections speaking TLS, or plain garbage, to the plaintext
    listener: each is closed, and the log gets a line, not 200."""
    server, canary = limited
    for index in range(200):
        with Wire(server.bootstrap) as wire:
            wire.send_raw(TLS_CLIENT_HELLO_START if index % 2 else b"\xff" * 64)
            assert wire.closed_by_server(timeout=10)
    canary.check()
    closing = [line for line in server.log().splitlines() if "closing the connection" in line]
    assert 1 <= len(closing) <= 5, "\n".join(closing)
